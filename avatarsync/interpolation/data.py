"""Training data for the interpolator: latent caches of corpus clips and (pair, target) examples.

A latent cache holds, per clip, the codec latents of every aligned face crop
(the same crops the tokenizer sees) and the per-frame mouth boxes::

    CACHE/info.json          codec name, channels, grid, crop settings, clips per split
    CACHE/<clip_id>.npz      latents (N, C, h, w) float16, mouth_boxes (N, 4) int (crop pixels)

Examples: keyframes are the real frames nearest to the unit centres of the
clip's PhonemeTrack; every frame strictly between two adjacent keyframes is
one target, with ``tau = (j - i_A) / (i_B - i_A)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import CheckpointError, InputError
from .codec import LatentCodec
from .schedule import PhoneTable, keyframe_frames, keyframe_times

INFO_NAME = "info.json"


@dataclass
class InterpDataConfig:
    corpus: str = "runs/corpus"  # corpus folder (avatarsync synth-data --out)
    tokenizer: str = "runs/tokenizer/final"  # trained tokenizer folder, or space_to_depth:F (exact stand-in codec)
    latent_cache: str = ""  # cache folder; "" = CORPUS/latents/<codec name>-<crop size>
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int = 128  # must match the tokenizer's training crops
    align: Literal["none", "clip", "stable", "frame"] = "clip"
    landmark_layout: str = "procedural"
    face_scale: float = 1.0
    max_clips: int = 0  # per split; 0 = all
    max_gap_frames: int = 0  # skip keyframe pairs further apart than this (0 = keep all)
    encode_batch: int = 32
    encode_device: str = "cpu"

    def crop_config(self):
        """The tokenizer-side crop settings (``TokenizerDataConfig``) these fields describe."""
        from ..tokenizers.data import TokenizerDataConfig

        return TokenizerDataConfig(source="corpus", root=self.corpus, crop_size=self.crop_size, align=self.align,
                                   landmark_layout=self.landmark_layout, face_scale=self.face_scale,
                                   max_clips=self.max_clips, train_split=self.train_split, val_split=self.val_split)


def latent_cache_dir(cfg: InterpDataConfig, codec: LatentCodec) -> Path:
    return Path(cfg.latent_cache) if cfg.latent_cache else Path(cfg.corpus) / "latents" / f"{codec.name}-{cfg.crop_size}"


@torch.no_grad()
def encode_crops(codec: LatentCodec, crops: np.ndarray, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, C, h, w) float16 latents."""
    from ..tokenizers.data import to_tensor

    out = [codec.encode_latents(to_tensor(crops[i:i + batch_size]).to(device)).float().cpu().numpy()
           for i in range(0, len(crops), batch_size)]
    return np.concatenate(out).astype(np.float16)


def build_latent_cache(codec: LatentCodec, cfg: InterpDataConfig, splits: Iterable[str] = ("train", "val", "test"),
                       folder: str | Path | None = None, overwrite: bool = False, progress: bool = False) -> Path:
    """Encode every frame of every clip of ``splits``; resumable (finished clips are skipped)."""
    from ..tokenizers.data import prepare_clip, split_clips

    crop = cfg.crop_config()
    folder = Path(folder) if folder is not None else latent_cache_dir(cfg, codec)
    folder.mkdir(parents=True, exist_ok=True)
    per_split: dict[str, list[str]] = {}
    jobs = []
    for split in dict.fromkeys(splits):
        try:
            clips = split_clips(crop, split)
        except InputError:
            continue  # an empty split
        per_split[split] = [c.clip_id for c in clips]
        jobs += clips
    if not jobs:
        raise InputError(f"corpus {cfg.corpus} has no clips in splits {list(splits)}", "generate a corpus first")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="latent cache", unit="clip")
    shape = None
    for clip in jobs:
        target = folder / f"{clip.clip_id}.npz"
        if overwrite or not target.is_file():
            prep = prepare_clip(clip, crop, frames_per_clip=0)
            lat = encode_crops(codec, prep.crops, cfg.encode_batch, cfg.encode_device)
            tmp = folder / f".{clip.clip_id}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, latents=lat, mouth_boxes=prep.mouth_boxes.astype(np.int64))
            os.replace(tmp, target)
        if shape is None:
            with np.load(target) as z:
                shape = z["latents"].shape[1:]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    info = {"codec": codec.name, "channels": int(shape[0]), "grid": [int(shape[1]), int(shape[2])],
            "data": asdict(cfg), "splits": per_split}
    (folder / INFO_NAME).write_text(json.dumps(info, indent=1))
    return folder


class LatentCache:
    """Read a folder written by ``build_latent_cache``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INFO_NAME
        if not path.is_file():
            raise CheckpointError(f"{self.folder} is not a latent cache (no {INFO_NAME})",
                                  "build one with avatarsync.interpolation.data.build_latent_cache")
        self.info: dict = json.loads(path.read_text())

    @property
    def channels(self) -> int:
        return int(self.info["channels"])

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(x) for x in self.info["grid"])  # type: ignore[return-value]

    def clip_ids(self, split: str | None = None) -> list[str]:
        splits = self.info["splits"]
        return [c for ids in splits.values() for c in ids] if split is None else list(splits.get(split, []))

    def load(self, clip_id: str) -> dict[str, np.ndarray]:
        """``latents`` (N, C, h, w) float16 and ``mouth_boxes`` (N, 4)."""
        path = self.folder / f"{clip_id}.npz"
        if not path.is_file():
            raise CheckpointError(f"clip {clip_id!r} is not in the latent cache {self.folder}", "rebuild the cache")
        with np.load(path) as z:
            return {"latents": z["latents"], "mouth_boxes": z["mouth_boxes"]}


def clip_pairs(track, n_frames: int, fps: float, max_gap: int = 0) -> list[tuple[int, int]]:
    """Adjacent keyframe frame pairs (i_A, i_B) with at least one frame between them."""
    kf = keyframe_frames(keyframe_times(track), n_frames, fps)
    return [(int(a), int(b)) for a, b in zip(kf[:-1], kf[1:]) if b - a >= 2 and (max_gap <= 0 or b - a <= max_gap)]


class InterpExamples(Dataset):
    """One item per (clip, keyframe pair, in-between frame); latents held in memory (float16)."""

    def __init__(self, clips: list, latents: list[np.ndarray], max_phones: int, max_gap: int = 0) -> None:
        self.latents, self.max_phones, self.fps, self.phones = latents, max_phones, [], []
        rows = []
        for c, (clip, lat) in enumerate(zip(clips, latents)):
            track = clip.track()
            self.phones.append(PhoneTable.from_track(track))
            self.fps.append(float(clip.fps))
            for a, b in clip_pairs(track, len(lat), clip.fps, max_gap):
                rows += [(c, a, b, j) for j in range(a + 1, b)]
        self.rows = np.array(rows, dtype=np.int64).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c, a, b, j = (int(v) for v in self.rows[i])
        lat, fps = self.latents[c], self.fps[c]
        ids, spans = self.phones[c].window((a + 0.5) / fps, (b + 0.5) / fps, self.max_phones)
        f = lambda k: torch.from_numpy(lat[k].astype(np.float32))  # noqa: E731
        return {"lat_a": f(a), "lat_b": f(b), "target": f(j),
                "tau": torch.tensor((j - a) / (b - a), dtype=torch.float32),
                "interval": torch.tensor((b - a) / fps, dtype=torch.float32),
                "phone_ids": torch.from_numpy(ids), "phone_spans": torch.from_numpy(spans)}


def collate_examples(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
