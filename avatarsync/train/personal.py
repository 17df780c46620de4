"""A personal avatar from one's own footage: ``avatarsync train personal --video me.mp4 --out my-avatar``.

1. The footage is prepared like any real corpus (``data/prepare.py``, folder layout; transcripts
   from ``--transcript`` files or, without them, the offline recognizer).
2. The base bundle's mouth-motion model is fine-tuned on it within a time budget (``train mouth``
   through the one training loop: progress with a time estimate, checkpoints that resume), and the
   person's own inner mouth becomes the interior atlas.
3. A bundle is written: the base bundle's models, the person's ``mouth/``, and a few seconds of
   their footage as ``backdrop.mp4``, so ``speak --checkpoint my-avatar --text ...`` dubs that
   clip (their head motion and blinks) rather than animating a still.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class PersonalConfig:
    out: str = "my-avatar"  # bundle folder to write
    videos: list[str] = field(default_factory=list)  # video files or folders of them
    transcripts: list[str] = field(default_factory=list)  # text files, one per video in order (optional)
    corpus: str | None = None  # an already prepared corpus instead of videos
    base: str | None = None  # bundle to start from (default: the shipped one)
    minutes: float = 10.0  # fine-tune time budget
    steps: int = 1500
    lr: float = 1e-3
    backdrop_seconds: float = 4.0  # footage kept as the bundle's default backdrop (0 = none)
    lang: str = "en"
    seed: int = 0
    workers: int = 1


def work_dir(cfg: PersonalConfig) -> Path:
    """Where preparation and checkpoints live (beside the bundle, so a re-run resumes)."""
    out = Path(cfg.out)
    return out.parent / f"{out.name}.work"


def _stage_videos(cfg: PersonalConfig, src: Path) -> None:
    """Link the videos (and their transcripts) into a folder-layout source."""
    videos: list[Path] = []
    for v in cfg.videos:
        p = Path(v)
        if p.is_dir():
            videos += sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            videos.append(p)
        else:
            raise InputError(f"video {p} not found", "pass --video FILE (or a folder of videos), once per video")
    if not videos:
        raise InputError("no videos given", "pass --video me.mp4 (several allowed) or --corpus DIR")
    if cfg.transcripts and len(cfg.transcripts) != len(videos):
        raise InputError(f"{len(cfg.transcripts)} transcripts for {len(videos)} videos",
                         "give one --transcript per --video, in the same order, or none (they are recognized)")
    src.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(videos):
        name = f"v{i:03d}_{''.join(c if c.isalnum() else '_' for c in v.stem)[:40]}"
        link = src / f"{name}{v.suffix.lower()}"
        if not link.exists():
            link.symlink_to(v.resolve())
        if cfg.transcripts:
            t = Path(cfg.transcripts[i])
            if not t.is_file():
                raise InputError(f"transcript {t} not found", "pass a text file with the words spoken")
            (src / f"{name}.txt").write_text(t.read_text(encoding="utf-8"), encoding="utf-8")


def prepare_footage(cfg: PersonalConfig, progress: bool = True) -> Path:
    """The prepared corpus of the footage (``cfg.corpus`` as it is, else prepared in the work folder)."""
    from ..data.prepare import PrepareConfig, prepare_corpus

    if cfg.corpus:
        if not (Path(cfg.corpus) / "manifest.jsonl").is_file():
            raise InputError(f"{cfg.corpus} is not a prepared corpus", "make one with `avatarsync prepare`")
        return Path(cfg.corpus)
    work = work_dir(cfg)
    _stage_videos(cfg, work / "src")
    prepare_corpus(PrepareConfig(src=str(work / "src"), out=str(work / "corpus"), layout="folder", lang=cfg.lang,
                                 speaker="me", workers=cfg.workers, transcribe=not cfg.transcripts),
                   progress=progress)
    if not (work / "corpus" / "manifest.jsonl").is_file() or not (work / "corpus" / "manifest.jsonl").read_text().strip():
        raise InputError("none of the footage could be used (see the prepare report above)",
                         "use videos of one face speaking, with their transcripts")
    return work / "corpus"


def fine_tune(cfg: PersonalConfig, corpus: Path, base: Path, progress: bool = True):
    """Fine-tune the base bundle's mouth-motion model on the footage; returns the TrainResult."""
    from ..mouth.task import MouthConfig, MouthDataConfig, MouthTask
    from .config import TrainConfig
    from .loop import fit

    if not (base / "mouth" / "config.yaml").is_file():
        raise CheckpointError(f"the base bundle {base} has no mouth-motion model (mouth/)",
                              "start from the shipped bundle or one made with `avatarsync bundle --mouth`")
    from ..data.corpus import Corpus

    splits = {c.split for c in Corpus(corpus).clips()}
    train_split = "train" if "train" in splits else sorted(splits)[0]
    val_split = "val" if "val" in splits else ("test" if "test" in splits else train_split)
    task_cfg = MouthConfig(init_from=str(base / "mouth"),
                           data=MouthDataConfig(corpus=str(corpus), train_split=train_split, val_split=val_split,
                                                jitter_ms=20.0))
    train_cfg = TrainConfig(out_dir=str(work_dir(cfg) / "mouth"), steps=cfg.steps, batch_size=16, lr=cfg.lr,
                            warmup_steps=20, weight_decay=0.01, ema=0.99, eval_every=max(cfg.steps // 3, 1),
                            save_every=100, log_every=50, max_minutes=cfg.minutes, device="cpu", seed=cfg.seed,
                            threads=2)
    return fit(MouthTask(task_cfg), train_cfg, task_config=task_cfg, progress=progress)


def write_backdrop(corpus: Path, path: Path, seconds: float) -> Path | None:
    """The first ``seconds`` of the footage's longest training clip, as a silent MP4, with its tracked
    landmarks in frame pixels beside it (``backdrop.npz``: points, detected), so speak need not track it."""
    import numpy as np

    from ..data.corpus import Corpus
    from ..evaluate.reenact import real_landmarks
    from ..io import read_video_frames, write_mp4

    clips = Corpus(corpus).clips()
    if seconds <= 0 or not clips:
        return None
    clip = max(clips, key=lambda c: (c.split == "train", c.duration))
    frames, fps = read_video_frames(clip.video_path, clip.fps)
    n = max(int(round(seconds * clip.fps)), 1)
    frames = frames[:n]
    points = real_landmarks(clip, frames)[:n]
    detected = np.isfinite(points).all(axis=(1, 2))
    np.savez_compressed(path.with_suffix(".npz"), points=np.nan_to_num(points).astype(np.float32), detected=detected)
    h, w = frames.shape[1:3]
    return write_mp4(path, frames[:, : h - h % 2, : w - w % 2], clip.fps)


def train_personal(cfg: PersonalConfig, progress: bool = True) -> Path:
    """Prepare, fine-tune and bundle; returns the bundle folder."""
    import yaml

    from ..pipeline import DEFAULT_BUNDLE

    base = Path(cfg.base) if cfg.base else DEFAULT_BUNDLE
    if not (base / "pipeline.yaml").is_file():
        raise CheckpointError(f"{base} is not a model bundle", "pass --from a folder made by `avatarsync bundle`")
    out = Path(cfg.out)
    if out.resolve() == base.resolve():
        raise InputError("the personal bundle would overwrite its base", "choose another --out")
    corpus = prepare_footage(cfg, progress)
    result = fine_tune(cfg, corpus, base, progress)
    tmp = out.parent / f"{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("mouth", "backdrop.mp4", "backdrop.npz"))
    shutil.copytree(result.out_dir / "final", tmp / "mouth")
    info = yaml.safe_load((tmp / "pipeline.yaml").read_text()) or {}
    backdrop = write_backdrop(corpus, tmp / "backdrop.mp4", cfg.backdrop_seconds)
    info["backdrop"] = "backdrop.mp4" if backdrop else ""
    info["render"] = "auto"
    n = sum(1 for _ in open(Path(corpus) / "manifest.jsonl"))
    info["trained_on"] = f"personal: mouth model fine-tuned from {base} on {n} clips of {corpus}"
    found = json.loads((result.out_dir / "final" / "metrics.json").read_text()) \
        if (result.out_dir / "final" / "metrics.json").is_file() else {}
    info.setdefault("metrics", {})["mouth"] = {k: round(float(v), 4) for k, v in found.items()
                                               if k.startswith("val/") and isinstance(v, (int, float))}
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
