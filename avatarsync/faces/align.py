"""Landmark-aligned square face crops and pasting generated crops back.

The eyes and mouth corners define a similarity transform (rotation, uniform
scale, translation; no shear, no reflection) onto a fixed template, fitted
by weighted least squares. Eyes weigh more than mouth corners because the
mouth moves while speaking. The nose is not used: it shifts with head yaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from .backends import as_rgb_uint8
from .landmarks import FaceLandmarks

# Template positions as fractions of the crop side: left eye, right eye, mouth left, mouth right.
# The face (hair line to chin) fits inside the crop with a margin for head motion.
TEMPLATE = np.array([[0.37, 0.39], [0.63, 0.39], [0.39, 0.66], [0.61, 0.66]], dtype=np.float64)
TEMPLATE_WEIGHTS = np.array([1.0, 1.0, 0.5, 0.5], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A square crop and the 2x3 transforms between image and crop pixels."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    matrix: np.ndarray  # 2x3, image pixel -> crop pixel
    inverse: np.ndarray  # 2x3, crop pixel -> image pixel
    size: int
    source_shape: tuple[int, int] = (0, 0)  # (H, W) of the image the crop came from
    landmarks: FaceLandmarks | None = None  # the face's landmarks in crop pixels

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


def template_points(size: int, face_scale: float = 1.0) -> np.ndarray:
    """Template points in crop pixels; ``face_scale`` > 1 makes the face larger in the crop."""
    if face_scale <= 0:
        raise InputError(f"face_scale must be positive, got {face_scale}")
    return ((TEMPLATE - 0.5) * face_scale + 0.5) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """2x3 similarity matrix mapping ``src`` (N, 2) onto ``dst`` (N, 2) in weighted least squares."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = (w[:, None] * src).sum(0)
    mu_d = (w[:, None] * dst).sum(0)
    s = (src - mu_s) @ np.array([1.0, 1j])  # points as complex numbers
    d = (dst - mu_d) @ np.array([1.0, 1j])
    denom = float((w * np.abs(s) ** 2).sum())
    if denom < 1e-9:
        raise InputError("landmarks are degenerate (all points coincide)", "check the landmark source")
    a = (w * np.conj(s) * d).sum() / denom  # rotation + scale as one complex factor
    rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
    t = mu_d - rot @ mu_s
    return np.hstack([rot, t[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(landmarks: FaceLandmarks, size: int = 128, face_scale: float = 1.0) -> np.ndarray:
    """The image -> crop similarity for ``landmarks`` (see module docstring)."""
    src = np.stack([landmarks.left_eye, landmarks.right_eye, landmarks.mouth_left, landmarks.mouth_right])
    if float(np.linalg.norm(src[1] - src[0])) < 1.0:
        raise InputError("the two eye landmarks coincide", "check the landmark source")
    return similarity_transform(src, template_points(size, face_scale), TEMPLATE_WEIGHTS)


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` into a ``size``-pixel crop; strong downscales are pre-filtered (no aliasing)."""
    img = as_rgb_uint8(image)
    m = np.asarray(matrix, dtype=np.float64).copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        f = min(1.0, scale * 1.5)
        img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
        m[:, :2] /= f
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _landmarks_in_crop(lm: FaceLandmarks, m: np.ndarray) -> FaceLandmarks:
    def tp(p):
        return None if p is None else transform_points(p, m)

    corners = transform_points(np.array([[lm.bbox[0], lm.bbox[1]], [lm.bbox[2], lm.bbox[1]],
                                         [lm.bbox[0], lm.bbox[3]], [lm.bbox[2], lm.bbox[3]]]), m)
    bbox = (*corners.min(0), *corners.max(0))
    return FaceLandmarks(tp(lm.left_eye), tp(lm.right_eye), tp(lm.mouth_left), tp(lm.mouth_right), tp(lm.nose),
                         tuple(float(v) for v in bbox), lm.score, tp(lm.points), tp(lm.mouth))


def align_face(image: np.ndarray, landmarks: FaceLandmarks, size: int = 128, face_scale: float = 1.0,
               matrix: np.ndarray | None = None) -> AlignedFace:
    """Crop the face of ``landmarks`` to a ``size`` square. Pass ``matrix`` to reuse a transform (e.g. a clip's)."""
    if size < 8:
        raise InputError(f"crop size must be at least 8 pixels, got {size}")
    img = as_rgb_uint8(image)
    m = alignment_matrix(landmarks, size, face_scale) if matrix is None else np.asarray(matrix, dtype=np.float64)
    crop = warp_to_crop(img, m, size)
    return AlignedFace(crop=crop, matrix=m, inverse=invert_affine(m), size=size, source_shape=img.shape[:2],
                       landmarks=_landmarks_in_crop(landmarks, m))


# The region speech moves (mouth, lips, chin, lower cheeks) in template crop fractions at face_scale 1:
# an ellipse from below the nose to past the chin, room left for the jaw to drop.
MOUTH_REGION = ((0.5, 0.745), (0.26, 0.215))  # centre (x, y), radii (x, y)
MASK_SHAPES = ("rect", "ellipse", "mouth")


def crop_mask(size: int, feather: float = 0.1, shape: str = "rect", face_scale: float = 1.0) -> np.ndarray:
    """Soft (size, size) float mask in [0, 1]: 1 inside, smooth ramp of ``feather`` x size to 0 at the edge.

    ``rect``: the whole crop; ``ellipse``: the ellipse inscribed in it; ``mouth``: ``MOUTH_REGION``
    (for crops made with ``face_scale``), so a paste-back changes only what speech moves."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if shape == "rect":
        dist = np.minimum.reduce([xx, size - xx, yy, size - yy]) / size  # distance to the border, in crop sides
    elif shape == "ellipse":
        r = np.sqrt(((xx - size / 2) / (size / 2)) ** 2 + ((yy - size / 2) / (size / 2)) ** 2)
        dist = (1.0 - r) / 2
    elif shape == "mouth":
        (cx, cy), (rx, ry) = MOUTH_REGION
        cx, cy = ((cx - 0.5) * face_scale + 0.5) * size, ((cy - 0.5) * face_scale + 0.5) * size
        rx, ry = rx * face_scale * size, ry * face_scale * size
        r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        dist = (1.0 - r) * min(rx, ry) / size
    else:
        raise InputError(f"unknown mask shape {shape!r}", f"use one of {', '.join(MASK_SHAPES)}")
    if feather <= 0:
        return (dist > 0).astype(np.float64)
    t = np.clip(dist / feather, 0.0, 1.0)
    return t * t * (3 - 2 * t)  # smoothstep


def paste_back(portrait: np.ndarray, aligned: AlignedFace, new_crop: np.ndarray, feather: float = 0.1,
               mask: str = "rect") -> np.ndarray:
    """Warp ``new_crop`` (any size; uint8 or float in [0, 1]) back into ``portrait`` with a soft mask."""
    return PasteBack(portrait, aligned, feather, mask)(new_crop)


def seam_ring(alpha: np.ndarray) -> np.ndarray:
    """Weights of the feathered band of a soft mask (peak where alpha is 0.5, 0 inside and outside)."""
    return 4.0 * alpha * (1.0 - alpha)


class PasteBack:
    """Pastes crops into one portrait; the warped soft mask and the face's box are computed once.

    Only the box the crop covers is warped and blended, so a frame costs the same whatever the
    portrait's size. ``PasteBack(portrait, aligned)(crop)`` equals ``paste_back(portrait, aligned, crop)``.
    Outside the mask the output is the portrait's own pixels. ``match_colour`` shifts each pasted crop
    by the mean colour difference to the portrait over the mask's feathered band, so a decoder's
    colour drift leaves no visible seam.
    """

    def __init__(self, portrait: np.ndarray, aligned: AlignedFace, feather: float = 0.1, mask: str = "rect",
                 face_scale: float = 1.0, match_colour: bool = False) -> None:
        base = as_rgb_uint8(portrait)
        h, w = base.shape[:2]
        if aligned.source_shape != (0, 0) and tuple(aligned.source_shape) != (h, w):
            raise InputError(f"portrait is {w}x{h} but the face was aligned on a "
                             f"{aligned.source_shape[1]}x{aligned.source_shape[0]} image", "paste into the same portrait")
        self.base, self.size = base, aligned.size
        s = float(aligned.size)
        corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]]) @ np.asarray(aligned.inverse, np.float64).T
        x0, y0 = (int(max(0, np.floor(corners[:, i].min()) - 2)) for i in (0, 1))
        x1 = int(min(w, np.ceil(corners[:, 0].max()) + 2))
        y1 = int(min(h, np.ceil(corners[:, 1].max()) + 2))
        self.box = (x0, y0, max(x0, x1), max(y0, y1))
        self.local = np.asarray(aligned.inverse, np.float64).copy()
        self.local[:, 2] -= (x0, y0)  # crop pixel -> box pixel
        bw, bh = self.box[2] - x0, self.box[3] - y0
        crop_alpha = crop_mask(aligned.size, feather, mask, face_scale).astype(np.float32)
        soft = cv2.warpAffine(crop_alpha, self.local, (bw, bh),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        self.alpha = soft[..., None].astype(np.float32)
        self.keep = (1.0 - self.alpha) * base[y0:self.box[3], x0:self.box[2]].astype(np.float32)
        self.ring = None
        if match_colour:  # the portrait's colour on the seam, in crop pixels, to match each crop to
            ring = seam_ring(crop_alpha)
            self.ring = ring[..., None] / max(float(ring.sum()), 1e-6)
            self.ring_colour = (self.ring * aligned.crop.astype(np.float32)).sum(axis=(0, 1))

    def __call__(self, new_crop: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        out = self.base.copy()
        if x1 <= x0 or y1 <= y0:  # the face lies outside the portrait
            return out
        crop = as_rgb_uint8(new_crop)
        if crop.shape[:2] != (self.size, self.size):
            crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if self.ring is not None:
            shift = self.ring_colour - (self.ring * crop.astype(np.float32)).sum(axis=(0, 1))
            crop = np.clip(np.rint(crop.astype(np.float32) + shift), 0, 255).astype(np.uint8)
        warped = cv2.warpAffine(crop, self.local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        blended = self.alpha * warped.astype(np.float32) + self.keep
        out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return out
