"""Real talking-face video -> a corpus folder (``avatarsync prepare``), read like a ``synth-data`` corpus.

Per source video: frames resampled to 25 fps and audio to 16 kHz mono; the largest face tracked
with mediapipe's face mesh in every frame (short misses filled in, smoothed over time,
``faces.tracking``); the clip cut at shot changes and long face losses; one aligned crop per clip
(the similarity of ``faces.align.alignment_matrix`` on the clip's median eye and mouth points, the
transform the pipeline applies to a portrait); the phoneme track from the words' times in an
alignment file with the phones forced-aligned inside each word, else from forced alignment
against the transcript.

A clip folder holds what a procedural clip holds, with measurements in place of drawn truth:

    frames.npz   ``frames``: (N, S, S, 3) uint8 aligned crops
    truth.npz    ``landmarks`` (N, 478, 2) mediapipe points in crop pixels, ``detected`` (N,) bool,
                 ``lip_gap`` (N,) inner-lip gap over eye-corner distance, ``matrix`` (2, 3) source
                 pixel -> crop pixel, ``source_shape`` (H, W)
    track.json   the phoneme track; ``words.json`` the words' times when known
    speech.wav   16 kHz mono; ``video.mp4`` the source frames at 25 fps with the speech (for evaluation)

Nothing stops the run: a video that cannot be used is skipped, and why goes to
``prepare_report.json``. Each finished video leaves a record in ``items/``, so a re-run resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
import traceback
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import AlignmentError, AvatarSyncError, InputError
from .sources import LAYOUTS, SourceItem, discover

SAMPLE_RATE = 16000
RIVAL_AREA = 0.5  # a second face at least this fraction of the largest's area is a second speaker
RIVAL_FRAMES = 0.1  # ... in more than this fraction of the frames: the clip is ambiguous
MAX_AV_GAP = 0.5  # seconds: video and audio lengths differing by more -> a truncated file
LANDMARK_LAYOUT = "mediapipe478"


@dataclass
class PrepareConfig:
    src: str = ""  # source folder
    out: str = "runs/real"  # corpus folder to write
    layout: Literal["grid", "folder", "cmlr"] = "grid"
    lang: str = "en"  # speech language (cmlr: zh)
    speaker: str | None = None  # speaker name for every video (default: from the layout)
    size: int = 256  # side of the aligned crops in pixels
    face_scale: float = 1.0  # as faces.align: > 1 makes the face larger in the crop
    fps: float = 25.0
    use_align: bool = True  # use word times of alignment files where they exist
    split: Literal["auto", "train", "val", "test"] = "auto"  # auto: by split_by; else every clip in one split
    split_by: Literal["sentence", "speaker"] = "sentence"
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 0
    min_seconds: float = 1.0  # shorter stretches of usable face are dropped
    max_seconds: float = 120.0  # longer videos are refused (memory): cut them first
    workers: int = 1
    retry_skipped: bool = False  # re-try videos a previous run skipped
    limit: int = 0  # prepare at most this many videos (0 = all)
    transcribe: bool = False  # videos without a transcript: recognize their speech (the whisper aligner)


def check_config(cfg: PrepareConfig) -> None:
    if cfg.layout not in LAYOUTS:
        raise InputError(f"unknown layout {cfg.layout!r}", f"use one of {', '.join(LAYOUTS)}")
    if cfg.size < 32 or cfg.size % 2:
        raise InputError(f"--size must be an even number >= 32, got {cfg.size}")
    if not 0 <= cfg.val_fraction + cfg.test_fraction < 1:
        raise InputError("val and test fractions must be >= 0 and sum to less than 1")
    if cfg.split not in ("auto", "train", "val", "test"):
        raise InputError(f"unknown split {cfg.split!r}", "use auto, train, val or test")
    if cfg.workers < 1:
        raise InputError(f"--workers must be at least 1, got {cfg.workers}")


# -- one video ----------------------------------------------------------------------------------
class Skip(Exception):
    """A video that cannot be used; ``reason`` goes to the report."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class ItemWorker:
    """Prepares videos one at a time; holds the aligner so its model loads once per process."""

    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg
        self._sphinx: dict[bool, object] = {}

    def sphinx(self, check_match: bool):
        """pocketsphinx; ``check_match=False`` where the words' times are known (only phones are wanted)."""
        if check_match not in self._sphinx:
            from ..phonemes.align.sphinx import PocketsphinxAligner

            self._sphinx[check_match] = PocketsphinxAligner(check_match=check_match)
        return self._sphinx[check_match]

    def __call__(self, item: SourceItem) -> dict:
        t0 = time.perf_counter()
        record = {"item": item.item_id, "video": str(item.video), "speaker": item.speaker, "status": "ok",
                  "kind": "", "reason": "", "notes": [], "clips": [], "stages": {}}
        try:
            record["clips"], record["notes"] = self.prepare(item, record["stages"])
        except Skip as s:
            record.update(status="skipped", kind=s.kind, reason=s.reason)
        except AvatarSyncError as e:
            record.update(status="skipped", kind="input", reason=str(e))
        except Exception as e:  # a bug or an unforeseen file: report it, lose nothing else
            record.update(status="skipped", kind="error", reason=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc(limit=4))
        record["seconds"] = round(time.perf_counter() - t0, 3)
        return record

    def prepare(self, item: SourceItem, stages: dict[str, float]) -> tuple[list[dict], list[str]]:
        """The clips of one video (manifest fields) and notes; ``stages`` gets seconds per stage."""
        from ..faces.tracking import shot_cuts, track_faces
        from ..io import read_video_frames
        from ..phonemes.audio import load_audio, resample
        from ..phonemes.track import WordSpan

        cfg = self.cfg
        if "error" in item.extra:
            raise Skip("text", item.extra["error"])
        if not item.transcript and not item.words and not cfg.transcribe:
            raise Skip("text", "no transcript: put the words spoken in NAME.txt beside the video or in "
                               "transcripts.tsv (clip<TAB>transcript), or pass --transcribe")
        clock = _Clock(stages)
        try:
            frames, _ = read_video_frames(item.video, cfg.fps)
        except InputError as e:
            raise Skip("video", e.problem) from None
        if len(frames) / cfg.fps > cfg.max_seconds:
            raise Skip("video", f"{len(frames) / cfg.fps:.0f} s long, over --max-seconds {cfg.max_seconds:.0f}: "
                                "cut it into shorter clips first")
        try:
            audio, sr = load_audio(item.video)
        except AvatarSyncError as e:
            raise Skip("audio", e.problem) from None
        audio = resample(audio, sr, SAMPLE_RATE)
        v_dur, a_dur = len(frames) / cfg.fps, len(audio) / SAMPLE_RATE
        if abs(v_dur - a_dur) > MAX_AV_GAP:
            raise Skip("video", f"video lasts {v_dur:.2f} s but its audio {a_dur:.2f} s (a truncated file?)")
        n = min(len(frames), int(round(a_dur * cfg.fps)))
        frames = frames[:n]
        audio = np.pad(audio, (0, max(0, int(round(n / cfg.fps * SAMPLE_RATE)) - len(audio))))
        audio = audio[: int(round(n / cfg.fps * SAMPLE_RATE))]
        clock("read")
        faces = track_faces(frames)
        if not faces.detected.any():
            raise Skip("face", "no face found in any frame")
        rivals = faces.rival >= RIVAL_AREA
        if rivals.mean() > RIVAL_FRAMES:
            raise Skip("face", f"two faces of similar size in {int(rivals.sum())} of {n} frames: "
                               "which one speaks is ambiguous")
        cuts = shot_cuts(frames)
        clock("faces")
        track, words, track_source = self.phonemes(item, audio)
        clock("phonemes")
        notes = []
        segments = usable_segments(faces.usable & ~rivals, cuts, int(round(cfg.min_seconds * cfg.fps)))
        dropped = n - sum(b - a for a, b in segments)
        if not segments:
            raise Skip("face", f"no stretch of {cfg.min_seconds:.1f} s with one face in view "
                               f"(face usable in {int(faces.usable.sum())} of {n} frames)")
        if dropped:
            notes.append(f"{dropped} of {n} frames dropped (face lost, a second face, or a shot cut); "
                         f"{len(segments)} clip(s) kept")
        out = Path(cfg.out)
        clips = []
        for k, (a, b) in enumerate(segments):
            clip_id = item.item_id if len(segments) == 1 else f"{item.item_id}_{k}"
            t0, t1 = a / cfg.fps, b / cfg.fps
            seg_track = track if (a, b) == (0, n) else track.slice(t0, t1)
            seg_words = None if words is None else [WordSpan(w.word, w.start - t0, w.end - t0) for w in words
                                                    if w.start >= t0 - 1e-6 and w.end <= t1 + 1e-6]
            seg_audio = audio[int(round(t0 * SAMPLE_RATE)): int(round(t0 * SAMPLE_RATE)) + int(round((b - a) / cfg.fps * SAMPLE_RATE))]
            entry = write_clip(out, clip_id, frames[a:b], faces.points[a:b], faces.detected[a:b], seg_audio,
                               seg_track, seg_words, cfg)
            entry |= {"speaker": item.speaker, "lang": item.lang, "text": item.transcript or "",
                      "source": str(item.video), "start": round(t0, 3), "track_source": track_source,
                      "text_source": item.text_source}
            clips.append(entry)
        clock("write")
        return clips, notes

    def phonemes(self, item: SourceItem, audio: np.ndarray):
        """(track, words or None, source): word times from the alignment file with phones forced-aligned
        inside them, else forced alignment against the transcript."""
        from ..phonemes.align import get_aligner
        from ..phonemes.align.words import espeak_into_words, phones_into_words
        from ..phonemes.track import WordSpan

        duration = len(audio) / SAMPLE_RATE
        try:
            if item.words and self.cfg.use_align:
                words = [w for w in item.words if w.end > w.start]
                if not words or words[-1].end > duration + 0.1:
                    raise Skip("text", "the alignment file's words do not fit inside the audio")
                text = " ".join(w.word for w in words)
                if item.lang == "en":
                    try:
                        _, aligned = self.sphinx(False).align_words(audio, SAMPLE_RATE, text)
                        return phones_into_words(words, aligned, duration, "en", "align+pocketsphinx"), words, \
                            "align+pocketsphinx"
                    except AlignmentError:
                        pass  # the words' own times still hold: take espeak's phones inside them
                timed = [(w.word, w.start, w.end) for w in words]
                return espeak_into_words(timed, duration, item.lang, "align+espeak"), words, "align+espeak"
            text = item.transcript or " ".join(w.word for w in item.words or ())
            if not text:  # --transcribe: the recognizer supplies the words
                track = get_aligner("auto").align(audio, SAMPLE_RATE, None, item.lang)
                return track, None, track.source
            if item.lang == "en":
                track, aligned = self.sphinx(True).align_words(audio, SAMPLE_RATE, text)
                return track, [WordSpan(w.word, w.start, w.end) for w in aligned], "pocketsphinx"
            aligner = get_aligner("auto")
            track = aligner.align(audio, SAMPLE_RATE, text, item.lang)
            return track, None, track.source
        except AlignmentError as e:
            raise Skip("text", f"the transcript does not fit the speech: {e.problem}") from None


