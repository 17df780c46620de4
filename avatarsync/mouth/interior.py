"""The inner mouth as real footage shows it, for openings a portrait does not have.

``build_interior(corpus)`` samples the lip opening of every training frame of a prepared corpus in
the mouth's (v, u) grid (``geometry.opening_grid``), groups the frames by lip gap, and keeps, per
group, the real frame closest to the group's mean (a real mouth, sharp, not an average). Each entry
also keeps the mean colour of its lips, so a portrait's own lip colour can relight it
(``Interior.texture``). Saved as ``interior.safetensors`` in the bundle's ``mouth/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .geometry import LOWER_INNER, LOWER_OUTER, UPPER_INNER, UPPER_OUTER, opening_grid
from .shape import mouth_shape

GRID = (32, 96)  # (v, u) samples of the opening
GAP_EDGES = (0.02, 0.04, 0.06, 0.08, 0.10, 0.125, 0.16, 0.25)


def lip_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Mean RGB (float) of the lips: the pixels on the segments between the outer and inner contours."""
    samples = []
    for outer, inner in ((UPPER_OUTER, UPPER_INNER), (LOWER_OUTER, LOWER_INNER)):
        a, b = points[list(outer)][1:-1], points[list(inner)][1:-1]
        for t in (0.35, 0.5, 0.65):
            samples.append(a + t * (b - a))
    xy = np.concatenate(samples)
    h, w = image.shape[:2]
    x = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return image[y, x].astype(np.float64).mean(0)


def sample_opening(image: np.ndarray, points: np.ndarray, grid: tuple[int, int] = GRID,
                   inset: float = 0.1) -> np.ndarray:
    """``(v, u, 3)`` uint8: the image's lip opening resampled on the mouth grid (``inset`` of the
    opening's height left out at each lip, where the landmarks put some lip inside)."""
    import cv2

    pos = opening_grid(points, *grid, inset=inset).astype(np.float32)
    return cv2.remap(image, pos[..., 0], pos[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Interior:
    gaps: np.ndarray  # (K,) lip gap of each entry (fraction of the eye distance)
    textures: np.ndarray  # (K, v, u, 3) uint8
    lips: np.ndarray  # (K, 3) mean lip colour of each entry's frame

    def texture(self, gap: float, lip_rgb: np.ndarray | None = None) -> np.ndarray:
        """Float (v, u, 3) texture for an opening of ``gap``, relit to lips of colour ``lip_rgb``."""
        k = int(np.argmin(np.abs(self.gaps - gap)))
        tex = self.textures[k].astype(np.float32)
        if lip_rgb is not None:
            gain = np.clip(np.asarray(lip_rgb, np.float32) / np.maximum(self.lips[k].astype(np.float32), 1.0), 0.4, 2.5)
            tex = tex * gain
        return np.clip(tex, 0, 255)

    def save(self, path: str | Path) -> None:
        import torch
        from safetensors.torch import save_file

        save_file({"gaps": torch.from_numpy(self.gaps.astype(np.float32)),
                   "textures": torch.from_numpy(np.ascontiguousarray(self.textures)),
                   "lips": torch.from_numpy(self.lips.astype(np.float32))}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Interior":
        from ..weights import read_state_dict

        t = {k: v.numpy() for k, v in read_state_dict(path, "mouth interior atlas", "build it with `avatarsync "
                                                       "train mouth` (it writes interior.safetensors)").items()}
        return cls(gaps=t["gaps"], textures=t["textures"], lips=t["lips"])


def build_interior(roots: list[str], split: str = "train", frames_per_clip: int = 12, seed: int = 0) -> Interior:
    """The interior atlas of prepared corpora's ``split`` (``frames_per_clip`` frames of each clip,
    the most open ones first)."""
    from ..data.corpus import Corpus

    rng = np.random.default_rng(seed)
    by_bin: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = {}
    for root in roots:
        for clip in Corpus(root).clips(split):
            truth = clip.truth()
            lm = truth.get("landmarks")
            if lm is None or lm.ndim != 3 or lm.shape[1] < 468:
                raise InputError(f"{root} has no face-mesh landmarks", "use a corpus made by `avatarsync prepare`")
            gaps = mouth_shape(lm)[:, 0]
            ok = np.flatnonzero(np.isfinite(gaps) & (gaps >= GAP_EDGES[0]))
            if not len(ok):
                continue
            frames = clip.frames()
            pick = rng.choice(ok, size=min(frames_per_clip, len(ok)), replace=False)
            for t in pick:
                b = int(np.searchsorted(GAP_EDGES, gaps[t], side="right") - 1)
                if 0 <= b < len(GAP_EDGES) - 1:
                    by_bin.setdefault(b, []).append((sample_opening(frames[t], lm[t]),
                                                     lip_colour(frames[t], lm[t]), float(gaps[t])))
    if not by_bin:
        raise InputError("no open mouths found in the corpus", "prepare footage of someone speaking")
    gaps, textures, lips = [], [], []
    for b in sorted(by_bin):
        tex = np.stack([e[0] for e in by_bin[b]]).astype(np.float32)
        mean = tex.mean(0)
        k = int(np.argmin(((tex - mean) ** 2).mean(axis=(1, 2, 3))))
        gaps.append(by_bin[b][k][2])
        textures.append(tex[k].astype(np.uint8))
        lips.append(by_bin[b][k][1])
    return Interior(np.array(gaps, np.float32), np.stack(textures), np.array(lips, np.float32))
