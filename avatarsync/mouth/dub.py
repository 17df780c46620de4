"""Dubbing: a real video re-spoken, its own head motion, blinks and background kept.

The source frames are played forward then backward (a ping-pong, so there is no jump) until the new
speech ends; every frame's face is tracked (``faces.tracking.track_faces``) and only its mouth is
moved to the new speech's shape (``warp.MouthWarp``, set up on that frame's own landmarks). A frame
whose face was not found is left as it is.
"""

from __future__ import annotations

import numpy as np

from ..errors import FaceError
from .interior import Interior
from .shape import mouth_shape
from .warp import MouthWarp


def pingpong(n_source: int, n_out: int) -> np.ndarray:
    """Indices into ``n_source`` frames for ``n_out`` output frames: 0 .. n-1, n-2 .. 1, 0 .. ."""
    if n_source < 1:
        raise FaceError("the video has no frames", "use a video with a face in it")
    if n_source == 1:
        return np.zeros(n_out, dtype=int)
    period = 2 * n_source - 2
    k = np.arange(n_out) % period
    return np.where(k < n_source, k, period - k)


def dub_frames(frames: np.ndarray, points: np.ndarray, detected: np.ndarray, shapes: np.ndarray,
               interior: Interior | None = None, progress: bool = False) -> np.ndarray:
    """``(N, H, W, 3)`` frames with their mouths moved to ``shapes (N, 2)`` [gap, width change from
    the speaker's median width]; ``points (N, 478, 2)`` and ``detected (N,)`` from the face tracker."""
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
    with threadpool_limits(limits=1, user_api="blas"):
        for t in tqdm(range(len(frames)), desc="dub", unit="frame", disable=not progress):
            if not ok[t]:
                continue
            warp = MouthWarp(frames[t], points[t], interior)
            own_width_change = float(warp.width0) - median_width
            out[t] = warp.render(np.array([shapes[t, 0], shapes[t, 1] - own_width_change]))
    return out
