"""Frame metrics for self-reenactment evaluation (avatarsync/evaluate/metrics.py)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from avatarsync.errors import BackendUnavailable, InputError
from avatarsync.evaluate.metrics import (EYE_OUTER_LEFT, EYE_OUTER_RIGHT, FACE_OVAL, LIP_INNER_BOTTOM, LIP_INNER_TOP, LIPS,
                                         IdentityEmbedder, box_psnr, box_ssim, cosine_similarity, face_box,
                                         face_found_fraction, lagged_pearson, laplacian_sharpness, lip_gap, mouth_box,
                                         mouth_lmd, pearson, perceptual_metrics_unavailable)

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def make_landmarks(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A hand-made 478-point mesh: face oval x 20..80, y 10..90; lips x 40..60, y 60..70; eyes 30 px apart."""
    pts = np.full((478, 2), 50.0)
    t = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    pts[list(FACE_OVAL)] = np.stack([50 + 30 * np.sin(t), 50 - 40 * np.cos(t)], axis=1)
    pts[FACE_OVAL[0]] = [50, 10]  # top
    pts[FACE_OVAL[9]] = [80, 50]  # right
    pts[FACE_OVAL[18]] = [50, 90]  # bottom (152, the chin)
    pts[FACE_OVAL[27]] = [20, 50]  # left
    s = np.linspace(0, 2 * np.pi, len(LIPS), endpoint=False)
    pts[list(LIPS)] = np.stack([50 + 10 * np.cos(s), 65 + 5 * np.sin(s)], axis=1)
    pts[LIP_INNER_TOP] = [50, 64]
    pts[LIP_INNER_BOTTOM] = [50, 67]  # gap 3
    pts[EYE_OUTER_LEFT] = [35, 40]
    pts[EYE_OUTER_RIGHT] = [65, 40]  # eye distance 30
    return pts + [dx, dy]


# ---------------------------------------------------------------- constants


def test_index_tables() -> None:
    assert len(FACE_OVAL) == 36 and len(set(FACE_OVAL)) == 36
    assert len(LIPS) == 40 and len(set(LIPS)) == 40
    assert LIP_INNER_TOP in LIPS and LIP_INNER_BOTTOM in LIPS
    assert (LIP_INNER_TOP, LIP_INNER_BOTTOM, EYE_OUTER_LEFT, EYE_OUTER_RIGHT) == (13, 14, 33, 263)


# ---------------------------------------------------------------- boxes


def test_face_box_is_half_open_bbox() -> None:
    lm = make_landmarks()
    assert face_box(lm, (100, 100, 3)) == (20, 10, 81, 91)
    assert face_box(lm + 0.5, (100, 100)) == (20, 10, 81, 91)


def test_face_box_clips_to_image() -> None:
    lm = make_landmarks(dx=-30, dy=20)  # x -10..50, y 30..110
    assert face_box(lm, (100, 60, 3)) == (0, 30, 51, 100)


def test_face_box_bad_input() -> None:
    with pytest.raises(InputError):
        face_box(make_landmarks(dx=500), (100, 100))  # entirely outside
    lm = make_landmarks()
    lm[list(FACE_OVAL)] = [50, 50]
    with pytest.raises(InputError):
        face_box(lm, (100, 100))  # degenerate
    lm = make_landmarks()
    lm[FACE_OVAL[3]] = np.nan
    with pytest.raises(InputError):
        face_box(lm, (100, 100))
    with pytest.raises(InputError):
        face_box(np.zeros((68, 2)), (100, 100))


def test_mouth_box_margin_and_clip() -> None:
    lm = make_landmarks()  # lips x 40..60 (width 20), y 60..70
    assert mouth_box(lm, (100, 100), margin=0.0) == (40, 60, 61, 71)
    assert mouth_box(lm, (100, 100)) == (35, 55, 66, 76)  # 0.25 * 20 = 5 px each side
    assert mouth_box(lm, (100, 100), margin=1.0) == (20, 40, 81, 91)
    assert mouth_box(lm, (72, 62), margin=1.0) == (20, 40, 62, 72)
    with pytest.raises(InputError):
        mouth_box(lm, (100, 100), margin=-0.1)


# ---------------------------------------------------------------- PSNR / SSIM


