"""Landmark backends behind ``LandmarkDetector``: mediapipe (default), mmpose (optional), given arrays."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import BackendUnavailable, InputError
from .landmarks import MEDIAPIPE_478, FaceLandmarks, LandmarkLayout, get_layout, landmarks_from_five, landmarks_from_points


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check and normalise an image to contiguous ``(H, W, 3)`` uint8 RGB."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InputError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (native libraries' log lines; Python's
    own stderr object is flushed first and restored after)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


class MediaPipeDetector:
    """mediapipe face mesh (0.10.x ``solutions.face_mesh``; its models ship inside the wheel).

    ``video=True`` tracks a face from frame to frame (detection only when the track is lost):
    call ``detect`` on the frames of one video in order, and ``close`` before the next video."""

    name = "mediapipe"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, video: bool = False) -> None:
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self.video = video
        self._mesh = None

    def _load(self):
        if self._mesh is None:
            try:
                from mediapipe.python.solutions import face_mesh  # noqa: PLC0415
            except ImportError as e:
                raise BackendUnavailable(f"mediapipe face mesh is not importable ({e})",
                                         "install mediapipe==0.10.21 (scripts/setup.sh does) or use another backend") from None
            self._mesh = face_mesh.FaceMesh(static_image_mode=not self.video, max_num_faces=self.max_faces,
                                            refine_landmarks=True, min_detection_confidence=self.min_confidence)
        return self._mesh

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        img = as_rgb_uint8(image)
        fresh = self._mesh is None
        mesh = self._load()
        if fresh:  # mediapipe's C++ side logs start-up notes to stderr on a graph's first frame
            with native_stderr_silenced():
                result = mesh.process(img)
        else:
            result = mesh.process(img)
        faces = []
        h, w = img.shape[:2]
        for face in result.multi_face_landmarks or []:
            pts = np.array([[p.x * w, p.y * h] for p in face.landmark], dtype=np.float64)
            faces.append(landmarks_from_points(pts, MEDIAPIPE_478))
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            with native_stderr_silenced():  # its worker threads may still be logging start-up notes
                self._mesh.close()
            self._mesh = None


def mediapipe_face_boxes(image: np.ndarray, min_confidence: float = 0.5) -> list[tuple[float, float, float, float]]:
    """Face boxes (x0, y0, x1, y1) from mediapipe's face detector (used to seed top-down mmpose)."""
    try:
        from mediapipe.python.solutions import face_detection  # noqa: PLC0415
    except ImportError:
        return []
    img = as_rgb_uint8(image)
    h, w = img.shape[:2]
    with face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence) as det:
        result = det.process(img)
    boxes = []
    for d in result.detections or []:
        b = d.location_data.relative_bounding_box
        boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return boxes


class MMPoseDetector:
    """mmpose 1.x top-down face landmarks from a local config + checkpoint (never downloads).

    Face boxes come from ``box_detector`` (default: mediapipe's face detector,
    else the whole image). ``layout`` names the model's keypoint scheme
    (``wflw98`` for mmpose's WFLW models, ``ibug68`` for 300W / COFW-68).
    """

    name = "mmpose"

    def __init__(self, config: str, checkpoint: str, device: str = "cpu", layout: str | LandmarkLayout = "wflw98",
                 box_detector: Callable[[np.ndarray], list[tuple[float, float, float, float]]] | None = None) -> None:
        for label, path in (("config", config), ("checkpoint", checkpoint)):
            if not path or not Path(path).is_file():
                raise BackendUnavailable(f"mmpose {label} {path!r} not found",
                                         "pass local paths to an mmpose face-landmark config and checkpoint")
        self.config, self.checkpoint, self.device = str(config), str(checkpoint), device
        self.layout = get_layout(layout)
        self.box_detector = box_detector or mediapipe_face_boxes
        self._model = None
        self._apis = None

    def _load(self):
        if self._model is None:
            try:
                from mmpose import apis  # noqa: PLC0415
            except ImportError as e:
                raise BackendUnavailable(f"mmpose is not installed ({e})",
                                         "pip install mmpose (needs full mmcv) or use the mediapipe backend") from None
            self._apis = apis
            self._model = apis.init_model(self.config, self.checkpoint, device=self.device)
        return self._model

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        img = as_rgb_uint8(image)
        model = self._load()
        h, w = img.shape[:2]
        boxes = list(self.box_detector(img)) or [(0.0, 0.0, float(w), float(h))]
        # mmpose's default pipelines read images as BGR (LoadImage with cv2).
        samples = self._apis.inference_topdown(model, np.ascontiguousarray(img[..., ::-1]),
                                               bboxes=np.asarray(boxes, dtype=np.float32), bbox_format="xyxy")
        faces = []
        for box, sample in zip(boxes, samples):
            inst = sample.pred_instances
            kpts = np.asarray(inst.keypoints)[0]
            scores = getattr(inst, "keypoint_scores", None)
            score = float(np.mean(np.asarray(scores)[0])) if scores is not None else 1.0
            faces.append(landmarks_from_points(kpts, self.layout, score=score, bbox=tuple(float(v) for v in box)))
        return faces


class GivenLandmarks:
    """Landmarks supplied by the caller (e.g. the procedural renderer's truth), no detection.

    ``faces`` is a list of ``FaceLandmarks``, dense ``(K, 2)`` arrays read with
    ``layout``, or ``(5, 2)`` five-point arrays when ``layout`` is ``"five"``.
    """

    name = "given"

    def __init__(self, faces: Sequence[FaceLandmarks | np.ndarray] | np.ndarray,
                 layout: str | LandmarkLayout = "five") -> None:
        if isinstance(faces, np.ndarray) and faces.ndim == 2:
            faces = [faces]
        out = []
        for f in faces:
            if isinstance(f, FaceLandmarks):
                out.append(f)
            elif isinstance(layout, str) and layout == "five":
                out.append(landmarks_from_five(f))
            else:
                out.append(landmarks_from_points(f, layout))
        self.faces = out

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        return list(self.faces)
