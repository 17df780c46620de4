"""Pick a landmark backend by name and choose the face to animate."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..errors import FaceError, InputError
from .landmarks import FaceLandmarks, LandmarkDetector

log = logging.getLogger("avatarsync.faces")

BACKENDS = ("mediapipe", "mmpose", "given")


class MultipleFacesWarning(UserWarning):
    """Several faces were found; the largest one is used."""


def get_detector(backend: str | LandmarkDetector = "mediapipe", **kwargs: Any) -> LandmarkDetector:
    """A ``LandmarkDetector`` by name; keyword arguments go to the backend's constructor."""
    if not isinstance(backend, str):
        return backend
    from .backends import GivenLandmarks, MediaPipeDetector, MMPoseDetector  # noqa: PLC0415

    if backend == "mediapipe":
        return MediaPipeDetector(**kwargs)
    if backend == "mmpose":
        return MMPoseDetector(**kwargs)
    if backend == "given":
        return GivenLandmarks(**kwargs)
    raise InputError(f"unknown landmark backend {backend!r}", f"use one of {', '.join(BACKENDS)}")


def select_face(faces: list[FaceLandmarks], source: str = "the image") -> FaceLandmarks:
    """The largest face; ``FaceError`` when there is none, a warning + log line when there are several."""
    if not faces:
        raise FaceError(f"no face found in {source}",
                        "use a photo with one clearly visible, roughly frontal face")
    if len(faces) == 1:
        return faces[0]
    best = max(faces, key=lambda f: f.area)
    x0, y0, x1, y1 = best.bbox
    msg = (f"{len(faces)} faces found in {source}; using the largest "
           f"(box x={x0:.0f}..{x1:.0f}, y={y0:.0f}..{y1:.0f})")
    log.warning(msg)
    warnings.warn(msg, MultipleFacesWarning, stacklevel=2)
    return best


def find_face(image: np.ndarray, detector: str | LandmarkDetector = "mediapipe", source: str = "the image") -> FaceLandmarks:
    """Detect all faces in ``image`` and return the one to use (see ``select_face``). A detector
    made here from its name is closed again (mediapipe's holds about 28 MB until closed)."""
    det = get_detector(detector)
    try:
        return select_face(det.detect(image), source)
    finally:
        if isinstance(detector, str) and callable(getattr(det, "close", None)):
            det.close()
