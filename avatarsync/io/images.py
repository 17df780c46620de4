"""Still images: reading a portrait, and the even sides H.264 needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FaceError


def read_image(path: str | Path) -> np.ndarray:
    """An RGB uint8 image from a file; FaceError when missing or unreadable."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FaceError(f"image {path} not found", "check the --image path")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FaceError(f"cannot read image {path}: not a valid image file", "use a JPEG or PNG photo")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def even_sides(image: np.ndarray) -> np.ndarray:
    """Crop one pixel row/column when a side is odd (H.264 4:2:0 needs even sides)."""
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]