class _Clock:
    """Adds the seconds since the last call to ``stages[name]``."""

    def __init__(self, stages: dict[str, float]) -> None:
        self.stages, self.t = stages, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self.t, 4)
        self.t = now


def usable_segments(usable: np.ndarray, cuts: list[int], min_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame runs where a face is usable, broken at shot cuts, at least ``min_frames`` long."""
    mask = np.asarray(usable, bool).copy()
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))
    out = []
    for a, b in runs:
        bounds = [a] + [c for c in cuts if a < c < b] + [b]
        out += [(s, e) for s, e in zip(bounds[:-1], bounds[1:]) if e - s >= max(1, min_frames)]
    return out


def clip_matrix(points: np.ndarray, size: int, face_scale: float) -> np.ndarray:
    """The crop transform of a clip: ``alignment_matrix`` on the median eye and mouth points of its frames."""
    from ..faces.align import alignment_matrix
    from ..faces.landmarks import landmarks_from_points

    return alignment_matrix(landmarks_from_points(np.nanmedian(points, axis=0), LANDMARK_LAYOUT), size, face_scale)


def write_clip(out: Path, clip_id: str, frames: np.ndarray, points: np.ndarray, detected: np.ndarray,
               audio: np.ndarray, track, words, cfg: PrepareConfig) -> dict:
    """Write one clip folder atomically; returns its manifest fields (split and identity come later)."""
    from ..evaluate.metrics import lip_gap
    from ..faces.align import transform_points, warp_to_crop
    from ..io import write_mp4, write_wav

    m = clip_matrix(points, cfg.size, cfg.face_scale)
    crops = np.stack([warp_to_crop(f, m, cfg.size) for f in frames])
    crop_points = transform_points(points.reshape(-1, 2), m).reshape(points.shape).astype(np.float32)
    final = out / "clips" / clip_id
    tmp = out / "clips" / f".{clip_id}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez_compressed(tmp / "frames.npz", frames=crops)
    np.savez_compressed(tmp / "truth.npz", landmarks=crop_points, detected=detected,
                        lip_gap=lip_gap(points).astype(np.float32), matrix=m,
                        source_shape=np.array(frames.shape[1:3]))
    track.save(tmp / "track.json")
    if words is not None:
        (tmp / "words.json").write_text(json.dumps([asdict(w) for w in words]), encoding="utf-8")
    write_wav(tmp / "speech.wav", audio, SAMPLE_RATE)
    h, w = frames.shape[1:3]
    write_mp4(tmp / "video.mp4", frames[:, : h - h % 2, : w - w % 2], cfg.fps, audio, SAMPLE_RATE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return {"clip_id": clip_id, "fps": cfg.fps, "n_frames": int(len(frames)), "duration": track.duration,
            "size": cfg.size}


# -- the corpus ---------------------------------------------------------------------------------
def speaker_identity(speaker: str) -> int:
    """A stable identity number for a real speaker, clear of the procedural identities (< 10^6)."""
    return 1_000_000 + zlib.crc32(speaker.encode("utf-8")) % 1_000_000


def sentence_key(text: str) -> str:
    return " ".join(text.lower().split())


def assign_split(key: str, cfg: PrepareConfig) -> str:
    """A split from a stable hash of ``key`` (a sentence or a speaker) and the split seed."""
    if cfg.split != "auto":
        return cfg.split
    u = zlib.crc32(f"{cfg.split_seed}:{key}".encode("utf-8")) / 2**32
    if u < cfg.val_fraction:
        return "val"
    if u < cfg.val_fraction + cfg.test_fraction:
        return "test"
    return "train"


def _init_worker(cfg: PrepareConfig) -> None:
    import cv2

    cv2.setNumThreads(1)
    global _WORKER  # one per worker process, so each loads the aligner once
    _WORKER = ItemWorker(cfg)


def _work(item: SourceItem) -> dict:
    return _WORKER(item)


_WORKER: ItemWorker | None = None


def _load_records(folder: Path) -> dict[str, dict]:
    records = {}
    for p in sorted(folder.glob("*.json")):
        try:
            r = json.loads(p.read_text(encoding="utf-8"))
            records[r["item"]] = r
        except (json.JSONDecodeError, KeyError):
            continue  # a record cut off mid-write: that video is done again
    return records


def _done(record: dict, out: Path, retry_skipped: bool) -> bool:
    if record.get("status") == "ok":
        return all((out / "clips" / c["clip_id"] / "frames.npz").is_file() for c in record["clips"])
    return not retry_skipped


def prepare_corpus(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Prepare every video of ``cfg.src`` into ``cfg.out``; returns the report (also in prepare_report.json)."""
    from tqdm.auto import tqdm

    check_config(cfg)
    items = discover(cfg.src, cfg.layout, cfg.lang, cfg.speaker)
    if cfg.limit > 0:
        items = items[: cfg.limit]
    out = Path(cfg.out)
    (out / "items").mkdir(parents=True, exist_ok=True)
    (out / "clips").mkdir(exist_ok=True)
    records = _load_records(out / "items")
    todo = [it for it in items if not (it.item_id in records and _done(records[it.item_id], out, cfg.retry_skipped))]
    resumed = len(items) - len(todo)
    t0 = time.time()
    bar = tqdm(total=len(items), initial=resumed, desc="prepare", unit="video", disable=not progress)

    def keep(record: dict) -> None:
        records[record["item"]] = record
        tmp = out / "items" / f".{record['item']}.json.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, out / "items" / f"{record['item']}.json")
        bar.update(1)

    if cfg.workers > 1 and len(todo) > 1:
        # spawn, not fork: a process that already ran mediapipe or torch holds threads a fork would copy locked
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(cfg,)) as pool:
            for record in pool.map(_work, todo, chunksize=1):
                keep(record)
    else:
        worker = ItemWorker(cfg)
        for item in todo:
            keep(worker(item))
    bar.close()
    wall = time.time() - t0
    wanted = {it.item_id for it in items}
    report = write_corpus(out, [r for k, r in sorted(records.items()) if k in wanted], cfg,
                          {"wall_seconds": round(wall, 2), "resumed": resumed, "processed": len(todo)})
    return report


