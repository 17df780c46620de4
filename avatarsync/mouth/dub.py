"""Dubbing: a real video re-spoken, its own head motion, blinks and background kept.

The source frames are played forward then backward (a ping-pong, so there is no jump) until the new
speech ends; every frame's face is tracked (``faces.tracking.track_faces``) and only its mouth is
moved to the new speech's shape (``warp.MouthWarp``, set up on that frame's own landmarks). A frame
whose face was not found is left as it is.

``mouth="first-frame"`` moves a different mouth: the first tracked frame's, carried into every frame
(aligned on the lower face by a similarity transform, feathered in over the lips and chin) before it
is moved; the moved region reads that mouth straight from the first frame, bicubically and once
(moved in, then warped, it kept 0.67 of the real mouth's sharpness on s1; now 0.82). The clip's own
mouth then never reaches the output: what a source video was saying does not show through, and
re-speaking a clip with its own speech becomes a reconstruction test without leakage
(``avatarsync evaluate --source video --dub-mouth first-frame``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class CarriedMouth:
    """``src``'s lips and chin aligned onto another frame: the similarity transform ``m`` (src pixel
    -> frame pixel), the feathered blend ``mask`` (frame pixels, 1 = the carried mouth) and the frame's
    landmarks with the carried-in points replaced by ``src``'s, moved."""

    src: np.ndarray
    m: np.ndarray  # (2, 3)
    mask: np.ndarray  # (H, W) float32
    points: np.ndarray

    @classmethod
    def fit(cls, src: np.ndarray, src_points: np.ndarray, dst: np.ndarray, dst_points: np.ndarray
            ) -> "CarriedMouth | None":
        import cv2

        stable = sorted(set(ANCHORS) | set(_CARRIED))
        m, _ = cv2.estimateAffinePartial2D(src_points[stable].astype(np.float32),
                                           dst_points[stable].astype(np.float32))
        if m is None:
            return None
        h, w = dst.shape[:2]
        moved_points = src_points @ m[:, :2].T + m[:, 2]
        eye = FaceFrame.of(dst_points).eye_distance
        hull = cv2.convexHull(np.concatenate([moved_points[_CARRIED], dst_points[_CARRIED]]).astype(np.float32))
        mask = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(mask, hull.astype(np.int32), 1.0)
        grow = max(1, int(round(0.12 * eye)))
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.06 * eye, 1.0))
        points = dst_points.copy()
        points[_CARRIED] = moved_points[_CARRIED]
        return cls(src, m, mask, points)

    def sample(self, dst: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The composite (carried mouth over ``dst``) read at ``at`` ((h, w, 2) frame coordinates, or
        None: every pixel), each source read once: ``src`` at ``m``'s inverse of ``at``, ``dst`` at ``at``."""
        import cv2

        if at is None:  # only the mask's box is blended: elsewhere the mask is 0 and the composite is ``dst``
            out = dst.copy()
            ys, xs = np.nonzero(self.mask)
            if not len(ys):
                return out
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            m = self.m.copy()
            m[:, 2] -= (x0, y0)  # into the box's own pixels
            src = cv2.warpAffine(self.src, m, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            mask = self.mask[y0:y1, x0:x1, None]
            out[y0:y1, x0:x1] = (mask * src + (1.0 - mask) * dst[y0:y1, x0:x1]).round().clip(0, 255).astype(np.uint8)
            return out
        inverse = cv2.invertAffineTransform(self.m)
        src_at = np.ascontiguousarray(at @ inverse[:, :2].T.astype(np.float32) + inverse[:, 2].astype(np.float32))
        src = cv2.remap(self.src, src_at, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        mask = cv2.remap(self.mask, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[..., None]
        under = cv2.remap(dst, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # as MouthWarp
        return (mask * src + (1.0 - mask) * under).round().clip(0, 255).astype(np.uint8)


def carry_mouth(src: np.ndarray, src_points: np.ndarray, dst: np.ndarray, dst_points: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``dst`` with ``src``'s lips and chin put in (aligned on the lower face, feathered), and the
    landmarks of the result: ``dst_points`` with the carried-in points replaced by ``src``'s, moved."""
    carried = CarriedMouth.fit(src, src_points, dst, dst_points)
    if carried is None:
        return dst, dst_points
    return carried.sample(dst, None), carried.points


class _CarriedWarp(MouthWarp):
    """``MouthWarp`` of a frame with a carried-in mouth that reads the moved region straight from the
    two sources (the carried frame and this one), so the carried mouth is resampled once, not twice."""

    def __init__(self, dst: np.ndarray, carried: CarriedMouth, interior: Interior | None) -> None:
        super().__init__(carried.sample(dst, None), carried.points, interior)
        self.dst, self.carried = dst, carried

    def _sample(self, src: np.ndarray) -> np.ndarray:
        return self.carried.sample(self.dst, src)


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
        carried = None
        if self.mouth == "first-frame" and t != self.ref:
            carried = CarriedMouth.fit(self.frames[self.ref], self.points[self.ref], image, pts)
        warp = (MouthWarp(image, pts, self.interior) if carried is None else
                _CarriedWarp(image, carried, self.interior))
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
