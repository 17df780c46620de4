"""Faces over a video: per-frame mediapipe landmarks, gaps filled, smoothed over time; shot cuts.

``track_faces(frames)`` is the one way landmarks are taken from video in this project:
``avatarsync prepare`` stores its result and ``avatarsync evaluate`` applies it to generated
frames, so real and generated mouths are measured alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import MediaPipeDetector

SMOOTH_WINDOW = 5  # frames of the Savitzky-Golay filter (order 2: keeps lip peaks)
MAX_FILL = 3  # missed frames bridged by interpolation; a longer miss breaks the track


@dataclass
class FaceTrack:
    """Landmarks of the largest face in every frame of a video."""

    points: np.ndarray  # (N, K, 2) float32 image pixels; NaN where no face (after filling short gaps)
    detected: np.ndarray  # (N,) bool: a face was detected in that frame (not filled in)
    faces: np.ndarray  # (N,) int: how many faces were detected
    rival: np.ndarray  # (N,) float: area of the second-largest face over the largest's (0 when alone)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: frames with landmarks, detected or filled in."""
        return np.isfinite(self.points[:, 0, 0])

    def __len__(self) -> int:
        return len(self.points)


def track_faces(frames: np.ndarray, max_faces: int = 2, min_confidence: float = 0.5,
                smooth: bool = True) -> FaceTrack:
    """Track the largest face through ``frames`` (N, H, W, 3) uint8 RGB."""
    det = MediaPipeDetector(max_faces=max_faces, min_confidence=min_confidence, video=True)
    n = len(frames)
    raw: list[np.ndarray | None] = []
    faces = np.zeros(n, np.int64)
    rival = np.zeros(n, np.float64)
    try:
        for i, frame in enumerate(frames):
            found = sorted(det.detect(frame), key=lambda f: f.area, reverse=True)
            faces[i] = len(found)
            if len(found) > 1 and found[0].area > 0:
                rival[i] = found[1].area / found[0].area
            raw.append(found[0].points if found else None)
    finally:
        det.close()
    k = next((len(p) for p in raw if p is not None), 478)
    points = np.full((n, k, 2), np.nan, np.float64)
    for i, p in enumerate(raw):
        if p is not None:
            points[i] = p[:k]
    detected = np.isfinite(points[:, 0, 0])
    points = fill_gaps(points, MAX_FILL)
    if smooth:
        points = smooth_points(points)
    return FaceTrack(points.astype(np.float32), detected, faces, rival)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fill_gaps(points: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate runs of at most ``max_gap`` NaN frames between two found frames."""
    out = points.copy()
    missing = ~np.isfinite(points[:, 0, 0])
    for a, b in _runs(missing):
        if a == 0 or b == len(points) or b - a > max_gap:
            continue
        w = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
        out[a:b] = (1 - w)[:, None, None] * points[a - 1] + w[:, None, None] * points[b]
    return out


def smooth_points(points: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Savitzky-Golay (order 2) over time inside each run of frames with landmarks."""
    from scipy.signal import savgol_filter

    out = points.copy()
    for a, b in _runs(np.isfinite(points[:, 0, 0])):
        if b - a >= window:
            out[a:b] = savgol_filter(points[a:b], window, 2, axis=0, mode="interp")
    return out


def shot_cuts(frames: np.ndarray, threshold: float = 40.0) -> list[int]:
    """Frame indices ``i`` where a new shot starts (a cut between ``i - 1`` and ``i``).

    A cut is a jump in the mean absolute difference of 32x32 grey thumbnails above ``threshold``
    (0..255) and above 5x the clip's median frame-to-frame change; speech and head motion stay far below."""
    import cv2

    if len(frames) < 2:
        return []
    thumbs = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
                       for f in frames]).astype(np.float32)
    diff = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))
    bar = max(threshold, 5.0 * float(np.median(diff)))
    return [int(i) + 1 for i in np.flatnonzero(diff > bar)]
