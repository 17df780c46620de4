"""Measurements taken from rendered pixels (not from the state that drew them).

``mouth_openness_from_pixels`` looks at a narrow vertical band through the
mouth centre (located from the landmarks) and measures, per pixel column, the
height of the run of mouth-cavity pixels (dark interior or teeth, told
from the red lips by their red-minus-green) found at the lip line; the median over the columns,
divided by the inter-ocular distance, is the openness. It works on any
renderer output and on decoded video frames of it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .render import (LM_CHIN, LM_LEFT_EYE, LM_LOWER_LIP, LM_MOUTH_LEFT, LM_MOUTH_RIGHT, LM_NOSE_TIP, LM_RIGHT_EYE,
                     LM_UPPER_LIP, NUM_LANDMARKS)


class MeasureError(InputError):
    """Bad image or landmarks passed to a pixel measurement."""


_CAVITY_RG = 15.0  # red-minus-green of the mouth cavity (dark interior ~26, teeth ~4)


def cavity_weights(rgb: np.ndarray, lip_rg: float) -> np.ndarray:
    """Per-pixel fraction 0..1 of mouth cavity (dark interior or teeth) versus lip.

    Lips are always red-dominant (red minus green ``lip_rg``, redder than the
    skin) while the cavity and teeth are not, so a linear unmixing along
    red-minus-green gives the cavity coverage of each pixel, including the
    anti-aliased pixels at the lip edges.
    """
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    return np.clip((lip_rg - rg) / max(lip_rg - _CAVITY_RG, 10.0), 0.0, 1.0)


def mouth_openness_from_pixels(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Lip gap measured from the pixels, in inter-ocular distances (0 for a closed mouth)."""
    image = np.asarray(image)
    lm = np.asarray(landmarks, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MeasureError(f"image must be (H, W, 3) RGB, got shape {image.shape}", "pass one rendered frame")
    if lm.ndim != 2 or lm.shape[0] < NUM_LANDMARKS or lm.shape[1] != 2:
        raise MeasureError(f"landmarks must be ({NUM_LANDMARKS}, 2), got shape {lm.shape}",
                           "pass RenderedFrame.landmarks")
    h, w = image.shape[:2]
    eye_d = float(np.hypot(*(lm[LM_RIGHT_EYE] - lm[LM_LEFT_EYE])))
    if eye_d < 2.0:
        raise MeasureError("eye landmarks coincide; cannot set the scale", "check the landmark order")
    left, right = lm[LM_MOUTH_LEFT], lm[LM_MOUTH_RIGHT]
    cx = 0.5 * (left[0] + right[0])
    up, lo = lm[LM_UPPER_LIP], lm[LM_LOWER_LIP]
    seed = 0.5 * (up[1] + lo[1])  # middle of the lips (outer contour), where a gap opens
    reach = 0.25 * abs(lo[1] - up[1]) + 1.0
    top = int(np.clip(np.floor(max(lm[LM_NOSE_TIP][1] + 1.0, up[1] - 2.0)), 0, h - 1))
    bottom = int(np.clip(np.ceil(min(lm[LM_CHIN][1], lo[1] + 2.0)), top + 1, h))
    half = max(1, int(round(0.12 * eye_d)))
    x0, x1 = int(np.clip(round(cx) - half, 0, w - 1)), int(np.clip(round(cx) + half + 1, 1, w))
    band = image[top:bottom, x0:x1]
    rg = band[..., 0].astype(np.float32) - band[..., 1].astype(np.float32)
    lip_rg = float(np.percentile(rg, 90))  # the lips are the reddest thing around the mouth
    wts = cavity_weights(band, lip_rg)  # (rows, cols)
    s = int(np.clip(round(seed) - top, 0, wts.shape[0] - 1))
    heights = []
    for col in wts.T:
        on = col > 0.3
        # start from the cavity pixel nearest the lip line (within a small search), grow up and down
        start = -1
        for d in range(0, int(reach) + 1):
            for k in (s + d, s - d):
                if 0 <= k < len(col) and on[k]:
                    start = k
                    break
            if start >= 0:
                break
        if start < 0:
            heights.append(0.0)
            continue
        a = start
        while a > 0 and on[a - 1]:
            a -= 1
        b = start
        while b + 1 < len(col) and on[b + 1]:
            b += 1
        heights.append(float(col[a:b + 1].sum()))
    return float(np.median(heights)) / eye_d
