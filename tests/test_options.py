"""One options dataclass for a request to speak: the CLI, Pipeline.speak and the server all take it."""

import dataclasses

import pytest

from avatarsync.cli import build_parser
from avatarsync.errors import InputError
from avatarsync.options import SpeakOptions, from_args


def test_cli_parses_into_speak_options_with_the_same_defaults():
    args = build_parser().parse_args(["speak", "--text", "Hi.", "--paste-region", "mouth", "--seed", "3", "-o", "x.mp4"])
    o = from_args(args, progress=True)
    assert isinstance(o, SpeakOptions)
    assert (o.text, o.paste_region, o.seed, o.out, o.progress) == ("Hi.", "mouth", 3, "x.mp4", True)
    defaults = SpeakOptions()
    for f in dataclasses.fields(SpeakOptions):
        if f.name not in ("text", "paste_region", "seed", "out", "progress"):
            assert getattr(o, f.name) == getattr(defaults, f.name), f.name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["speak", "--text", "Hi.", "--render", "nope"])  # choices from the Literal


def test_server_request_fields_are_the_speak_options():
    pytest.importorskip("pydantic")
    from avatarsync.serve.requests import SpeakRequest

    fields = set(SpeakRequest.model_fields)
    uploads = {"audio", "audio_id", "portrait", "portrait_id", "video", "video_id", "jpeg_quality", "mp4"}
    served = {f.name for f in dataclasses.fields(SpeakOptions) if f.metadata["server"]}
    assert fields == uploads | served
    req = SpeakRequest.model_validate({"text": "Hi.", "guidance": 1.5, "render": "warp"})
    assert (req.guidance, req.render, req.rate) == (1.5, "warp", SpeakOptions().rate)


def test_pipeline_speak_takes_options_or_keywords_and_refuses_unknown_ones(tmp_path):
    from avatarsync.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(device="cpu")
    a = pipe.speak(SpeakOptions(text="Map.", voice="en-us", out=None))
    b = pipe.speak(text="Map.", voice="en-us", out=None)
    c = pipe.speak(SpeakOptions(text="Nope.", voice="en-us"), text="Map.", out=None)  # keywords override
    assert (a.frames == b.frames).all() and (a.frames == c.frames).all()
    with pytest.raises(InputError, match="SpeakOptions"):
        pipe.speak(text="Map.", colour="red")
