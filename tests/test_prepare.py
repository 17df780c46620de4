"""`avatarsync prepare` on three real GRID clips (tests/data/grid_s1) plus broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatarsync.data.corpus import Corpus
from avatarsync.data.prepare import PrepareConfig, assign_split, prepare_corpus, usable_segments
from avatarsync.data.sources import discover, grid_sentence, read_grid_align
from avatarsync.errors import InputError

GRID = Path(__file__).parent / "data" / "grid_s1"
GOOD = ("bbal7s", "lgwm6n", "pwad2n")


def _make_source(root: Path) -> Path:
    """The three clips, a truncated copy, a copy with silent audio and one with no face."""
    from avatarsync.io import read_video_frames, write_mp4
    from avatarsync.phonemes.audio import load_audio

    src = root / "src"
    shutil.copytree(GRID, src)
    data = (GRID / "video" / "bbal7s.mp4").read_bytes()
    (src / "video" / "bbaz1a.mp4").write_bytes(data[: len(data) // 3])  # truncated: unreadable
    frames, _ = read_video_frames(GRID / "video" / "lgwm6n.mp4", 25)
    audio, sr = load_audio(GRID / "video" / "lgwm6n.mp4")
    write_mp4(src / "video" / "bbaz2a.mp4", frames, 25, np.zeros_like(audio), sr)  # silent
    grey = np.full_like(frames, 128)
    write_mp4(src / "video" / "bbaz3a.mp4", grey, 25, audio, sr)  # speech, no face
    late = frames.copy()
    late[:20] = 128  # the face appears at 0.8 s
    write_mp4(src / "video" / "lgwm6a.mp4", late, 25, audio, sr)
    (src / "transcripts.tsv").write_text("clip\ttranscript\nlgwm6a\tlay green with m six now\n")
    return src


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    src = _make_source(root)
    cfg = PrepareConfig(src=str(src), out=str(root / "corpus"), layout="grid", speaker="s1", size=64, split="train")
    report = prepare_corpus(cfg, progress=False)
    return cfg, report


def test_grid_align_reader(tmp_path):
    words = read_grid_align(GRID / "align" / "bbal7s.align")
    assert [w.word for w in words] == "bin blue at l seven soon".split()
    first = (GRID / "align" / "bbal7s.align").read_text().split("\n")[1].split()
    assert words[0].start == pytest.approx(int(first[0]) / 25000) and words[0].end == pytest.approx(int(first[1]) / 25000)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:]))
    bad = tmp_path / "bad.align"
    bad.write_text("0 100 sil\n100 x bin\n")
    with pytest.raises(InputError, match="integers"):
        read_grid_align(bad)


def test_grid_sentence_from_name():
    assert grid_sentence("bbaf2n") == "bin blue at f two now"
    assert grid_sentence("lgwm6n") == "lay green with m six now"
    assert grid_sentence("notgrid") is None and grid_sentence("xbaf2n") is None


def test_discover_reads_align_words_and_names(tmp_path):
    src = _make_source(tmp_path)
    items = {it.item_id: it for it in discover(src, "grid", speaker="s1")}
    assert items["s1_bbal7s"].words is not None and items["s1_bbal7s"].text_source == "align"
    assert items["s1_bbaz3a"].transcript == "bin blue at z three again" and items["s1_bbaz3a"].words is None


def test_prepare_reports_bad_videos_and_keeps_the_rest(prepared):
    cfg, report = prepared
    assert report["prepared"] == 4 and report["clips"] == 4 and report["skipped"] == 3
    why = {s["item"]: s for s in report["skipped_videos"]}
    assert why["s1_bbaz1a"]["kind"] == "video" and "cannot read video" in why["s1_bbaz1a"]["reason"]
    assert why["s1_bbaz2a"]["kind"] == "audio" and "silent" in why["s1_bbaz2a"]["reason"]
    assert why["s1_bbaz3a"]["kind"] == "face" and "no face" in why["s1_bbaz3a"]["reason"]
    on_disk = json.loads((Path(cfg.out) / "prepare_report.json").read_text())
    assert on_disk["skipped_videos"] == report["skipped_videos"]
    assert not list((Path(cfg.out) / "clips").glob(".*partial"))  # no half-written clip


def test_prepared_clips_read_like_a_corpus(prepared):
    cfg, _ = prepared
    clips = [c for c in Corpus(cfg.out).clips() if c.clip_id != "s1_lgwm6a"]
    assert sorted(c.clip_id for c in clips) == [f"s1_{n}" for n in GOOD]
    for clip in clips:
        frames, truth, track = clip.frames(), clip.truth(), clip.track()
        assert frames.shape == (75, 64, 64, 3) and clip.n_frames == 75 and clip.duration == pytest.approx(3.0)
        assert truth["landmarks"].shape == (75, 478, 2) and truth["detected"].all()
        lm = truth["landmarks"]
        assert 0 < np.nanmin(lm) and np.nanmax(lm) < 64  # landmarks are in crop pixels
        assert np.nanmax(truth["lip_gap"]) > 0.05 > np.nanmin(truth["lip_gap"])  # the mouth opens and closes
        assert track.duration == pytest.approx(3.0) and track.source == "align+pocketsphinx"
        track.validate()
        assert clip.audio_path.is_file() and clip.video_path.is_file()


def test_a_face_that_appears_late_starts_the_clip_there(prepared):
    cfg, report = prepared
    clip = next(c for c in Corpus(cfg.out).clips() if c.clip_id == "s1_lgwm6a")
    assert clip.n_frames == 55 and clip.duration == pytest.approx(2.2) and len(clip.frames()) == 55
    track = clip.track()
    assert track.duration == pytest.approx(2.2) and track.source == "pocketsphinx"
    words = json.loads((clip.folder / "words.json").read_text())
    full = read_grid_align(GRID / "align" / "lgwm6n.align")
    ref = full[len(full) - len(words):]
    assert len(words) >= 3 and [w["word"] for w in words] == [w.word for w in ref]  # words said after 0.8 s
    for got, want in zip(words, ref):  # forced-aligned here, shifted with the frames
        assert abs(got["start"] - (want.start - 0.8)) < 0.1 and abs(got["end"] - (want.end - 0.8)) < 0.1
    assert all(0 <= w["start"] < w["end"] <= 2.2 + 1e-6 for w in words)
    assert any("20 of 75 frames dropped" in n["note"] for n in report["notes"])


def test_phones_lie_inside_their_align_words(prepared):
    cfg, _ = prepared
    for clip in Corpus(cfg.out).clips():
        if clip.clip_id == "s1_lgwm6a":
            continue
        words = read_grid_align(GRID / "align" / f"{clip.clip_id[3:]}.align")
        speech = [p for p in clip.track().phones if p.symbol != "sil"]
        assert len(speech) >= len(words)
        for p in speech:
            assert any(w.start - 1e-6 <= p.start and p.end <= w.end + 1e-6 for w in words), p


def test_forced_aligned_words_match_align_files(tmp_path):
    """Prepared from the transcript alone, word boundaries land near the .align ones."""
    cfg = PrepareConfig(src=str(GRID), out=str(tmp_path / "c"), speaker="s1", size=32, use_align=False)
    prepare_corpus(cfg, progress=False)
    errors = []
    for clip in Corpus(cfg.out).clips():
        assert clip.track().source == "pocketsphinx"
        got = json.loads((clip.folder / "words.json").read_text())
        ref = read_grid_align(GRID / "align" / f"{clip.clip_id[3:]}.align")
        assert [w["word"] for w in got] == [w.word for w in ref]
        errors += [abs(g["start"] - r.start) for g, r in zip(got, ref)] + [abs(g["end"] - r.end) for g, r in zip(got, ref)]
    assert np.mean(errors) < 0.05


def test_rerun_resumes_without_redoing(prepared):
    cfg, first = prepared
    again = prepare_corpus(cfg, progress=False)
    assert again["processed"] == 0 and again["resumed"] == 7
    assert again["clips"] == first["clips"]
    shutil.rmtree(Path(cfg.out) / "clips" / "s1_lgwm6n")  # a lost clip is made again, alone
    third = prepare_corpus(cfg, progress=False)
    assert third["processed"] == 1 and (Path(cfg.out) / "clips" / "s1_lgwm6n" / "frames.npz").is_file()


def test_splits_are_disjoint_and_stable():
    cfg = PrepareConfig(val_fraction=0.1, test_fraction=0.1, split_seed=0)
    keys = [f"sentence {i}" for i in range(2000)]
    splits = [assign_split(k, cfg) for k in keys]
    assert splits == [assign_split(k, cfg) for k in keys]  # a sentence always lands in one split
    for name, frac in (("val", 0.1), ("test", 0.1), ("train", 0.8)):
        assert abs(splits.count(name) / len(keys) - frac) < 0.03
    other = [assign_split(k, PrepareConfig(val_fraction=0.1, test_fraction=0.1, split_seed=1)) for k in keys]
    assert other != splits
    assert assign_split("anything", PrepareConfig(split="test")) == "test"


def test_usable_segments_break_at_cuts_and_gaps():
    usable = np.ones(100, bool)
    usable[40:50] = False
    assert usable_segments(usable, [], 5) == [(0, 40), (50, 100)]
    assert usable_segments(usable, [20, 80], 5) == [(0, 20), (20, 40), (50, 80), (80, 100)]
    assert usable_segments(usable, [], 45) == [(50, 100)]


def test_shot_cut_found_at_the_join():
    from avatarsync.faces.tracking import shot_cuts
    from avatarsync.io import read_video_frames

    a, _ = read_video_frames(GRID / "video" / "bbal7s.mp4", 25)
    b = np.ascontiguousarray(a[:, ::-1, ::-1])  # the same clip upside down and mirrored: another shot
    assert shot_cuts(a) == []
    assert shot_cuts(np.concatenate([a[:30], b[:30]])) == [30]


def test_tokenizer_data_reads_a_prepared_corpus(prepared):
    from avatarsync.tokenizers.data import TokenizerDataConfig, load_corpus_frames

    cfg, _ = prepared
    data = TokenizerDataConfig(root=cfg.out, crop_size=32, align="stable", landmark_layout="mediapipe478",
                               frames_per_clip=4)
    frames = load_corpus_frames(data, "train", 4)
    assert frames.crops.shape == (16, 32, 32, 3)
    boxes = frames.mouth_boxes
    assert (boxes[:, 0] > 4).all() and (boxes[:, 2] < 28).all() and (boxes[:, 1] > 12).all()  # mouth in the lower middle


def test_real_openness_from_the_lip_gap_reaches_the_keyframe_cache(prepared, tmp_path):
    from avatarsync.fkg.data import CacheDataset, build_token_cache
    from avatarsync.tokenizers import VisualTokenizer

    cfg, _ = prepared
    scale = json.loads((Path(cfg.out) / "corpus.json").read_text())["openness_scale"]["s1"]
    assert 0.03 < scale < 0.3
    clip = Corpus(cfg.out).clips()[0]
    truth = clip.truth()
    assert truth["openness"].max() == pytest.approx(min(1.0, truth["lip_gap"].max() / scale))
    assert truth["openness"].min() >= 0 and truth["openness"].max() <= 1
    tok_dir = Path(__file__).parents[1] / "avatarsync" / "assets" / "default" / "tokenizer"
    cache = build_token_cache(cfg.out, VisualTokenizer.from_pretrained(tok_dir).eval(), tmp_path / "cache", tokenizer_path=str(tok_dir),
                              crop=None)
    ds = CacheDataset(cache, "train")
    ex = ds.example(0)
    assert ex.key_openness is not None and len(ex.key_openness) == len(ex.units)
    assert ex.key_landmarks is None  # mediapipe points are not the renderer's (pixel-openness metric)
    assert ex.key_codes.shape[1:] == (16, 16)


def test_folder_and_cmlr_layouts(tmp_path):
    """A person's own recordings (folder of videos + NAME.txt) and CMLR's video/ + text/ tree."""
    own = tmp_path / "own" / "me"
    own.mkdir(parents=True)
    shutil.copy(GRID / "video" / "bbal7s.mp4", own / "take1.mp4")
    (own / "take1.txt").write_text("bin blue at l seven soon\n")
    shutil.copy(GRID / "video" / "lgwm6n.mp4", own / "take2.mov")  # any container ffmpeg reads; no transcript
    items = {it.item_id: it for it in discover(tmp_path / "own", "folder")}
    assert items["me_take1"].transcript == "bin blue at l seven soon" and items["me_take1"].speaker == "me"
    assert items["me_take2"].transcript is None
    cfg = PrepareConfig(src=str(tmp_path / "own"), out=str(tmp_path / "own_corpus"), layout="folder", size=32,
                        split="train")
    report = prepare_corpus(cfg, progress=False)
    assert report["clips"] == 1 and report["skipped_videos"][0]["item"] == "me_take2"
    assert "no transcript" in report["skipped_videos"][0]["reason"]
    assert Corpus(cfg.out).clips()[0].track().source == "pocketsphinx"

    cmlr = tmp_path / "cmlr"
    (cmlr / "video" / "s2" / "20170121").mkdir(parents=True)
    (cmlr / "text" / "s2" / "20170121").mkdir(parents=True)
    shutil.copy(GRID / "video" / "pwad2n.mp4", cmlr / "video" / "s2" / "20170121" / "section_1_000.45_003.81.mp4")
    (cmlr / "text" / "s2" / "20170121" / "section_1_000.45_003.81.txt").write_text("和平与发展\nhe2 ping2\n",
                                                                                  encoding="utf-8")
    (item,) = discover(cmlr, "cmlr")
    assert item.lang == "zh" and item.speaker == "s2" and item.transcript == "和平与发展"
    with pytest.raises(InputError, match="video/"):
        discover(tmp_path / "own", "cmlr")


@pytest.mark.timeout(180)
def test_parallel_workers_after_mediapipe_ran_here(prepared, tmp_path):
    """Workers are spawned, not forked: this process already holds mediapipe's threads (the fixture)."""
    cfg = PrepareConfig(src=str(GRID), out=str(tmp_path / "par"), speaker="s1", size=32, split="train", workers=2)
    report = prepare_corpus(cfg, progress=False)
    assert report["clips"] == 3 and report["skipped"] == 0
    one, _ = prepared
    for clip in Corpus(cfg.out).clips():  # the same tracks as the one-worker run
        assert clip.track().to_dict() == next(c for c in Corpus(one.out).clips() if c.clip_id == clip.clip_id).track().to_dict()