def test_box_psnr_only_inside_box() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 246, (40, 50, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # wildly different outside the box
    box = (10, 5, 30, 25)
    b[5:25, 10:30] = a[5:25, 10:30] + 10
    assert box_psnr(a, b, box) == pytest.approx(10 * math.log10(65025 / 100), abs=1e-9)
    assert box_psnr(a, b, box) == pytest.approx(28.1308, abs=1e-4)


def test_box_psnr_identical_is_capped() -> None:
    a = np.full((8, 8, 3), 7, np.uint8)
    assert box_psnr(a, a, (0, 0, 8, 8)) == pytest.approx(10 * math.log10(65025 / 1e-10))
    with pytest.raises(InputError):
        box_psnr(a, a, (0, 0, 9, 8))
    with pytest.raises(InputError):
        box_psnr(a, a, (4, 0, 4, 8))
    with pytest.raises(InputError):
        box_psnr(a, a[:4], (0, 0, 4, 4))


def test_box_ssim_identical_is_one() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert box_ssim(a, a, (3, 2, 35, 28)) == pytest.approx(1.0, abs=1e-12)
    assert box_ssim(a, a, (3, 2, 8, 9)) == pytest.approx(1.0, abs=1e-12)  # smaller than the window


@pytest.mark.parametrize("box", [(0, 0, 20, 20), (2, 3, 9, 8)])  # windowed, and one whole-box window
def test_box_ssim_flat_offset(box) -> None:
    a = np.full((20, 20, 3), 100, np.uint8)
    b = np.full((20, 20, 3), 110, np.uint8)
    # Zero variance and covariance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) * C2 / C2.
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)
    assert expected == pytest.approx(0.99547, abs=1e-5)
    assert box_ssim(a, b, box) == pytest.approx(expected, abs=1e-9)


def test_box_ssim_box_only_and_channels_averaged() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    b = a.copy()
    b[:, :, 1] = 255 - a[:, :, 1]  # one channel inverted: strongly negative SSIM there
    b[:, 20:] = rng.integers(0, 256, (30, 10, 3), dtype=np.uint8)  # outside the box
    box = (0, 0, 20, 30)
    inverted = box_ssim(a[..., 1:2], b[..., 1:2], box)
    assert inverted < -0.5
    assert box_ssim(a, b, box) == pytest.approx((1.0 + inverted + 1.0) / 3, abs=1e-12)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """skimage's algorithm (gaussian_filter over the image, 5 px border cropped) rebuilt on scipy."""
    from scipy.ndimage import gaussian_filter

    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
        vals.append(s.mean())
    return float(np.mean(vals))


