"""Dubbing: a real video re-spoken, its own head motion, blinks and background kept.

The source frames are played forward then backward (a ping-pong, so there is no jump) until the new
speech ends; every frame's face is tracked (``faces.tracking.track_faces``) and only its mouth is
moved to the new speech's shape (``warp.MouthWarp``, set up on that frame's own landmarks). A frame
whose face was not found is left as it is.

``mouth="first-frame"`` moves a different mouth: the first tracked frame's, carried into every frame
(aligned on the lower face by a similarity transform, feathered in over the lips and chin) before it
is moved. The clip's own mouth then never reaches the output: what a source video was saying does not
show through, and re-speaking a clip with its own speech becomes a reconstruction test without
leakage (``avatarsync evaluate --source video --dub-mouth first-frame``).
"""

from __future__ import annotations

import numpy as np

from ..errors import FaceError, InputError
from ..evaluate.metrics import LIPS
from ..options import DUB_MOUTHS
from .geometry import FaceFrame
from .interior import Interior
from .shape import mouth_shape
from .warp import ANCHORS, JAW_POINTS, MouthWarp

_CARRIED = sorted(set(LIPS) | {i for i, _ in JAW_POINTS})  # what the carried-in mouth region covers


def pingpong(n_source: int, n_out: int) -> np.ndarray:
    """Indices into ``n_source`` frames for ``n_out`` output frames: 0 .. n-1, n-2 .. 1, 0 .. ."""
    if n_source < 1:
        raise FaceError("the video has no frames", "use a video with a face in it")
    if n_source == 1:
        return np.zeros(n_out, dtype=int)
    period = 2 * n_source - 2
    k = np.arange(n_out) % period
    return np.where(k < n_source, k, period - k)


def carry_mouth(src: np.ndarray, src_points: np.ndarray, dst: np.ndarray, dst_points: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``dst`` with ``src``'s lips and chin put in (aligned on the lower face, feathered), and the
    landmarks of the result: ``dst_points`` with the carried-in points replaced by ``src``'s, moved."""
    import cv2

    stable = sorted(set(ANCHORS) | set(_CARRIED))
    m, _ = cv2.estimateAffinePartial2D(src_points[stable].astype(np.float32), dst_points[stable].astype(np.float32))
    if m is None:
        return dst, dst_points
    h, w = dst.shape[:2]
    moved_src = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    moved_points = src_points @ m[:, :2].T + m[:, 2]
    eye = FaceFrame.of(dst_points).eye_distance
    hull = cv2.convexHull(np.concatenate([moved_points[_CARRIED], dst_points[_CARRIED]]).astype(np.float32))
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, hull.astype(np.int32), 1.0)
    grow = max(1, int(round(0.12 * eye)))
    mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.06 * eye, 1.0))[..., None]
    out = (mask * moved_src + (1.0 - mask) * dst).round().clip(0, 255).astype(np.uint8)
    points = dst_points.copy()
    points[_CARRIED] = moved_points[_CARRIED]
    return out, points


def dub_frames(frames: np.ndarray, points: np.ndarray, detected: np.ndarray, shapes: np.ndarray,
               interior: Interior | None = None, progress: bool = False, mouth: str = "own") -> np.ndarray:
    """``(N, H, W, 3)`` frames with their mouths moved to ``shapes (N, 2)`` [gap, width change from
    the speaker's median width]; ``points (N, 478, 2)`` and ``detected (N,)`` from the face tracker.
    ``mouth``: "own" (each frame's own mouth is moved) or "first-frame" (the first tracked frame's
    mouth, carried into each frame, is moved: see the module's doc)."""
    if mouth not in DUB_MOUTHS:
        raise InputError(f"unknown dub mouth {mouth!r}", f"use one of {', '.join(DUB_MOUTHS)}")
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    if not len(frames) == len(points) == len(detected) == len(shapes):
        raise ValueError("frames, points, detected and shapes must have one entry per frame")
    ok = np.asarray(detected, bool) & np.isfinite(points).all(axis=(1, 2))
    if not ok.any():
        raise FaceError("no face was found in the video", "use a video where one face is visible")
    widths = mouth_shape(points[ok])[:, 1]
    median_width = float(np.median(widths))
    out = frames.copy()
    ref = int(np.flatnonzero(ok)[0])
    with threadpool_limits(limits=1, user_api="blas"):
        for t in tqdm(range(len(frames)), desc="dub", unit="frame", disable=not progress):
            if not ok[t]:
                continue
            image, pts = frames[t], points[t]
            if mouth == "first-frame" and t != ref:
                image, pts = carry_mouth(frames[ref], points[ref], image, pts)
            warp = MouthWarp(image, pts, interior)
            own_width_change = float(warp.width0) - median_width
            out[t] = warp.render(np.array([shapes[t, 0], shapes[t, 1] - own_width_change]))
    return out
