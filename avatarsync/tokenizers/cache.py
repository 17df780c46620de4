"""Per-dataset token caches: encode every frame once, so language-model training never runs the encoder.

Layout (one folder per tokenizer, named by its fingerprint)::

    CORPUS/tokens/<fingerprint>/info.json       tokenizer fingerprint, codebook size, grid, crop settings, clips per split
    CORPUS/tokens/<fingerprint>/<clip_id>.npz   tokens (N, h, w) uint16/int32, matrices (N, 2, 3) frame -> crop,
                                                mouth_boxes (N, 4) in crop pixels

Building is resumable: clips already written are skipped unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from .checkpoint import tokenizer_fingerprint, unwrap_tokenizer
from .data import TokenizerDataConfig, prepare_clip, split_clips, to_tensor

INFO_NAME = "info.json"


def token_cache_dir(corpus_root: str | Path, tokenizer: torch.nn.Module) -> Path:
    return Path(corpus_root) / "tokens" / tokenizer_fingerprint(tokenizer)


def encoder_reference(tokenizer: torch.nn.Module, crops: np.ndarray, device: str | torch.device = "cpu",
                      reference: np.ndarray | None = None) -> torch.Tensor | None:
    """The reference a ``reference_encoder`` tokenizer (unwrapped) encodes against: ``reference`` (a uint8
    crop), by default the first of ``crops`` (a clip's first frame, the portrait's role); None for others."""
    if not getattr(getattr(tokenizer, "config", None), "reference_encoder", False):
        return None
    ref = crops[0] if reference is None else reference
    return to_tensor(np.asarray(ref)[None]).to(device)


@torch.no_grad()
def encode_frames(tokenizer: torch.nn.Module, crops: np.ndarray, batch_size: int = 32,
                  device: str | torch.device = "cpu", reference: np.ndarray | None = None) -> np.ndarray:
    """(N, S, S, 3) uint8 crops of one clip -> (N, h, w) int64 token ids (against the clip's first frame,
    or ``reference``, when the tokenizer encodes against one)."""
    tok = unwrap_tokenizer(tokenizer)
    ref = encoder_reference(tok, crops, device, reference) if len(crops) else None
    out = []
    for i in range(0, len(crops), batch_size):
        x = to_tensor(crops[i : i + batch_size]).to(device)
        out.append(tok.encode(x, reference=ref).cpu().numpy())
    h, w = tok.grid_size(crops.shape[1:3]) if len(crops) else (0, 0)
    return np.concatenate(out) if out else np.zeros((0, h, w), np.int64)


def build_token_cache(tokenizer: torch.nn.Module, data: TokenizerDataConfig, out_dir: str | Path | None = None,
                      splits: Iterable[str] = ("train", "val", "test"), batch_size: int = 32,
                      device: str | torch.device = "cpu", overwrite: bool = False, progress: bool = False) -> Path:
    """Encode every frame of every clip of ``splits`` of the corpus at ``data.root``; returns the cache folder."""
    tok = unwrap_tokenizer(tokenizer).to(device).eval()
    if data.source != "corpus" or not data.root:
        raise InputError("token caches are built from a corpus folder", "set data.source: corpus and data.root")
    folder = Path(out_dir) if out_dir is not None else token_cache_dir(data.root, tok)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tok.codebook_size <= 2 ** 16 else np.int32
    per_split: dict[str, list[str]] = {}
    jobs = []
    for split in splits:
        try:
            clips = split_clips(data, split)
        except InputError:
            continue  # an empty split
        per_split[split] = [c.clip_id for c in clips]
        jobs += clips
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), desc="token cache", unit="clip")
    for clip in jobs:
        target = folder / f"{clip.clip_id}.npz"
        if overwrite or not target.is_file():
            prep = prepare_clip(clip, data, frames_per_clip=0)
            tokens = encode_frames(tok, prep.crops, batch_size, device).astype(dtype)
            tmp = folder / f".{clip.clip_id}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, tokens=tokens, matrices=prep.matrices.astype(np.float32), mouth_boxes=prep.mouth_boxes)
            os.replace(tmp, target)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    info = {"tokenizer": tokenizer_fingerprint(tok), "codebook_size": tok.codebook_size, "factors": tok.factors,
            "grid": list(tok.grid_size(data.crop_size)), "dtype": np.dtype(dtype).name,
            "data": asdict(data), "splits": per_split}
    (folder / INFO_NAME).write_text(json.dumps(info, indent=1))
    return folder


class TokenCache:
    """Read a cache folder written by ``build_token_cache``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INFO_NAME
        if not path.is_file():
            raise CheckpointError(f"{self.folder} is not a token cache (no {INFO_NAME})",
                                  "build one with avatarsync.tokenizers.build_token_cache")
        self.info: dict = json.loads(path.read_text())

    @property
    def codebook_size(self) -> int:
        return int(self.info["codebook_size"])

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.info["grid"]
        return int(h), int(w)

    def clip_ids(self, split: str | None = None) -> list[str]:
        splits = self.info["splits"]
        if split is None:
            return [c for ids in splits.values() for c in ids]
        return list(splits.get(split, []))

    def __contains__(self, clip_id: str) -> bool:
        return (self.folder / f"{clip_id}.npz").is_file()

    def load(self, clip_id: str) -> dict[str, np.ndarray]:
        """``tokens`` (N, h, w) int64, ``matrices`` (N, 2, 3), ``mouth_boxes`` (N, 4)."""
        path = self.folder / f"{clip_id}.npz"
        if not path.is_file():
            raise CheckpointError(f"clip {clip_id!r} is not in the token cache {self.folder}", "rebuild the cache")
        with np.load(path) as z:
            return {"tokens": z["tokens"].astype(np.int64), "matrices": z["matrices"], "mouth_boxes": z["mouth_boxes"]}

    def tokens(self, clip_id: str) -> np.ndarray:
        return self.load(clip_id)["tokens"]

    def check(self, tokenizer: torch.nn.Module) -> None:
        """Raise ``CheckpointError`` unless the cache was made by exactly this tokenizer."""
        fp = tokenizer_fingerprint(tokenizer)
        if fp != self.info.get("tokenizer"):
            raise CheckpointError(f"token cache {self.folder} was built by tokenizer {self.info.get('tokenizer')}, "
                                  f"not {fp}", "rebuild the cache with the current tokenizer")
