"""The procedural corpus: determinism, disjoint splits, A/V durations, pixels that follow the truth."""

import json

import numpy as np
import pytest

from avatarsync.data.corpus import Corpus
from avatarsync.data.synth import SynthConfig, generate_corpus, make_clip, plan_clips
from avatarsync.io import probe_mp4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    cfg = SynthConfig(out=str(out), clips=6, seed=3, size=128, identities=12)
    summary = generate_corpus(cfg, progress=False)
    return Corpus(out), cfg, summary


def test_plans_split_identities_and_sentences_disjointly():
    for lang in ("en", "zh", "mix"):
        plans = plan_clips(SynthConfig(clips=300, seed=1, lang=lang))
        by = {s: [p for p in plans if p.split == s] for s in ("train", "val", "test")}
        assert all(by[s] for s in by), "every split is used"
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            assert not {p.identity for p in by[a]} & {p.identity for p in by[b]}
            assert not {p.sentence_id for p in by[a]} & {p.sentence_id for p in by[b]}
            assert not {p.text for p in by[a]} & {p.text for p in by[b]}
        assert len({p.identity for p in plans}) >= 50


def test_train_only_plans_add_new_faces_and_training_sentences_only():
    base = plan_clips(SynthConfig(clips=300, seed=1, identities=60))
    extra = plan_clips(SynthConfig(clips=300, seed=1, identities=500, identity_offset=60, train_only=True))
    assert {p.split for p in extra} == {"train"}
    assert min(p.identity for p in extra) >= 60 and len({p.identity for p in extra}) > 150
    assert not {p.identity for p in extra} & {p.identity for p in base}
    held_out = {p.sentence_id for p in base if p.split != "train"}
    assert not {p.sentence_id for p in extra} & held_out


def test_sentence_split_follows_the_split_seed_not_the_clip_seed():
    base = plan_clips(SynthConfig(clips=300, seed=0))
    held_out = {p.sentence_id for p in base if p.split != "train"}
    other_seed = plan_clips(SynthConfig(clips=3000, seed=1, identities=500, identity_offset=60, train_only=True))
    assert len({p.sentence_id for p in other_seed}) > 150 and not {p.sentence_id for p in other_seed} & held_out
    other_split = plan_clips(SynthConfig(clips=3000, seed=1, split_seed=5, train_only=True))
    assert {p.sentence_id for p in other_split} & held_out  # a different split seed holds out other sentences


def test_plans_are_deterministic():
    assert plan_clips(SynthConfig(clips=30, seed=7)) == plan_clips(SynthConfig(clips=30, seed=7))
    assert plan_clips(SynthConfig(clips=30, seed=7)) != plan_clips(SynthConfig(clips=30, seed=8))


def test_same_seed_gives_identical_frames(tmp_path, corpus):
    c, cfg, _ = corpus
    first = c.clips()[0]
    plan = plan_clips(cfg)[0]
    again = SynthConfig(**{**cfg.__dict__, "out": str(tmp_path)})
    make_clip(plan, again, tmp_path)
    with np.load(tmp_path / "clips" / plan.clip_id / "frames.npz") as z:
        np.testing.assert_array_equal(z["frames"], first.frames())


def test_every_clip_has_matching_video_audio_track_and_truth(corpus):
    c, cfg, _ = corpus
    assert len(c) == 6
    for clip in c.clips():
        frames, truth, track = clip.frames(), clip.truth(), clip.track()
        assert frames.shape == (clip.n_frames, cfg.size, cfg.size, 3) and frames.dtype == np.uint8
        for key in ("viseme", "openness", "blink", "yaw", "pitch", "roll", "landmarks"):
            assert len(truth[key]) == clip.n_frames, key
        track.validate()
        assert track.duration == pytest.approx(clip.n_frames / clip.fps, abs=1e-3)
        info = probe_mp4(clip.video_path)
        assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
        assert info["video_frames"] == clip.n_frames
        import soundfile as sf

        wav_seconds = sf.info(str(clip.audio_path)).duration
        assert abs(info["video_duration"] - wav_seconds) <= 1 / clip.fps
        assert abs(info["audio_duration"] - wav_seconds) <= 1 / clip.fps


def test_silence_gives_rest_and_speech_moves_the_mouth(corpus):
    c, _, _ = corpus
    from avatarsync.phonemes.visemes import VISEME_INDEX

    widest = []
    for clip in c.clips():
        truth = clip.truth()
        first_frames = truth["viseme"][:2]  # espeak starts with a short pause
        assert (first_frames == VISEME_INDEX["rest"]).all()
        assert truth["openness"].max() > 0.3  # every sentence opens the mouth
        assert len(set(truth["viseme"].tolist())) >= 4
        widest.append(truth["openness"].max())
    assert max(widest) > 0.5  # and open vowels open it wide


def test_pixel_mouth_openness_tracks_ground_truth(corpus):
    from avatarsync.data.measure import mouth_openness_from_pixels

    c, _, _ = corpus
    measured, truth = [], []
    for clip in c.clips():
        t = clip.truth()
        for frame, lm, o in zip(clip.frames(), t["landmarks"], t["openness"]):
            measured.append(mouth_openness_from_pixels(frame, lm))
            truth.append(o)
    r = np.corrcoef(measured, truth)[0, 1]
    assert r > 0.9, f"pixel openness correlates {r:.3f} with ground truth"


def test_manifest_and_settings(corpus):
    c, cfg, summary = corpus
    settings = json.loads((c.root / "corpus.json").read_text())
    assert settings["seed"] == cfg.seed and settings["summary"]["clips"] == 6
    assert {clip.split for clip in c.clips()} == {"train", "val", "test"}
    assert not list((c.root / "clips").glob(".*partial"))
