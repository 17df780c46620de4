"""Keyframe training data: the token cache and the datasets read from it.

A keyframe is the frame at the centre of a unit (``keyframe_indices``). The
token cache holds, per corpus clip, the tokenizer codes of the reference
frame and of every keyframe, plus their pixels (uint8) for the pixel losses
and metrics::

    CACHE/index.json           tokenizer facts + one entry per clip (split, units, durations, key frames)
    CACHE/clips/<clip_id>.npz  ref_codes [h, w], key_codes [N, h, w], ref_pixels [H, W, 3], key_pixels [N, H, W, 3]

Build it once with ``build_token_cache`` (FKGTask does so when it is missing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError

CACHE_VERSION = 1


@dataclass
class FKGExample:
    """One utterance (or a chunk of one): what the keyframe model trains on."""

    ref_codes: np.ndarray  # [h, w]
    key_codes: np.ndarray  # [N, h, w]
    units: list[str]
    visemes: list[str]
    durations: list[float]  # seconds
    clip_id: str = ""
    key_frames: list[int] = field(default_factory=list)  # frame index of each keyframe in its clip
    ref_pixels: np.ndarray | None = None  # [H, W, 3] uint8
    key_pixels: np.ndarray | None = None  # [N, H, W, 3] uint8
    key_boxes: np.ndarray | None = None  # [N, 4] mouth box (x0, y0, x1, y1) in crop pixels
    key_landmarks: np.ndarray | None = None  # [N, K, 2] renderer landmarks in crop pixels (corpus only)
    # (unit, viseme) just before / after this example in its utterance (None at the utterance's ends)
    before: tuple[str, str] | None = None
    after: tuple[str, str] | None = None
    key_openness: np.ndarray | None = None  # [N] truth mouth openness at each keyframe (corpus only)

    def __len__(self) -> int:
        return len(self.units)

    def chunk(self, start: int, end: int) -> "FKGExample":
        return FKGExample(self.ref_codes, self.key_codes[start:end], self.units[start:end],
                          self.visemes[start:end], self.durations[start:end], self.clip_id,
                          self.key_frames[start:end], self.ref_pixels,
                          None if self.key_pixels is None else self.key_pixels[start:end],
                          None if self.key_boxes is None else self.key_boxes[start:end],
                          None if self.key_landmarks is None else self.key_landmarks[start:end],
                          (self.units[start - 1], self.visemes[start - 1]) if start > 0 else self.before,
                          (self.units[end], self.visemes[end]) if end < len(self) else self.after,
                          None if self.key_openness is None else self.key_openness[start:end])


def chunk_bounds(n: int, max_units: int) -> list[tuple[int, int]]:
    """Split ``n`` units into nearly equal chunks of at most ``max_units`` (0 = no split)."""
    if max_units <= 0 or n <= max_units:
        return [(0, n)]
    parts = math.ceil(n / max_units)
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def keyframe_indices(units: Sequence, fps: float, n_frames: int) -> list[int]:
    """Frame at the temporal centre of each unit, clipped to the clip."""
    return [min(n_frames - 1, max(0, int(math.floor(0.5 * (u.start + u.end) * fps)))) for u in units]


class ExampleDataset(Dataset):
    """In-memory examples, split into chunks of at most ``max_units`` units."""

    def __init__(self, examples: Sequence[FKGExample], max_units: int = 0) -> None:
        self.examples = list(examples)
        self.items = [(i, a, b) for i, ex in enumerate(self.examples) for a, b in chunk_bounds(len(ex), max_units)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> FKGExample:
        i, a, b = self.items[idx]
        ex = self.examples[i]
        return ex if (a, b) == (0, len(ex)) else ex.chunk(a, b)

    def mouth_truth(self, clip_id: str) -> dict[str, np.ndarray] | None:
        """In-memory examples carry no per-frame truth."""
        return None


# -- token cache ------------------------------------------------------------------------------
def crop_config(corpus_root: str, tokenizer_path: str = "", align: str = "", crop_size: int = 0,
                landmark_layout: str = ""):
    """How frames are cropped before tokenization: the tokenizer's own training data settings
    (its folder's ``config.yaml`` or the run's ``task.yaml`` ``data:`` section) unless overridden."""
    from ..config import from_dict, read_yaml
    from ..tokenizers.data import TokenizerDataConfig

    cfg = TokenizerDataConfig()
    if tokenizer_path:
        folder = Path(tokenizer_path)
        for candidate in (folder / "config.yaml", folder.parent / "task.yaml"):
            if candidate.is_file():
                data = read_yaml(candidate).get("data")
                if isinstance(data, dict):
                    known = {k: v for k, v in data.items() if k in TokenizerDataConfig.__dataclass_fields__}
                    cfg = from_dict(TokenizerDataConfig, known)
                    break
    cfg.source, cfg.root = "corpus", str(corpus_root)
    if align:
        cfg.align = align
    if crop_size:
        cfg.crop_size = crop_size
    if landmark_layout:
        cfg.landmark_layout = landmark_layout
    return cfg


def encoder_reference(tokenizer: torch.nn.Module, crops: np.ndarray, device: str | torch.device = "cpu",
                      reference: np.ndarray | None = None) -> torch.Tensor | None:
    """The reference a ``reference_encoder`` tokenizer encodes against: ``reference`` (a uint8 crop), by
    default the first of ``crops`` (a clip's first frame, the portrait's role); None for other tokenizers."""
    from ..tokenizers.data import to_tensor

    if not getattr(getattr(tokenizer, "config", None), "reference_encoder", False):
        return None
    ref = crops[0] if reference is None else reference
    return to_tensor(np.asarray(ref)[None]).to(device)


@torch.no_grad()
def encode_crops(tokenizer: Any, crops: np.ndarray, device: torch.device | str = "cpu",
                 batch_size: int = 32) -> np.ndarray:
    """uint8 crops ``[T, S, S, 3]`` of one clip -> codes ``[T, h, w]`` (int32); a tokenizer that encodes
    against a reference gets the first crop (the clip's reference frame)."""
    from ..tokenizers.data import to_tensor

    ref = encoder_reference(tokenizer, crops, device)
    kw = {} if ref is None else {"reference": ref}
    out = []
    for s in range(0, len(crops), batch_size):
        out.append(tokenizer.encode(to_tensor(crops[s:s + batch_size]).to(device), **kw).cpu().numpy().astype(np.int32))
    return np.concatenate(out)


def build_token_cache(corpus_root: str | Path, tokenizer: Any, cache_dir: str | Path,
                      device: torch.device | str = "cpu", batch_size: int = 32, tokenizer_path: str = "",
                      crop: Any = None, progress: bool = False) -> Path:
    """Crop every clip the way the tokenizer was trained (tokenizers.data.prepare_clip), then store the
    codes and crops of the reference (first) frame and of the keyframes, plus what the mouth-state
    metric needs: each frame's mouth descriptor, viseme and openness."""
    from ..data.corpus import Corpus
    from ..tokenizers import token_fingerprint
    from ..tokenizers.data import clip_layout, prepare_clip
    from .metrics import mouth_descriptors

    crop = crop or crop_config(str(corpus_root), tokenizer_path)
    corpus = Corpus(corpus_root)
    cache = Path(cache_dir)
    (cache / "clips").mkdir(parents=True, exist_ok=True)
    entries, grid = [], None
    clips = corpus.clips()
    if progress:
        from tqdm.auto import tqdm

        clips = tqdm(clips, desc="fkg token cache", unit="clip")
    for clip in clips:
        units = [u for u in clip.track().units if u.end > u.start]
        if not units:
            continue
        prep = prepare_clip(clip, crop, frames_per_clip=0)
        key = keyframe_indices(units, clip.fps, len(prep.crops))
        chosen = prep.crops[[0, *key]]
        codes = encode_crops(tokenizer, chosen, device, batch_size)
        grid = list(codes.shape[1:])
        truth = clip.truth()
        extra = {}
        if "landmarks" in truth and clip_layout(clip, crop) == "procedural":
            from ..faces.align import transform_points  # the pixel-openness metric reads the renderer's points

            extra["key_landmarks"] = np.stack([transform_points(truth["landmarks"][k], prep.matrices[k])
                                               for k in key]).astype(np.float32)
        if "openness" in truth:  # drawn truth, or a real corpus's measured lip gap (CorpusClip.truth)
            extra["openness"] = np.asarray(truth["openness"], dtype=np.float32)
        if "viseme" in truth and "openness" in truth:
            extra |= {"mouth_bank": mouth_descriptors(prep.crops, prep.mouth_boxes).astype(np.float16),
                     "viseme": np.asarray(truth["viseme"]).astype(str)}
        np.savez_compressed(cache / "clips" / f"{clip.clip_id}.npz", ref_codes=codes[0], key_codes=codes[1:],
                            ref_pixels=chosen[0], key_pixels=chosen[1:], key_boxes=prep.mouth_boxes[key], **extra)
        entries.append({"clip_id": clip.clip_id, "split": clip.split, "identity": clip.identity,
                        "units": [u.symbol for u in units], "visemes": [u.viseme for u in units],
                        "durations": [u.end - u.start for u in units], "key_frames": key})
    if not entries:
        raise InputError(f"corpus {corpus_root} has no clip with units", "generate one with avatarsync synth-data")
    index = {"version": CACHE_VERSION, "codebook_size": int(tokenizer.codebook_size), "grid": grid,
             "corpus": str(Path(corpus_root).resolve()), "tokenizer": tokenizer_path, "reference": "first",
             "token_fingerprint": token_fingerprint(tokenizer) if hasattr(tokenizer, "encoder") else None,
             "crop": {"align": crop.align, "crop_size": crop.crop_size, "landmark_layout": crop.landmark_layout,
                      "face_scale": crop.face_scale},
             "clips": entries}
    (cache / "index.json").write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
    return cache


def read_cache_index(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / "index.json"
    if not path.is_file():
        raise InputError(f"no token cache at {cache_dir} (index.json missing)",
                         "set fkg data.tokenizer and data.corpus so the cache can be built, or build it with "
                         "avatarsync.fkg.data.build_token_cache")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("version") != CACHE_VERSION:
        raise InputError(f"token cache {cache_dir} has version {index.get('version')}, expected {CACHE_VERSION}",
                         "delete it so it is rebuilt")
    return index


class CacheDataset(Dataset):
    """Examples of one split of a token cache, chunked to ``max_units`` units; loads lazily."""

    def __init__(self, cache_dir: str | Path, split: str, max_units: int = 0, pixels: bool = True) -> None:
        self.root = Path(cache_dir)
        self.index = read_cache_index(cache_dir)
        self.pixels = pixels
        self.clips = [c for c in self.index["clips"] if c["split"] == split]
        self.items = [(i, a, b) for i, c in enumerate(self.clips) for a, b in chunk_bounds(len(c["units"]), max_units)]

    def __len__(self) -> int:
        return len(self.items)

    def example(self, clip_idx: int) -> FKGExample:
        c = self.clips[clip_idx]
        with np.load(self.root / "clips" / f"{c['clip_id']}.npz") as z:
            return FKGExample(z["ref_codes"], z["key_codes"], list(c["units"]), list(c["visemes"]),
                              [float(d) for d in c["durations"]], c["clip_id"], list(c["key_frames"]),
                              z["ref_pixels"] if self.pixels else None, z["key_pixels"] if self.pixels else None,
                              z["key_boxes"], z["key_landmarks"] if "key_landmarks" in z.files else None,
                              key_openness=z["openness"][c["key_frames"]] if "openness" in z.files else None)

    def mouth_truth(self, clip_id: str) -> dict[str, np.ndarray] | None:
        """Per-frame mouth descriptors, visemes and openness of a clip (None when the corpus had none)."""
        path = self.root / "clips" / f"{clip_id}.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            if "mouth_bank" not in z.files:
                return None
            return {"bank": z["mouth_bank"].astype(np.float32), "viseme": z["viseme"], "openness": z["openness"]}

    def __getitem__(self, idx: int) -> FKGExample:
        i, a, b = self.items[idx]
        ex = self.example(i)
        return ex if (a, b) == (0, len(ex)) else ex.chunk(a, b)
