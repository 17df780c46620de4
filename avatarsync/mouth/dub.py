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


class VideoDub:
    """One tracked source video, ready to dub frame by frame: ``render(t, shape)`` is source frame ``t``
    with its mouth (or, with ``mouth="first-frame"``, the first tracked frame's) moved to ``shape``
    [gap, width change from the speaker's median width]. Frames without a face come back unchanged.
    ``frames (N, H, W, 3)``, ``points (N, 478, 2)`` and ``detected (N,)`` from the face tracker."""

    def __init__(self, frames: np.ndarray, points: np.ndarray, detected: np.ndarray,
                 interior: Interior | None = None, mouth: str = "own") -> None:
        if mouth not in DUB_MOUTHS:
            raise InputError(f"unknown dub mouth {mouth!r}", f"use one of {', '.join(DUB_MOUTHS)}")
        if not len(frames) == len(points) == len(detected):
            raise ValueError("frames, points and detected must have one entry per frame")
        self.frames, self.points, self.interior, self.mouth = frames, points, interior, mouth
        self.ok = np.asarray(detected, bool) & np.isfinite(points).all(axis=(1, 2))
        if not self.ok.any():
            raise FaceError("no face was found in the video", "use a video where one face is visible")
        self.median_width = float(np.median(mouth_shape(points[self.ok])[:, 1]))
        self.ref = int(np.flatnonzero(self.ok)[0])

    def __len__(self) -> int:
        return len(self.frames)

    def render(self, t: int, shape: np.ndarray) -> np.ndarray:
        if not self.ok[t]:
            return self.frames[t].copy()
        image, pts = self.frames[t], self.points[t]
        if self.mouth == "first-frame" and t != self.ref:
            image, pts = carry_mouth(self.frames[self.ref], self.points[self.ref], image, pts)
        warp = MouthWarp(image, pts, self.interior)
        own_width_change = float(warp.width0) - self.median_width
        return warp.render(np.array([shape[0], shape[1] - own_width_change]))


def dub_frames(frames: np.ndarray, points: np.ndarray, detected: np.ndarray, shapes: np.ndarray,
               interior: Interior | None = None, progress: bool = False, mouth: str = "own",
               index: np.ndarray | None = None) -> np.ndarray:
    """``(len(shapes), H, W, 3)``: output frame ``i`` is source frame ``index[i]`` (None: ``i``) dubbed
    to ``shapes[i]`` (see :class:`VideoDub`; ``pingpong`` gives the index that loops a short video)."""
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    dub = VideoDub(frames, points, detected, interior, mouth)
    index = np.arange(len(frames)) if index is None else np.asarray(index)
    if len(index) != len(shapes) or (len(index) and index.max() >= len(frames)):
        raise ValueError("one shape per output frame, and indices within the source frames")
    with threadpool_limits(limits=1, user_api="blas"):
        out = [dub.render(int(t), shapes[i]) for i, t in
               enumerate(tqdm(index, desc="dub", unit="frame", disable=not progress))]
    return np.stack(out) if out else frames[:0].copy()