def write_corpus(out: Path, records: list[dict], cfg: PrepareConfig, run: dict) -> dict:
    """manifest.jsonl, corpus.json and prepare_report.json from the per-video records."""
    entries = []
    for r in records:
        for c in r.get("clips", []) if r.get("status") == "ok" else []:
            key = sentence_key(c["text"]) if cfg.split_by == "sentence" else c["speaker"]
            entries.append({**c, "split": assign_split(key, cfg), "identity": speaker_identity(c["speaker"]),
                            "sentence_id": f"s{zlib.crc32(sentence_key(c['text']).encode('utf-8')):08x}"})
    tmp = out / "manifest.jsonl.tmp"
    tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    os.replace(tmp, out / "manifest.jsonl")
    processed = [r for r in records if "seconds" in r]
    seconds = sum(e["duration"] for e in entries)
    skipped = [r for r in records if r.get("status") != "ok"]
    compute = sum(r["seconds"] for r in processed)
    stages: Counter[str] = Counter()
    for r in processed:
        stages.update(r.get("stages", {}))
    report = {
        "source": str(cfg.src), "layout": cfg.layout, "videos": len(records),
        "prepared": len(records) - len(skipped), "skipped": len(skipped), "clips": len(entries),
        "video_seconds": round(seconds, 2), "compute_seconds": round(compute, 2),
        "compute_seconds_per_minute_of_video": round(compute / max(seconds, 1e-9) * 60, 2),
        "stage_seconds_per_minute_of_video": {k: round(v / max(seconds, 1e-9) * 60, 2) for k, v in stages.items()},
        "splits": {s: sum(1 for e in entries if e["split"] == s) for s in ("train", "val", "test")},
        "track_sources": dict(Counter(e["track_source"] for e in entries)),
        "skipped_by_kind": dict(Counter(r.get("kind") or "other" for r in skipped)),
        "skipped_videos": [{"item": r["item"], "video": r["video"], "kind": r.get("kind", ""),
                            "reason": r.get("reason", "")} for r in skipped],
        "notes": [{"item": r["item"], "note": n} for r in records for n in r.get("notes", [])],
        **run,
    }
    settings = {"kind": "real", "landmark_layout": LANDMARK_LAYOUT, **asdict(cfg),
                "speakers": sorted({e["speaker"] for e in entries}),
                "openness_scale": openness_scales(out, entries),
                "splits": report["splits"]}
    (out / "corpus.json").write_text(json.dumps(settings, indent=1, ensure_ascii=False))
    (out / "prepare_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def openness_scales(out: Path, entries: list[dict], quantile: float = 98.0) -> dict[str, float]:
    """Each speaker's wide-open lip gap (the ``quantile`` percentile over their detected frames): the
    gap that reads as openness 1, so a real mouth's openness means what a drawn one's does."""
    gaps: dict[str, list[np.ndarray]] = {}
    for e in entries:
        with np.load(out / "clips" / e["clip_id"] / "truth.npz") as z:
            gaps.setdefault(e["speaker"], []).append(z["lip_gap"][z["detected"]])
    return {spk: round(float(np.percentile(np.concatenate(g), quantile)), 5) for spk, g in gaps.items()
            if sum(map(len, g))}
