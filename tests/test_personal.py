"""`avatarsync train personal`: footage -> fine-tuned mouth model + backdrop -> a bundle that speaks
as the person (on two committed GRID s1 clips, CC BY 4.0)."""

from pathlib import Path

import numpy as np
import pytest

from avatarsync.cli import main
from avatarsync.data.sources import grid_sentence
from avatarsync.errors import InputError
from avatarsync.train.personal import PersonalConfig, train_personal

GRID = Path(__file__).parent / "data" / "grid_s1" / "video"
CLIPS = ("bbal7s", "pwad2n")


@pytest.fixture(scope="module")
def personal(tmp_path_factory):
    root = tmp_path_factory.mktemp("personal")
    texts = []
    for name in CLIPS:
        (root / f"{name}.txt").write_text(grid_sentence(name))
        texts.append(str(root / f"{name}.txt"))
    cfg = PersonalConfig(out=str(root / "me"), videos=[str(GRID / f"{n}.mp4") for n in CLIPS], transcripts=texts,
                         steps=20, minutes=1.0, backdrop_seconds=2.0)
    return train_personal(cfg, progress=False)


def test_personal_bundle_holds_the_persons_mouth_and_backdrop(personal):
    import yaml

    info = yaml.safe_load((personal / "pipeline.yaml").read_text())
    assert info["backdrop"] == "backdrop.mp4" and info["trained_on"].startswith("personal")
    for f in ("mouth/model.safetensors", "mouth/interior.safetensors", "backdrop.mp4", "backdrop.npz"):
        assert (personal / f).is_file(), f
    assert "val/gap_r" in info["metrics"]["mouth"]
    assert not (personal.parent / "me.partial").exists()


def test_personal_bundle_speaks_over_its_backdrop(personal):
    from avatarsync.io import read_video_frames
    from avatarsync.mouth.dub import pingpong
    from avatarsync.mouth.warp import MouthWarp
    from avatarsync.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(personal, device="cpu")
    res = pipe.speak(text="Good morning to all of you, and welcome.", out=None)
    back, _ = read_video_frames(personal / "backdrop.mp4")
    assert "render" in res.timings and res.frames.shape[1:] == back.shape[1:]
    assert len(res.frames) > len(back)  # looped forward and back
    marks = np.load(personal / "backdrop.npz")
    idx = pingpong(len(back), len(res.frames))
    changed = 0
    for t in range(0, len(res.frames), 7):
        s = idx[t]
        x0, y0, x1, y1 = MouthWarp(back[s], marks["points"][s].astype(float)).box
        keep = np.ones(back.shape[1:3], bool)
        keep[y0:y1, x0:x1] = False
        # outside the mouth region: the backdrop (up to its own H.264 re-encoding)
        assert np.abs(res.frames[t][keep].astype(int) - back[s][keep]).mean() < 2.0
        changed += int(np.abs(res.frames[t][~keep].astype(int) - back[s][~keep]).max() > 20)
    assert changed > 0


def test_personal_bad_input_is_explained(tmp_path, capsys):
    with pytest.raises(InputError, match="transcripts for"):
        train_personal(PersonalConfig(out=str(tmp_path / "x"), videos=[str(GRID / "bbal7s.mp4")],
                                      transcripts=["a.txt", "b.txt"]))
    with pytest.raises(InputError, match="not found"):
        train_personal(PersonalConfig(out=str(tmp_path / "x"), videos=[str(tmp_path / "none.mp4")]))
    assert main(["train", "personal", "--video", str(GRID / "bbal7s.mp4")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["train", "mouth"]) == 2
    assert "--config" in capsys.readouterr().err
