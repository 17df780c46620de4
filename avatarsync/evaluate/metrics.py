"""Frame metrics for self-reenactment: generated frames compared with the real ones.

Everything takes numpy arrays. Images are ``(H, W, 3)`` uint8 RGB; landmarks
are mediapipe face-mesh points in pixels, ``(478, 2)`` per frame or
``(N, 478, 2)`` per clip, with NaN rows for frames where no face was found.
Boxes are ``(x0, y0, x1, y1)`` pixel boxes, half-open (``x1``/``y1`` excluded).

cv2 and dlib are imported only inside the functions that need them.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BackendUnavailable, InputError

Box = tuple[int, int, int, int]

LIP_INNER_TOP = 13
LIP_INNER_BOTTOM = 14
EYE_OUTER_LEFT = 33
EYE_OUTER_RIGHT = 263

FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
LIPS_OUTER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER: tuple[int, ...] = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIPS: tuple[int, ...] = LIPS_OUTER + LIPS_INNER

# Highest landmark index used here; 468-point meshes (no iris refinement) work too.
_MIN_POINTS = max(FACE_OVAL + LIPS + (EYE_OUTER_LEFT, EYE_OUTER_RIGHT)) + 1

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PEAK = 255.0
MSE_FLOOR = 1e-10

_LANDMARK_HINT = "pass mediapipe face-mesh landmarks in pixels, shape (478, 2) per frame or (N, 478, 2)"


# ---------------------------------------------------------------- checks


def _frame_points(landmarks: np.ndarray) -> np.ndarray:
    """One frame's landmarks as float64 ``(P, 2)``."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < _MIN_POINTS or pts.shape[1] < 2:
        raise InputError(f"expected (478, 2) face landmarks, got shape {pts.shape}", _LANDMARK_HINT)
    return pts[:, :2]


def _clip_points(landmarks: np.ndarray) -> np.ndarray:
    """A clip's landmarks as float64 ``(N, P, 2)``."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] < _MIN_POINTS or pts.shape[2] < 2:
        raise InputError(f"expected (N, 478, 2) face landmarks, got shape {pts.shape}", _LANDMARK_HINT)
    return pts[..., :2]


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2 or int(shape[0]) <= 0 or int(shape[1]) <= 0:
        raise InputError(f"expected an image shape (H, W, ...), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _check_box(box: Box, shape: tuple[int, ...]) -> Box:
    """A non-empty box inside an image of ``shape``, as ints."""
    h, w = _image_shape(shape)
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError) as e:
        raise InputError(f"expected a box (x0, y0, x1, y1), got {box!r}") from e
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InputError(f"box {(x0, y0, x1, y1)} is empty or outside the {w}x{h} image",
                         "use face_box / mouth_box, which clip to the image")
    return x0, y0, x1, y1


def _check_images(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise InputError(f"expected two images of one shape (H, W, 3), got {a.shape} and {b.shape}",
                         "resize the generated frames to the real frames' size first")
    return a, b


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


# ---------------------------------------------------------------- boxes


def _points_box(pts: np.ndarray, shape: tuple[int, ...], grow: float = 0.0, what: str = "face") -> Box:
    """Half-open bounding box of ``pts`` grown by ``grow`` pixels on each side, clipped to the image."""
    h, w = _image_shape(shape)
    if not np.all(np.isfinite(pts)):
        raise InputError(f"the {what} landmarks contain NaN or inf (no face found in this frame?)",
                         "skip frames without a detected face")
    lo = pts.min(axis=0) - grow
    hi = pts.max(axis=0) + grow
    x0 = max(0, math.floor(lo[0]))
    y0 = max(0, math.floor(lo[1]))
    x1 = min(w, math.floor(hi[0]) + 1)
    y1 = min(h, math.floor(hi[1]) + 1)
    if x1 <= x0 or y1 <= y0 or hi[0] - lo[0] <= 0 or hi[1] - lo[1] <= 0:
        raise InputError(f"the {what} box is empty or degenerate inside the {w}x{h} image",
                         "check that the landmarks are in pixels of this image")
    return int(x0), int(y0), int(x1), int(y1)


def face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> Box:
    """Bounding box ``(x0, y0, x1, y1)`` (half-open) of the face oval, clipped to an image of ``shape``."""
    pts = _frame_points(landmarks)[list(FACE_OVAL)]
    return _points_box(pts, shape, what="face")


def mouth_box(landmarks: np.ndarray, shape: tuple[int, ...], margin: float = 0.25) -> Box:
    """Bounding box of the lips grown by ``margin`` x the lip width on each side, clipped to the image."""
    if not margin >= 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    pts = _frame_points(landmarks)[list(LIPS)]
    width = float(np.ptp(pts[:, 0])) if np.all(np.isfinite(pts)) else 0.0
    return _points_box(pts, shape, grow=margin * width, what="mouth")


# ---------------------------------------------------------------- pixel metrics


def box_psnr(a: np.ndarray, b: np.ndarray, box: Box) -> float:
    """PSNR in dB (peak 255) over the pixels and channels inside ``box``; MSE floored at 1e-10."""
    a, b = _check_images(a, b)
    box = _check_box(box, a.shape)
    diff = _crop(a, box).astype(np.float64) - _crop(b, box).astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float(10.0 * math.log10(PEAK**2 / max(mse, MSE_FLOOR)))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _valid_filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of a 2-D array with the 1-D window ``g`` (window fully inside)."""
    k = len(g)
    rows = sum(g[i] * x[i:x.shape[0] - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i:rows.shape[1] - k + 1 + i] for i in range(k))


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    if min(x.shape) < SSIM_WINDOW:  # too small for the window: the whole box is one window
        mx, my = x.mean(), y.mean()
        vx, vy = x.var(), y.var()
        cxy = np.mean((x - mx) * (y - my))
    else:
        g = _gaussian_window()
        mx, my = _valid_filter(x, g), _valid_filter(y, g)
        vx = _valid_filter(x * x, g) - mx * mx
        vy = _valid_filter(y * y, g) - my * my
        cxy = _valid_filter(x * y, g) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(ssim))


