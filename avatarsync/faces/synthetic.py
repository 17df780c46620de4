"""Toy drawn faces with exact five-point landmarks, for tests and quick sanity runs.

Not the procedural corpus (avatarsync/data/render.py): just enough structure
(skin, hair, eyes, mouth that opens) to exercise alignment and tokenizers.
"""

from __future__ import annotations

import cv2
import numpy as np


def _rot(points: np.ndarray, center: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return (points - center) @ np.array([[c, s], [-s, c]]) + center


def toy_face(rng: np.random.Generator, size: int = 128, center: tuple[float, float] | None = None,
             face_size: float | None = None, roll: float | None = None,
             openness: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its (5, 2) landmarks: left eye, right eye, nose, mouth left, mouth right."""
    S = size
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    ramp = np.linspace(0, 1, S)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (S, S, 3)).astype(np.float64).copy()
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    fs = face_size if face_size is not None else rng.uniform(0.55, 0.7) * S  # face height
    cx, cy = center if center is not None else (S / 2 + rng.uniform(-0.05, 0.05) * S, S / 2 + rng.uniform(-0.04, 0.04) * S)
    ang = roll if roll is not None else rng.uniform(-0.25, 0.25)
    op = openness if openness is not None else rng.uniform(0.0, 1.0)
    c = np.array([cx, cy])
    deg = np.degrees(-ang)
    skin = tuple(float(v) for v in rng.uniform([120, 80, 60], [255, 210, 180]))
    hair = tuple(float(v) for v in rng.uniform(10, 120, 3))
    sc = 16  # subpixel precision for cv2 drawing
    P = lambda p: (int(round(p[0] * sc)), int(round(p[1] * sc)))  # noqa: E731
    A = lambda a, b: (int(round(a * sc)), int(round(b * sc)))  # noqa: E731
    aa = dict(lineType=cv2.LINE_AA, shift=4)
    # hair behind, then face
    hair_c = _rot(np.array([[cx, cy - 0.12 * fs]]), c, ang)[0]
    cv2.ellipse(img, P(hair_c), A(0.43 * fs, 0.45 * fs), deg, 0, 360, hair, -1, **aa)
    cv2.ellipse(img, P(c), A(0.36 * fs, 0.5 * fs), deg, 0, 360, skin, -1, **aa)
    canon = np.array([[cx - 0.16 * fs, cy - 0.08 * fs], [cx + 0.16 * fs, cy - 0.08 * fs], [cx, cy + 0.07 * fs],
                      [cx - 0.12 * fs, cy + 0.22 * fs], [cx + 0.12 * fs, cy + 0.22 * fs]])
    pts = _rot(canon, c, ang)
    eye_w, eye_h = 0.07 * fs, 0.035 * fs
    iris = tuple(float(v) for v in rng.uniform(20, 140, 3))
    for e in pts[:2]:
        cv2.ellipse(img, P(e), A(eye_w, eye_h), deg, 0, 360, (245, 245, 245), -1, **aa)
        cv2.circle(img, P(e), int(round(0.028 * fs * sc)), iris, -1, **aa)
    nose_dark = tuple(0.75 * v for v in skin)
    cv2.ellipse(img, P(pts[2]), A(0.04 * fs, 0.025 * fs), deg, 0, 360, nose_dark, -1, **aa)
    mouth_c = (pts[3] + pts[4]) / 2
    lip = tuple(float(v) for v in rng.uniform([140, 30, 40], [220, 90, 110]))
    cv2.ellipse(img, P(mouth_c), A(0.13 * fs, 0.02 * fs + 0.07 * fs * op), deg, 0, 360, lip, -1, **aa)
    if op > 0.15:
        cv2.ellipse(img, P(mouth_c), A(0.1 * fs, 0.05 * fs * op), deg, 0, 360, (50, 20, 25), -1, **aa)
    return img, pts


def toy_faces(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` toy faces: images (n, size, size, 3) uint8 and landmarks (n, 5, 2)."""
    rng = np.random.default_rng(seed)
    imgs, lms = zip(*(toy_face(rng, size) for _ in range(n)))
    return np.stack(imgs), np.stack(lms)

