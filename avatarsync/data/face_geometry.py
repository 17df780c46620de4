"""Where the parts of a procedural face sit, in output pixels (shared by render.py and face_layers.py).

Canonical coordinates are output pixel coordinates (pixel centres at
integers) of the un-posed head; head pose is applied afterwards as a warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .identity import FaceIdentity

LONG_STYLES = ("long", "bob")


@dataclass(frozen=True)
class FaceGeometry:
    size: int
    u: float  # pixels per canonical unit (size / 128)
    cx: float
    cy: float
    fw: float
    fh: float
    eye_y: float
    eye_l: tuple[float, float]  # image-left eye centre
    eye_r: tuple[float, float]
    eye_w: float
    nose_tip: tuple[float, float]
    nose_w: float
    mouth: tuple[float, float]
    mouth_w: float
    chin_y: float
    neck_w: float
    ear_l: tuple[float, float]
    ear_r: tuple[float, float]
    pivot: tuple[float, float]  # head rotation centre (top of the neck)
    ears_hidden: bool

    def half_width_at(self, y: np.ndarray | float, jaw_power: float, skull_power: float, chin_w: float) -> np.ndarray:
        """Half-width of the face outline at height ``y`` (0 outside the face)."""
        dy = (np.asarray(y, dtype=np.float64) - self.cy) / self.fh
        p = np.where(dy > 0, jaw_power, skull_power)
        inner = np.clip(1.0 - np.abs(dy) ** p, 0.0, 1.0)
        hw = self.fw * inner ** (1.0 / p)
        chin = chin_w * 2.5 * self.u * np.clip(dy, 0, 1) ** 4
        return np.where(np.abs(dy) <= 1.0, hw + chin * (hw > 0), 0.0)


def face_geometry(ident: FaceIdentity, size: int) -> FaceGeometry:
    u = size / 128.0
    cx, cy = ident.face_cx * u, ident.face_cy * u
    fw, fh = ident.face_w * u, ident.face_h * u
    eye_y = cy + ident.eye_y * u
    gap = ident.eye_gap * u
    nose_tip = (cx, eye_y + ident.nose_length * u)
    mouth = (cx, eye_y + ident.mouth_y * u)
    chin_y = cy + fh
    ear_dx = fw * 0.97 + 0.6 * u
    ear_y = eye_y + 4.5 * u
    return FaceGeometry(
        size=size,
        u=u,
        cx=cx,
        cy=cy,
        fw=fw,
        fh=fh,
        eye_y=eye_y,
        eye_l=(cx - gap, eye_y),
        eye_r=(cx + gap, eye_y),
        eye_w=ident.eye_size * u,
        nose_tip=nose_tip,
        nose_w=ident.nose_width * u,
        mouth=mouth,
        mouth_w=ident.mouth_w * u,
        chin_y=chin_y,
        neck_w=ident.neck_w * u,
        ear_l=(cx - ear_dx, ear_y),
        ear_r=(cx + ear_dx, ear_y),
        pivot=(cx, chin_y + 6 * u),
        ears_hidden=ident.hair_style in LONG_STYLES + ("afro",),
    )
