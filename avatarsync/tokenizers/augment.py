"""Training augmentation for real faces: what a face never seen may differ by.

One draw is applied alike to a frame and to its reference (the portrait the decoder reads), since
at inference both come from one photo: lighting and white balance, contrast, saturation, gamma,
blur, JPEG, and a small similarity (scale, shift, rotation) of the whole crop.
"""

from __future__ import annotations

import cv2
import numpy as np


def _photometric(rng: np.random.Generator):
    gain = 1.0 + rng.uniform(-0.08, 0.08, 3)  # white balance / coloured light
    bright = rng.uniform(-0.12, 0.12)
    contrast = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.7, 1.3)
    gamma = float(np.exp(rng.uniform(-0.2, 0.2)))

    def apply(img: np.ndarray) -> np.ndarray:
        x = img.astype(np.float32) / 255.0
        x = x * gain
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * saturation
        x = (x - 0.5) * contrast + 0.5 + bright
        return np.clip(x, 0, 1) ** gamma

    return apply


def augment_pair(image: np.ndarray, reference: np.ndarray | None, box: np.ndarray, rng: np.random.Generator):
    """(image, reference, mouth box) after one random draw; uint8 (S, S, 3) in and out."""
    size = image.shape[0]
    scale = rng.uniform(0.92, 1.08)
    angle = rng.uniform(-5.0, 5.0)
    shift = rng.uniform(-0.04, 0.04, 2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += shift
    photo = _photometric(rng)
    blur = rng.uniform(0.3, 1.2) if rng.random() < 0.3 else 0.0
    quality = int(rng.integers(40, 90)) if rng.random() < 0.3 else 0

    def one(img: np.ndarray) -> np.ndarray:
        x = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        x = np.rint(photo(x) * 255).astype(np.uint8)
        if blur:
            x = cv2.GaussianBlur(x, (0, 0), blur)
        if quality:
            ok, enc = cv2.imencode(".jpg", x[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            x = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1] if ok else x
        return np.ascontiguousarray(x)

    corners = np.array([[box[0], box[1], 1], [box[2], box[1], 1], [box[0], box[3], 1], [box[2], box[3], 1]], float) @ m.T
    new_box = np.array([*corners.min(0), *corners.max(0)])
    new_box = np.clip(np.rint(new_box), 0, size).astype(np.int64)
    new_box[2:] = np.maximum(new_box[2:], new_box[:2] + 1)
    return one(image), None if reference is None else one(reference), new_box
