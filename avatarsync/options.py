"""One description of a request to speak, shared by ``avatarsync speak``, ``Pipeline.speak`` and the server.

``SpeakOptions`` is the dataclass; each field's metadata holds its command-line help (and flags), so
``add_arguments`` builds the CLI options from it and ``serve/requests.py`` builds the server's request
fields from it: a new option is added here once.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np

Render = Literal["auto", "tokens", "warp"]
PasteRegion = Literal["face", "mouth"]
KeyframeDecode = Literal["argmax", "expected"]
DubMouth = Literal["own", "first-frame"]
# how frames are made: "tokens" (the keyframe chain: tokenizer, keyframe model, interpolator, decode,
# paste back), "warp" (mouth/: the mouth-motion model moves the photo's own lips and jaw at its own
# resolution) or "auto" (warp for a photo when the bundle has a mouth/ model, tokens for the avatar)
RENDERS: tuple[str, ...] = get_args(Render)
PASTE_REGIONS: tuple[str, ...] = get_args(PasteRegion)
KEYFRAME_DECODES: tuple[str, ...] = get_args(KeyframeDecode)
DUB_MOUTHS: tuple[str, ...] = get_args(DubMouth)


def _opt(default: Any, help: str, *, flags: tuple[str, ...] = (), group: str = "", server: bool = True,
         cli: bool = True) -> Any:
    """A field with its help text; ``group``: a mutually exclusive CLI group; ``server``: a request field."""
    return field(default=default, metadata={"help": help, "flags": flags, "group": group, "server": server,
                                            "cli": cli})


@dataclass
class SpeakOptions:
    """What to say, over which face, and how."""

    text: str | None = _opt(None, "script to speak (synthesized by --voice, whose own durations time the phones)",
                            group="source")
    audio: str | Path | None = _opt(None, "speech recording (WAV/FLAC/OGG) to lip-sync to; over 30 s without "
                                          "--transcript it is recognized piece by piece, split at pauses",
                                    group="source", server=False)
    transcript: str | None = _opt(None, "what the recording says (checked against the offline speech recognizer, "
                                        "then force-aligned); without it the recognizer supplies the words")
    image: str | Path | np.ndarray | None = _opt(None, "portrait photo with one face (default: the bundled avatar)",
                                                 group="face", server=False)
    video: str | Path | None = _opt(None, "a video of one face to dub: its head motion, blinks and background are "
                                          "kept (looped forward and back to the speech's length) and only the mouth "
                                          "is moved to the new speech", group="face", server=False)
    dub_mouth: DubMouth = _opt("own", "with --video, which mouth is moved to the new speech: own (each frame's own) "
                                      "or first-frame (the first frame's, carried into every frame, so what the video "
                                      "was saying does not show through)")
    out: str | Path | None = _opt("out.mp4", "output MP4 path (written only when complete)", flags=("-o", "--out"),
                                  server=False)
    lang: str = _opt("en", "language of the text or speech: en or zh (or another the bundle was trained for); "
                           "for --audio also 'any' (phone recognition: the mouth follows speech in a language with "
                           "no model here)")
    seed: int = _opt(0, "random seed (same seed, same video)")
    crop_only: bool = _opt(False, "write the aligned face crop instead of the full portrait")
    voice: str | None = _opt(None, "voice for --text: a Piper voice (en_US-joe-medium, alias joe), an espeak-ng "
                                   "voice (en-us, en-gb+f3) or variant (+f3); 'piper:'/'espeak:' pick the backend; "
                                   "unset: the natural Piper voice when installed (English), else espeak-ng; "
                                   "see --list-voices")
    rate: int = _opt(160, "speaking rate for --text in words per minute")
    pitch: int = _opt(50, "voice pitch for --text, 0-100 (espeak-ng voices only)")
    aligner: str = _opt("auto", "aligner for --audio: auto, whisperx, pocketsphinx, whisper, espeak or phoneloop "
                                "(--lang any)")
    temperature: float = _opt(0.0, "keyframe sampling temperature (0 = greedy)")
    top_k: int = _opt(0, "keyframe sampling top-k (0 = off)")
    guidance: float | None = _opt(None, "classifier-free guidance scale on the phonemes (1 = off; default: the "
                                        "bundle's pipeline.yaml guidance)")
    keyframe_decode: KeyframeDecode | None = _opt(
        None, "how keyframes become pixels: argmax (the decoded codes) or expected (each cell's expected code under "
              "the decoding logits; default: the bundle's pipeline.yaml keyframe_decode)")
    paste_region: PasteRegion | None = _opt(
        None, "what of the portrait is regenerated: face (the whole face crop) or mouth (mouth, lips, chin and lower "
              "cheeks; everything else stays the photo's own pixels; default: the bundle's pipeline.yaml "
              "paste_region)")
    render: Render | None = _opt(
        None, "how frames are made: warp (the photo's own lips and jaw moved by the mouth-motion model, at the "
              "photo's resolution), tokens (the keyframe chain: tokenizer, keyframe model, interpolator) or auto "
              "(warp for a photo, tokens for the bundled avatar; default: the bundle's pipeline.yaml render)")
    progress: bool = _opt(False, "progress bar", server=False, cli=False)  # the CLI's --quiet turns it off


def option_fields(where: Literal["cli", "server"]) -> list[tuple[str, Any, Any, dict]]:
    """(name, type, default, metadata) of the fields that ``where`` exposes."""
    hints = get_type_hints(SpeakOptions)
    return [(f.name, hints[f.name], f.default if f.default is not MISSING else None, dict(f.metadata))
            for f in fields(SpeakOptions) if f.metadata.get(where)]


def _choices(tp: Any) -> list[str] | None:
    for arg in (tp, *get_args(tp)):
        if get_origin(arg) is Literal:
            return list(get_args(arg))
    return None


def _scalar(tp: Any) -> type:
    for t in (bool, int, float):
        if tp is t or t in get_args(tp):
            return t
    return str


def add_arguments(parser: argparse.ArgumentParser, groups: dict[str, Any] | None = None) -> None:
    """The ``speak`` options on ``parser``; ``groups`` maps a field's group name to a mutually exclusive
    group already made (made here, optional, when absent)."""
    groups = dict(groups or {})
    for name, tp, default, meta in option_fields("cli"):
        target = parser
        if meta["group"]:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["group"]]
        flags = meta["flags"] or (f"--{name.replace('_', '-')}",)
        kind = _scalar(tp)
        if kind is bool:
            target.add_argument(*flags, dest=name, action="store_true", help=meta["help"])
            continue
        choices = _choices(tp)
        target.add_argument(*flags, dest=name, default=default, help=meta["help"], choices=choices,
                            type=None if choices else (kind if kind is not str else None))


def from_args(args: argparse.Namespace, **extra: Any) -> SpeakOptions:
    """The options the CLI parsed (plus ``extra``, e.g. ``progress``)."""
    return SpeakOptions(**{name: getattr(args, name) for name, *_ in option_fields("cli")}, **extra)
