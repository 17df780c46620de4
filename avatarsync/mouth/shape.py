"""Mouth-shape parameters from mediapipe face-mesh landmarks (478 points, any pixel frame).

Both are fractions of the outer eye-corner distance, so they do not depend on the image's size:
``gap`` is the inner-lip opening ``|p13 - p14|`` (``evaluate.metrics.lip_gap``, the one definition),
``width`` the mouth-corner distance ``|p61 - p291|``.
"""

from __future__ import annotations

import numpy as np

from ..evaluate.metrics import EYE_OUTER_LEFT, EYE_OUTER_RIGHT, lip_gap

MOUTH_CORNERS = (61, 291)
SHAPE_PARAMS = ("gap", "width")


def eye_distance(points: np.ndarray) -> np.ndarray | float:
    """Outer eye-corner distance of ``(478, 2)`` or ``(N, 478, 2)`` landmarks."""
    p = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(p[..., EYE_OUTER_RIGHT, :] - p[..., EYE_OUTER_LEFT, :], axis=-1)


def mouth_width(points: np.ndarray) -> np.ndarray | float:
    """Mouth-corner distance over the eye-corner distance."""
    p = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(p[..., MOUTH_CORNERS[1], :] - p[..., MOUTH_CORNERS[0], :], axis=-1) / eye_distance(p)


def mouth_shape(points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` [gap, width] of ``(N, 478, 2)`` landmarks (NaN rows stay NaN)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] < 468 or p.shape[2] != 2:
        raise ValueError(f"mouth_shape needs (N, 478, 2) face-mesh landmarks, got {p.shape}")
    return np.stack([lip_gap(p), mouth_width(p)], axis=1)


def shape_targets(points: np.ndarray) -> np.ndarray:
    """What ``MouthMotion`` learns for one clip: ``(N, 2)`` [gap, width - the clip's median width]
    (the width as a change, since a speaker's resting width is their own)."""
    s = mouth_shape(points)
    s[:, 1] -= np.nanmedian(s[:, 1])
    return s
