"""Disjoint train/val/test splits of identities and sentences."""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into three disjoint parts.

    Every part gets at least one element when ``n >= 3`` and its fraction is positive.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {fractions} must sum to 1")
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = max(1 if fractions[1] > 0 and n >= 3 else 0, int(round(n * fractions[1])))
    n_test = max(1 if fractions[2] > 0 and n >= 3 else 0, int(round(n * fractions[2])))
    n_train = n - n_val - n_test
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def clip_splits(n_clips: int, fractions: tuple[float, float, float]) -> list[str]:
    """Split name of each clip index: counts follow the fractions, val and test non-empty when possible."""
    counts = split_indices(n_clips, fractions, seed=0)
    names = ["train"] * len(counts["train"]) + ["val"] * len(counts["val"]) + ["test"] * len(counts["test"])
    return names
