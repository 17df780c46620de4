"""`avatarsync evaluate`: self-reenactment with the shipped bundle on a real GRID clip and a drawn one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avatarsync.cli import main
from avatarsync.data.prepare import PrepareConfig, prepare_corpus
from avatarsync.errors import InputError
from avatarsync.evaluate.reenact import EvaluateConfig, evaluate_corpus, format_table, frame_scores

GRID = Path(__file__).parent / "data" / "grid_s1"


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "grid"
    prepare_corpus(PrepareConfig(src=str(GRID), out=str(out), speaker="s1", size=64, split="test", limit=1),
                   progress=False)
    return out


def test_frame_scores_of_the_real_frames_are_perfect(real_corpus):
    from avatarsync.data.corpus import Corpus
    from avatarsync.evaluate.reenact import real_landmarks
    from avatarsync.io import read_video_frames

    clip = Corpus(real_corpus).clips()[0]
    real, _ = read_video_frames(clip.video_path, 25)
    lm = real_landmarks(clip, real)
    assert lm.shape == (75, 478, 2)
    # landmarks mapped back out of the crop sit on the face in the original 360x288 frame
    assert 100 < np.nanmean(lm[..., 0]) < 260 and 60 < np.nanmean(lm[..., 1]) < 240
    s = frame_scores(real, real, lm, np.ones(75, bool), lm)
    assert s["face_ssim"] == pytest.approx(1.0) and s["mouth_psnr"] > 90 and s["mouth_lmd"] == 0
    assert s["lip_gap_r"] == pytest.approx(1.0) and s["best_lag"] == 0 and s["sharpness_ratio"] == pytest.approx(1.0)
    shifted = frame_scores(np.roll(real, 3, axis=0), real, lm, np.ones(75, bool), np.roll(lm, 3, axis=0))
    assert shifted["best_lag"] == 3 and shifted["face_psnr"] < s["face_psnr"]


def test_evaluate_shipped_bundle_on_a_real_clip(real_corpus, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--data", str(real_corpus), "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| face-box PSNR (dB) |" in printed and "still first frame" in printed and "LPIPS" in printed
    report = json.loads(out.read_text())
    assert report["clips_scored"] == 1 and report["corpus"] == "real"
    gen, still = report["pooled"]["generated"], report["pooled"]["still"]
    assert gen["face_found"] > 0.9  # the output is still a face
    assert 15 < gen["face_psnr"] < 45 and 15 < still["face_psnr"] < 45
    assert still["lip_gap_r"] == 0 and -1 <= gen["lip_gap_r"] <= 1
    clip = report["clips"][0]
    assert len(clip["generated"]["lip_gap"]) == clip["frames"] == 75


def test_evaluate_runs_on_a_procedural_corpus(tmp_path):
    from avatarsync.data.synth import SynthConfig, generate_corpus

    generate_corpus(SynthConfig(out=str(tmp_path / "synth"), clips=3, seed=0), progress=False)
    report = evaluate_corpus(EvaluateConfig(data=str(tmp_path / "synth"), split="test"), progress=False)
    assert report["corpus"] == "procedural" and report["clips_scored"] == 1
    assert report["pooled"]["generated"]["face_found"] > 0.9
    assert "face_psnr" in report["pooled"]["still"]
    assert "| mouth-box PSNR (dB) |" in format_table(report)


def test_evaluate_bad_input(tmp_path, real_corpus, capsys):
    with pytest.raises(InputError, match="not a corpus folder"):
        evaluate_corpus(EvaluateConfig(data=str(tmp_path)), progress=False)
    with pytest.raises(InputError, match="no clips in split 'train'"):
        evaluate_corpus(EvaluateConfig(data=str(real_corpus), split="train"), progress=False)
    assert main(["evaluate", "--data", str(tmp_path / "missing")]) == 2
    assert "hint:" in capsys.readouterr().err


def test_face_lpips_compares_face_boxes(real_corpus):
    import torch

    from avatarsync.data.corpus import Corpus
    from avatarsync.evaluate.reenact import face_lpips, real_landmarks
    from avatarsync.io import read_video_frames

    class MeanAbs:  # stands in for LPIPSLoss (tested in test_tokenizer_train): what face_lpips feeds it
        seen: list = []

        def net(self, a, b):
            self.seen.append(a.shape)
            assert a.min() >= -1 and a.max() <= 1
            return (a - b).abs().mean(dim=(1, 2, 3))

    clip = Corpus(real_corpus).clips()[0]
    real, _ = read_video_frames(clip.video_path, 25)
    lm = real_landmarks(clip, real)
    fake = MeanAbs()
    assert face_lpips(fake, real, real, lm) == 0.0
    assert fake.seen[-1] == torch.Size([15, 3, 128, 128])  # every fifth frame's face box at 128 px
    assert face_lpips(fake, np.roll(real, 10, axis=2), real, lm) > 0.01


def test_evaluate_source_video_dubs_the_clip_itself(real_corpus):
    report = evaluate_corpus(EvaluateConfig(data=str(real_corpus), source="video", csim=False), progress=False)
    gen, still = report["pooled"]["generated"], report["pooled"]["still"]
    # the clip's own head and background: far closer to the real frames than the still first frame
    assert gen["face_psnr"] > still["face_psnr"] + 5 and gen["face_ssim"] > still["face_ssim"]
    assert gen["lip_gap_r"] > 0.3 and "stab_face_ssim" not in gen
    # the first frame's mouth carried into every frame: no leak of the clip's own mouth, still its head
    carried = evaluate_corpus(EvaluateConfig(data=str(real_corpus), source="video", dub_mouth="first-frame",
                                             csim=False), progress=False)["pooled"]["generated"]
    assert still["face_ssim"] < carried["face_ssim"] < gen["face_ssim"] and carried["lip_gap_r"] > 0.3
    with pytest.raises(InputError, match="source"):
        evaluate_corpus(EvaluateConfig(data=str(real_corpus), source="mirror", csim=False), progress=False)