def _noisy_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (37, 45, 3)).astype(np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_box_ssim_matches_scipy_reference() -> None:
    a, b = _noisy_pair(3)
    box = (4, 3, 41, 33)
    crop = (slice(3, 33), slice(4, 41))
    assert box_ssim(a, b, box) == pytest.approx(_reference_ssim(a[crop], b[crop]), abs=1e-10)


def test_box_ssim_matches_skimage() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _noisy_pair(4)
    box = (4, 3, 41, 33)
    crop = (slice(3, 33), slice(4, 41))
    ref = metrics.structural_similarity(a[crop], b[crop], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255, channel_axis=2)
    assert box_ssim(a, b, box) == pytest.approx(ref, abs=1e-7)


# ---------------------------------------------------------------- lip gap / LMD


def test_lip_gap_frame_and_clip() -> None:
    lm = make_landmarks()
    assert lip_gap(lm) == pytest.approx(3 / 30)
    assert isinstance(lip_gap(lm), float)
    clip = np.stack([lm, lm, lm])
    clip[1, LIP_INNER_BOTTOM] = [54, 67]  # gap |(50,64)-(54,67)| = 5
    clip[2] = np.nan  # missed detection
    gaps = lip_gap(clip)
    assert gaps.shape == (3,)
    assert gaps[:2] == pytest.approx([0.1, 5 / 30])
    assert np.isnan(gaps[2])
    with pytest.raises(InputError):
        lip_gap(np.zeros((3, 68, 2)))


def test_mouth_lmd_translation_is_free() -> None:
    real = np.stack([make_landmarks(), make_landmarks(dx=2)])
    gen = np.stack([make_landmarks(dx=7, dy=-3), make_landmarks(dx=-5, dy=11)])
    assert mouth_lmd(gen, real) == pytest.approx(0.0, abs=1e-12)


def test_mouth_lmd_one_point_moved() -> None:
    real = make_landmarks()[None]
    gen = real.copy()
    gen[0, LIPS[7], 0] += 3.0
    n = len(LIPS)
    # Centring moves the centroid by 3/n: the moved point differs by 3(n-1)/n, the other n-1 by 3/n each.
    expected = (3 * (n - 1) / n + (n - 1) * 3 / n) / n
    assert expected == pytest.approx(0.14625)
    assert mouth_lmd(gen, real) == pytest.approx(expected)
    assert mouth_lmd(gen, real, normalize=True) == pytest.approx(expected / 30)


def test_mouth_lmd_skips_nan_frames() -> None:
    real = np.stack([make_landmarks()] * 3)
    gen = real.copy()
    gen[0, LIPS[7], 0] += 3.0
    gen[1] = np.nan
    real[2, LIPS[0]] = np.nan
    assert mouth_lmd(gen, real) == pytest.approx(0.14625)  # only frame 0 counts
    assert math.isnan(mouth_lmd(gen[1:], real[1:]))
    with pytest.raises(InputError):
        mouth_lmd(gen[:2], real)


# ---------------------------------------------------------------- correlation


def test_pearson() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # hand-computed: 4 / 5
    assert math.isnan(pearson([1, 2, np.nan], [1, 2, 3]))  # two pairs left
    assert math.isnan(pearson([1, 2, 3, 4], [5, 5, 5, 5]))  # zero variance
    with pytest.raises(InputError):
        pearson([1, 2, 3], [1, 2])


def test_lagged_pearson_generated_late() -> None:
    rng = np.random.default_rng(5)
    real = rng.standard_normal(60)
    gen = np.concatenate([rng.standard_normal(2), real[:-2]])  # gen[t + 2] == real[t]
    r0, best, lag = lagged_pearson(gen, real, max_lag=5)
    assert lag == 2
    assert best == pytest.approx(1.0, abs=1e-12)
    assert r0 < 0.5


def test_lagged_pearson_generated_early() -> None:
    rng = np.random.default_rng(6)
    real = rng.standard_normal(60)
    gen = np.concatenate([real[3:], rng.standard_normal(3)])  # gen[t - 3] == real[t]
    r0, best, lag = lagged_pearson(gen, real, max_lag=5)
    assert (lag, round(best, 12)) == (-3, 1.0)
    assert r0 < 0.5
    _, _, lag_small = lagged_pearson(gen, real, max_lag=2)  # the true lag out of range
    assert abs(lag_small) <= 2


def test_lagged_pearson_ties_and_nan() -> None:
    t = np.arange(40, dtype=np.float64)
    r0, best, lag = lagged_pearson(t, t, max_lag=4)  # a line correlates perfectly at every lag
    assert (r0, best, lag) == (pytest.approx(1.0), pytest.approx(1.0), 0)
    r0, best, lag = lagged_pearson(np.full(10, np.nan), t[:10])
    assert math.isnan(r0) and math.isnan(best) and lag == 0
    with pytest.raises(InputError):
        lagged_pearson(t, t, max_lag=-1)


def test_face_found_fraction() -> None:
    assert face_found_fraction(np.array([True, False, True, True])) == 0.75
    assert math.isnan(face_found_fraction(np.array([], dtype=bool)))


# ---------------------------------------------------------------- sharpness


def test_laplacian_sharpness() -> None:
    import cv2

    assert laplacian_sharpness(np.full((32, 32, 3), 128, np.uint8), (0, 0, 32, 32)) == 0.0
    yy, xx = np.mgrid[:32, :32]
    board = np.where(((yy // 4) + (xx // 4)) % 2 == 0, 230, 20).astype(np.uint8)
    board = np.repeat(board[..., None], 3, axis=2)
    blurred = cv2.GaussianBlur(board, (7, 7), 2.0)
    box = (4, 4, 28, 28)
    sharp, soft = laplacian_sharpness(board, box), laplacian_sharpness(blurred, box)
    assert sharp > 2 * soft > 0
    # Sharpness counts only the box: a flat box in a busy image is 0.
    board[8:20, 8:20] = 77
    assert laplacian_sharpness(board, (8, 8, 20, 20)) == 0.0


# ---------------------------------------------------------------- identity / perceptual


def test_cosine_similarity() -> None:
    assert cosine_similarity([1, 0, 0], [2, 0, 0]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine_similarity([1, 1], [-1, -1]) == pytest.approx(-1.0)
    assert cosine_similarity([3, 4], [4, 3]) == pytest.approx(24 / 25)
    assert math.isnan(cosine_similarity([0, 0], [1, 2]))
    with pytest.raises(InputError):
        cosine_similarity([1, 2], [1, 2, 3])


def test_identity_embedder() -> None:
    reason = IdentityEmbedder.available()
    if reason is not None:
        assert "dlib" in reason and "pip install" in reason
        with pytest.raises(BackendUnavailable):
            IdentityEmbedder()
        pytest.skip(reason)
    embedder = IdentityEmbedder()
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)
    vec = embedder.embed(img, (20, 20, 100, 100))
    assert vec.shape == (128,) and np.all(np.isfinite(vec))
    assert cosine_similarity(vec, embedder.embed(img, (20, 20, 100, 100))) == pytest.approx(1.0)


def test_perceptual_metrics_sentence() -> None:
    text = perceptual_metrics_unavailable()
    for word in ("LPIPS", "FID", "FVD", "VGG", "Inception", "I3D", "random"):
        assert word in text


def test_import_is_light() -> None:
    code = ("import sys, avatarsync.evaluate.metrics; "
            "print(sorted(m for m in ('cv2', 'scipy', 'torch', 'dlib', 'skimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