def box_ssim(a: np.ndarray, b: np.ndarray, box: Box) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, range 255) inside ``box``, channel mean.

    Only window positions fully inside the box count; a box under 11 px on a
    side is taken as a single window.
    """
    a, b = _check_images(a, b)
    box = _check_box(box, a.shape)
    ca = _crop(a, box).astype(np.float64)
    cb = _crop(b, box).astype(np.float64)
    if ca.ndim == 2:
        ca, cb = ca[..., None], cb[..., None]
    return float(np.mean([_ssim_channel(ca[..., c], cb[..., c]) for c in range(ca.shape[2])]))


def laplacian_sharpness(image: np.ndarray, box: Box) -> float:
    """Variance of the 3x3 Laplacian (``cv2.Laplacian``, CV_64F) of the grey crop inside ``box``."""
    import cv2  # noqa: PLC0415

    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise InputError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    box = _check_box(box, img.shape)
    crop = np.ascontiguousarray(_crop(img, box))
    if crop.dtype != np.uint8:
        crop = np.clip(np.nan_to_num(crop.astype(np.float64)), 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


# ---------------------------------------------------------------- landmark metrics


def _eye_distance(pts: np.ndarray) -> np.ndarray:
    """Outer eye-corner distance per frame of ``(..., P, 2)`` points; 0 becomes NaN."""
    d = np.linalg.norm(pts[..., EYE_OUTER_LEFT, :] - pts[..., EYE_OUTER_RIGHT, :], axis=-1)
    return np.where(d > 0, d, np.nan)


def lip_gap(landmarks: np.ndarray) -> np.ndarray | float:
    """Inner-lip gap ``|p13 - p14|`` over the outer eye-corner distance ``|p33 - p263|``.

    ``(478, 2)`` gives a float, ``(N, 478, 2)`` an ``(N,)`` array; NaN rows give NaN.
    """
    arr = np.asarray(landmarks, dtype=np.float64)
    pts = _frame_points(arr)[None] if arr.ndim == 2 else _clip_points(arr)
    gap = np.linalg.norm(pts[:, LIP_INNER_TOP] - pts[:, LIP_INNER_BOTTOM], axis=-1)
    out = gap / _eye_distance(pts)
    return float(out[0]) if arr.ndim == 2 else out


def mouth_lmd(gen: np.ndarray, real: np.ndarray, normalize: bool = False) -> float:
    """Mouth landmark distance: mean point distance between centred lip shapes, averaged over frames.

    Each frame's lip points have their own centroid removed (head translation
    does not count). Frames with NaN in either clip are skipped; NaN if all
    are. Pixels, or fractions of the real frame's eye-corner distance with
    ``normalize``.
    """
    g = np.asarray(gen, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    g = _frame_points(g)[None] if g.ndim == 2 else _clip_points(g)
    r = _frame_points(r)[None] if r.ndim == 2 else _clip_points(r)
    if len(g) != len(r):
        raise InputError(f"generated and real clips have {len(g)} and {len(r)} frames",
                         "compare the same frames: trim both clips to one length")
    gl, rl = g[:, list(LIPS)], r[:, list(LIPS)]
    gl = gl - gl.mean(axis=1, keepdims=True)
    rl = rl - rl.mean(axis=1, keepdims=True)
    dist = np.linalg.norm(gl - rl, axis=-1).mean(axis=1)  # (N,), NaN where either frame has NaN
    if normalize:
        dist = dist / _eye_distance(r)
    dist = dist[np.isfinite(dist)]
    return float(dist.mean()) if dist.size else float("nan")


# ---------------------------------------------------------------- series


def _series(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"expected a 1-D series for {name}, got shape {arr.shape}")
    return arr


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over pairs where both are finite; NaN with under 3 pairs or zero variance."""
    x, y = _series(x, "x"), _series(y, "y")
    if len(x) != len(y):
        raise InputError(f"pearson needs series of one length, got {len(x)} and {len(y)}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    xs, ys = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(np.dot(xs, xs)) * float(np.dot(ys, ys)))
    if den <= 0.0:
        return float("nan")
    return float(np.clip(np.dot(xs, ys) / den, -1.0, 1.0))


def _lagged_r(gen: np.ndarray, real: np.ndarray, lag: int) -> float:
    """Pearson of ``gen[t + lag]`` against ``real[t]`` over the ``t`` where both exist."""
    t0 = max(0, -lag)
    t1 = min(len(real), len(gen) - lag)
    if t1 - t0 < 3:
        return float("nan")
    return pearson(gen[t0 + lag:t1 + lag], real[t0:t1])


def lagged_pearson(gen: np.ndarray, real: np.ndarray, max_lag: int = 5) -> tuple[float, float, int]:
    """``(r at lag 0, best r over lags -max_lag..max_lag, that lag)``.

    Lag ``k > 0`` means the generated series is late by ``k`` frames: it
    compares ``gen[t + k]`` with ``real[t]``. Ties go to the smallest ``|k|``.
    With no valid lag the best r is NaN at lag 0.
    """
    gen, real = _series(gen, "gen"), _series(real, "real")
    if int(max_lag) != max_lag or max_lag < 0:
        raise InputError(f"max_lag must be a non-negative integer, got {max_lag}")
    r0 = _lagged_r(gen, real, 0)
    best_r, best_lag = float("nan"), 0
    for lag in sorted(range(-int(max_lag), int(max_lag) + 1), key=lambda k: (abs(k), k)):
        r = _lagged_r(gen, real, lag)
        if math.isfinite(r) and (not math.isfinite(best_r) or r > best_r + 1e-12):
            best_r, best_lag = r, lag
    return r0, best_r, best_lag


def face_found_fraction(found: np.ndarray) -> float:
    """Fraction of frames where a face was found; NaN for no frames."""
    arr = np.asarray(found, dtype=bool).ravel()
    return float(arr.mean()) if arr.size else float("nan")


# ---------------------------------------------------------------- identity (optional)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors; NaN if either is zero or not finite."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"cosine_similarity needs vectors of one length, got {a.size} and {b.size}")
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if not (den > 0 and math.isfinite(den)):
        return float("nan")
    return float(np.clip(np.dot(a, b) / den, -1.0, 1.0))


class IdentityEmbedder:
    """dlib's 128-d face descriptor (ResNet, from face-recognition-models) for CSIM; optional."""

    INSTALL_HINT = "pip install dlib-bin face-recognition-models 'setuptools<81'"

    @staticmethod
    def available() -> str | None:
        """None if dlib and face_recognition_models import, else why not."""
        try:
            import dlib  # noqa: F401, PLC0415
            import face_recognition_models  # noqa: F401, PLC0415
        except Exception as e:  # noqa: BLE001 - ImportError, or pkg_resources missing inside the models package
            return f"dlib and face-recognition-models are not installed ({IdentityEmbedder.INSTALL_HINT}): {e}"
        return None

    def __init__(self) -> None:
        reason = self.available()
        if reason is not None:
            raise BackendUnavailable(reason, self.INSTALL_HINT)
        import dlib  # noqa: PLC0415
        import face_recognition_models as frm  # noqa: PLC0415

        self._dlib = dlib
        self._encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())

    def embed(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The ``(128,)`` descriptor of the face in ``box`` of an RGB uint8 image."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
        img = np.ascontiguousarray(img if img.dtype == np.uint8 else np.clip(img, 0, 255).astype(np.uint8))
        x0, y0, x1, y1 = _check_box(box, img.shape)
        rect = self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)  # dlib rectangles include right/bottom
        shape = self._shape(img, rect)
        return np.asarray(self._encoder.compute_face_descriptor(img, shape), dtype=np.float64)


def perceptual_metrics_unavailable() -> str:
    """Why LPIPS, FID and FVD are not reported by default."""
    return ("LPIPS, FID and FVD are not reported: they need pretrained backbone weights (VGG/AlexNet for LPIPS, "
            "Inception for FID, I3D for FVD) that cannot be downloaded here; LPIPS is reported when a local "
            "VGG16 weights file is passed (evaluate --lpips-vgg), and a random backbone is never reported.")
