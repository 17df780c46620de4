"""The mouth's own coordinates on face-mesh landmarks, shared by the interior atlas and the warp.

A face frame: origin at the left mouth corner, ``ex`` along the eye line (image left to right),
``ey`` perpendicular to it (down the face), lengths in pixels. The inner lips' upper and lower
contours run corner to corner; a point of the opening has ``u`` (0 at the left corner, 1 at the
right) and ``v`` (0 on the upper inner lip, 1 on the lower).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluate.metrics import EYE_OUTER_LEFT, EYE_OUTER_RIGHT

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
CORNERS = (61, 291, 78, 308)


@dataclass(frozen=True)
class FaceFrame:
    origin: np.ndarray  # (2,) image px
    ex: np.ndarray  # (2,) unit vector along the eye line
    ey: np.ndarray  # (2,) unit vector down the face
    eye_distance: float  # px

    @classmethod
    def of(cls, points: np.ndarray) -> "FaceFrame":
        p = np.asarray(points, np.float64)
        e = p[EYE_OUTER_RIGHT] - p[EYE_OUTER_LEFT]
        d = float(np.linalg.norm(e))
        if not d > 1.0:
            raise ValueError("the eye corners coincide: not a face-mesh landmark set")
        ex = e / d
        return cls(origin=p[UPPER_INNER[0]].copy(), ex=ex, ey=np.array([-ex[1], ex[0]]), eye_distance=d)

    def to_face(self, xy: np.ndarray) -> np.ndarray:
        q = np.asarray(xy, np.float64) - self.origin
        return np.stack([q @ self.ex, q @ self.ey], -1)

    def to_image(self, fxy: np.ndarray) -> np.ndarray:
        f = np.asarray(fxy, np.float64)
        return self.origin + f[..., :1] * self.ex + f[..., 1:] * self.ey


def _profile(contour: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of a corner-to-corner contour (face coords) at ``x``."""
    order = np.argsort(contour[:, 0], kind="stable")
    return np.interp(x, contour[order, 0], contour[order, 1])


def opening_grid(points: np.ndarray, height: int, width: int, inset: float = 0.0) -> np.ndarray:
    """``(height, width, 2)`` image positions of the opening's (v, u) grid: row 0 on the upper
    inner lip (``inset`` of the height below it), the last row on the lower, columns corner to corner."""
    frame = FaceFrame.of(points)
    upper = frame.to_face(points[list(UPPER_INNER)])
    lower = frame.to_face(points[list(LOWER_INNER)])
    x0, x1 = upper[0, 0], upper[-1, 0]
    xs = x0 + (x1 - x0) * np.linspace(0.0, 1.0, width)
    yu, yl = _profile(upper, xs), _profile(lower, xs)
    v = np.linspace(inset, 1.0 - inset, height)[:, None]
    fy = yu[None] + v * (yl - yu)[None]
    fx = np.broadcast_to(xs[None], fy.shape)
    return frame.to_image(np.stack([fx, fy], -1))


def opening_coords(upper: np.ndarray, lower: np.ndarray, fxy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, inset) of face-coordinate points ``fxy (..., 2)`` against inner-lip contours in face
    coordinates; ``inset`` is the distance in px to the nearer lip (negative outside the opening)."""
    x0, x1 = upper[0, 0], upper[-1, 0]
    x, y = fxy[..., 0], fxy[..., 1]
    yu, yl = _profile(upper, x.ravel()).reshape(x.shape), _profile(lower, x.ravel()).reshape(x.shape)
    h = yl - yu
    u = (x - x0) / max(x1 - x0, 1e-6)
    v = (y - yu) / np.maximum(h, 1e-6)
    inset = np.minimum(y - yu, yl - y)
    inset = np.where((u > 0) & (u < 1) & (h > 0), inset, -1e9)
    return u, v, inset
