"""Face landmarks: the five points alignment needs, the detector protocol, point layouts.

Conventions: images are ``(H, W, 3)`` uint8 RGB arrays; points are ``(x, y)``
pixel coordinates. ``left_eye`` / ``mouth_left`` are the points on the
*image's* left (the subject's right), so for an upright frontal face
``left_eye[0] < right_eye[0]``.

A *layout* names which indices of a dense landmark set (mediapipe's 478, the
68-point iBUG scheme, WFLW's 98, the procedural renderer's own) form each
eye, the mouth corners, the nose tip and the mouth outline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FaceError, InputError


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One detected face. Points are float ``(2,)`` arrays in image pixels."""

    left_eye: np.ndarray
    right_eye: np.ndarray
    mouth_left: np.ndarray
    mouth_right: np.ndarray
    nose: np.ndarray
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float = 1.0
    points: np.ndarray | None = None  # all landmarks of the layout, (K, 2), when known
    mouth: np.ndarray | None = None  # mouth outline points, (M, 2), when known

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    def five(self) -> np.ndarray:
        """``(5, 2)``: left eye, right eye, nose, mouth left, mouth right."""
        return np.stack([self.left_eye, self.right_eye, self.nose, self.mouth_left, self.mouth_right]).astype(np.float64)

    def mouth_points(self) -> np.ndarray:
        """Mouth outline when the layout has one, else the two corners."""
        if self.mouth is not None and len(self.mouth):
            return np.asarray(self.mouth, dtype=np.float64)
        return np.stack([self.mouth_left, self.mouth_right]).astype(np.float64)


@runtime_checkable
class LandmarkDetector(Protocol):
    """A landmark backend: every face found in an RGB uint8 image (may be empty)."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]: ...


@dataclass(frozen=True)
class LandmarkLayout:
    """Index groups of a dense landmark scheme. Each group's mean gives its point."""

    name: str
    num_points: int
    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]
    mouth_left: tuple[int, ...]
    mouth_right: tuple[int, ...]
    nose: tuple[int, ...]
    mouth: tuple[int, ...] = field(default=())


# mediapipe face mesh (468 points, 478 with refined irises). Eye points are the corners.
MEDIAPIPE_478 = LandmarkLayout(
    "mediapipe478", 468, left_eye=(33, 133), right_eye=(362, 263), mouth_left=(61,), mouth_right=(291,), nose=(1,),
    mouth=(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
)
# iBUG 300-W 68 points (0-based), used by dlib and mmpose's 300W / COFW-68 models.
IBUG_68 = LandmarkLayout(
    "ibug68", 68, left_eye=tuple(range(36, 42)), right_eye=tuple(range(42, 48)), mouth_left=(48,), mouth_right=(54,),
    nose=(30,), mouth=tuple(range(48, 60)),
)
# WFLW 98 points (mmpose's default face model family).
WFLW_98 = LandmarkLayout(
    "wflw98", 98, left_eye=tuple(range(60, 68)), right_eye=tuple(range(68, 76)), mouth_left=(76,), mouth_right=(82,),
    nose=(54,), mouth=tuple(range(76, 88)),
)

_LAYOUTS: dict[str, LandmarkLayout] = {lay.name: lay for lay in (MEDIAPIPE_478, IBUG_68, WFLW_98)}


def register_layout(layout: LandmarkLayout) -> None:
    """Make ``layout`` available by name (the procedural renderer registers its own)."""
    _LAYOUTS[layout.name] = layout


def get_layout(name: str | LandmarkLayout) -> LandmarkLayout:
    """Look a layout up by name. ``"procedural"`` is read from ``avatarsync.data.render``."""
    if isinstance(name, LandmarkLayout):
        return name
    if name not in _LAYOUTS and name == "procedural":
        _load_procedural_layout()
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise InputError(f"unknown landmark layout {name!r}",
                         f"use one of {', '.join(sorted(_LAYOUTS))} or register_layout() your own") from None


def _load_procedural_layout() -> None:
    """The renderer's landmark order: ``LANDMARK_LAYOUT`` if it defines one, else read off ``LANDMARK_NAMES``."""
    try:
        from ..data import render  # noqa: PLC0415 - heavy-ish, only when asked for
    except ImportError:
        return
    found = getattr(render, "LANDMARK_LAYOUT", None)
    if isinstance(found, LandmarkLayout):
        register_layout(found)
        return
    names = list(getattr(render, "LANDMARK_NAMES", ()))
    need = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
    if not all(n in names for n in need):
        return
    mouth = [names.index(n) for n in ("mouth_left", "upper_lip", "mouth_right", "lower_lip", "upper_lip_inner",
                                       "lower_lip_inner") if n in names]
    register_layout(LandmarkLayout("procedural", len(names), left_eye=(names.index("left_eye"),),
                                   right_eye=(names.index("right_eye"),), mouth_left=(names.index("mouth_left"),),
                                   mouth_right=(names.index("mouth_right"),), nose=(names.index("nose_tip"),),
                                   mouth=tuple(mouth)))


def landmarks_from_points(points: np.ndarray, layout: str | LandmarkLayout, score: float = 1.0,
                          bbox: tuple[float, float, float, float] | None = None) -> FaceLandmarks:
    """Reduce a dense ``(K, 2)`` landmark array to a ``FaceLandmarks`` using ``layout``."""
    lay = get_layout(layout)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise InputError(f"landmarks must be a (K, 2) array, got shape {pts.shape}")
    pts = pts[:, :2]
    needed = max(max(g) for g in (lay.left_eye, lay.right_eye, lay.mouth_left, lay.mouth_right, lay.nose)) + 1
    if len(pts) < needed:
        raise InputError(f"layout {lay.name!r} needs at least {needed} landmarks, got {len(pts)}",
                         "pass the layout that matches the landmark source")
    if not np.all(np.isfinite(pts)):
        raise FaceError("landmarks contain NaN or infinite values")

    def mean(idx: tuple[int, ...]) -> np.ndarray:
        return pts[list(idx)].mean(axis=0)

    if bbox is None:
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        bbox = (float(x0), float(y0), float(x1), float(y1))
    mouth = pts[list(lay.mouth)] if lay.mouth and max(lay.mouth) < len(pts) else None
    return FaceLandmarks(left_eye=mean(lay.left_eye), right_eye=mean(lay.right_eye), mouth_left=mean(lay.mouth_left),
                         mouth_right=mean(lay.mouth_right), nose=mean(lay.nose), bbox=bbox, score=float(score),
                         points=pts, mouth=mouth)


def landmarks_from_five(five: np.ndarray, score: float = 1.0) -> FaceLandmarks:
    """From a ``(5, 2)`` array ordered left eye, right eye, nose, mouth left, mouth right."""
    p = np.asarray(five, dtype=np.float64)
    if p.shape != (5, 2):
        raise InputError(f"five-point landmarks must have shape (5, 2), got {p.shape}")
    le, re, nose, ml, mr = p
    iod = float(np.linalg.norm(re - le))
    x0, y0 = p.min(axis=0) - iod * 0.6
    x1, y1 = p.max(axis=0) + iod * 0.6
    return FaceLandmarks(le, re, ml, mr, nose, (float(x0), float(y0), float(x1), float(y1)), float(score))
