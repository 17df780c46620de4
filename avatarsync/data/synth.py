"""Procedural talking-face corpus: ``avatarsync synth-data``.

Each clip is one drawn identity speaking one sentence: espeak-ng speech with
exact phoneme times, frames whose mouth follows those phonemes, and the
per-frame ground truth. Identities and sentences are split so that test
identities and test sentences never appear in training.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError
from ..interpolation.schedule import pad_to_frames
from .pools import sentence_pool
from .splits import clip_splits, split_indices


@dataclass
class SynthConfig:
    out: str = "runs/corpus"  # output folder
    clips: int = 20  # number of clips
    seed: int = 0  # master seed: same seed, same corpus
    lang: Literal["en", "zh", "fr", "mix"] = "en"  # sentence language; mix alternates en and zh
    size: int = 128  # frame size in pixels (square, even)
    fps: float = 25.0
    identities: int = 60  # size of the identity pool split across train/val/test
    identity_offset: int = 0  # identities are numbered identity_offset .. identity_offset + identities - 1
    # Every clip a training clip (identities all train; sentences from the training sentences of
    # split_seed): extra training data for another corpus whose identities it does not overlap.
    train_only: bool = False
    # Seed of the identity and sentence splits, independent of `seed`: corpora made with the same
    # split_seed agree on which sentences are held out, so one's training clips never say another's
    # val/test sentences.
    split_seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    rate_jitter: int = 15  # speaking rate varies by +- this many words/min around 160
    workers: int = 1  # parallel processes
    video: bool = True  # also write an H.264 + AAC MP4 per clip


@dataclass(frozen=True)
class ClipPlan:
    index: int
    clip_id: str
    split: str
    identity: int
    lang: str
    sentence_id: str
    text: str
    seed: int
    rate: int


def plan_clips(cfg: SynthConfig) -> list[ClipPlan]:
    """Decide every clip's split, identity, sentence and seed (cheap, deterministic)."""
    if cfg.clips < 1:
        raise InputError(f"--clips must be at least 1, got {cfg.clips}")
    if cfg.size < 32 or cfg.size % 2:
        raise InputError(f"--size must be an even number >= 32, got {cfg.size}")
    if cfg.identities < (1 if cfg.train_only else 3):
        raise InputError(f"identities must be at least 3 (train/val/test), got {cfg.identities}")
    if cfg.identity_offset < 0:
        raise InputError(f"--identity-offset must be >= 0, got {cfg.identity_offset}")
    rng = np.random.default_rng(cfg.seed)
    if cfg.train_only:
        id_split = {"train": list(range(cfg.identities))}
        splits = ["train"] * cfg.clips
    else:
        id_split = split_indices(cfg.identities, cfg.split, seed=cfg.split_seed + 1)
        splits = clip_splits(cfg.clips, cfg.split)
    langs = ["en", "zh"] if cfg.lang == "mix" else [cfg.lang]
    sent_split = {lang: split_indices(len(sentence_pool(lang)), cfg.split, seed=cfg.split_seed + 2) for lang in langs}
    plans = []
    for i, split in enumerate(splits):
        lang = langs[i % len(langs)]
        pool = sentence_pool(lang)
        sent_idx = int(rng.choice(sent_split[lang][split]))
        identity = cfg.identity_offset + int(rng.choice(id_split[split]))
        rate = 160 + int(rng.integers(-cfg.rate_jitter, cfg.rate_jitter + 1))
        plans.append(ClipPlan(i, f"{lang}-{i:05d}", split, identity, lang, f"{lang}-{sent_idx:04d}",
                              pool[sent_idx], int(rng.integers(0, 2**31 - 1)), rate))
    return plans


def make_clip(plan: ClipPlan, cfg: SynthConfig, out: Path) -> dict:
    """Synthesize, articulate, render and write one clip; returns its manifest entry."""
    from ..io import write_mp4, write_wav
    from ..phonemes.espeak import synthesize
    from .articulation import articulate, truth_arrays
    from .identity import sample_identity
    from .render import render_frame

    final = out / "clips" / plan.clip_id
    tmp = out / "clips" / f".{plan.clip_id}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    syn = synthesize(plan.text, lang=plan.lang, rate=plan.rate)
    audio, track, n_frames = pad_to_frames(syn.audio, syn.sample_rate, syn.track, cfg.fps)
    states = articulate(track, n_frames, fps=cfg.fps, seed=plan.seed)
    identity = sample_identity(plan.identity, seed=cfg.seed)
    rendered = [render_frame(identity, s, size=cfg.size) for s in states]
    frames = np.stack([r.image for r in rendered])
    truth = truth_arrays(states)
    truth["landmarks"] = np.stack([r.landmarks for r in rendered]).astype(np.float32)
    np.savez_compressed(tmp / "frames.npz", frames=frames)
    np.savez_compressed(tmp / "truth.npz", **truth)
    track.save(tmp / "track.json")
    write_wav(tmp / "speech.wav", audio, syn.sample_rate)
    if cfg.video:
        write_mp4(tmp / "video.mp4", frames, cfg.fps, audio, syn.sample_rate)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return {
        "clip_id": plan.clip_id, "split": plan.split, "identity": plan.identity, "sentence_id": plan.sentence_id,
        "lang": plan.lang, "text": plan.text, "fps": cfg.fps, "n_frames": int(n_frames),
        "duration": track.duration, "size": cfg.size, "seed": plan.seed, "rate": plan.rate,
        "sample_rate": syn.sample_rate,
    }


def _worker(args: tuple[ClipPlan, SynthConfig, str]) -> dict:
    import torch

    torch.set_num_threads(1)
    plan, cfg, out = args
    return make_clip(plan, cfg, Path(out))


def generate_corpus(cfg: SynthConfig, progress: bool = True) -> dict:
    """Write the whole corpus to ``cfg.out``; returns summary figures (clips, seconds, speed)."""
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    plans = plan_clips(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clips").mkdir(exist_ok=True)
    t0 = time.time()
    entries: list[dict] = []
    jobs = [(p, cfg, str(out)) for p in plans]
    bar = tqdm(total=len(jobs), desc="synth-data", unit="clip", disable=not progress)
    if cfg.workers > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for entry in pool.map(_worker, jobs):
                entries.append(entry)
                bar.update(1)
    else:
        for job in jobs:
            entries.append(make_clip(job[0], cfg, out))
            bar.update(1)
    bar.close()
    wall = time.time() - t0
    manifest_tmp = out / "manifest.jsonl.tmp"
    manifest_tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    os.replace(manifest_tmp, out / "manifest.jsonl")
    seconds = sum(e["duration"] for e in entries)
    summary = {"clips": len(entries), "video_seconds": round(seconds, 3), "wall_seconds": round(wall, 3),
               "realtime_factor": round(wall / max(seconds, 1e-9), 4), "workers": cfg.workers}
    settings = {**asdict(cfg), "summary": summary,
                "splits": {s: sum(1 for e in entries if e["split"] == s) for s in ("train", "val", "test")}}
    (out / "corpus.json").write_text(json.dumps(settings, indent=1))
    return summary
