"""Keyframe metrics: SSIM and the mouth state measured from pixels (PSNR: ``tokenizers.losses.psnr``).

Images are float tensors ``[N, 3, H, W]`` in [-1, 1] (or uint8 ``[N, H, W, 3]``,
converted by ``to_unit``). Mouth state: each generated keyframe's mouth
descriptor (grey zero-mean crop of the mouth box) is matched to the nearest
descriptor among all ground-truth frames of the same clip (same identity,
each frame cut at its own mouth box); the matched frame's viseme class and
openness are the measured state. A keyframe counts as correct when that
viseme equals the ground truth's, or (openness accuracy) when the openness
differs by at most ``openness_tol``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_unit(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in [-1, 1] -> float ``[N, 3, H, W]`` in [0, 1]."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float() / 255.0
    return ((x.float() + 1) / 2).clamp(0, 1)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of [0, 1] images (Gaussian window, averaged over channels)."""
    coords = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(a.device)
    c = a.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


MOUTH_SHAPE = (16, 24)  # rows, cols of a mouth descriptor


def mouth_descriptors(images: np.ndarray | torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """Grey, zero-mean ``16 x 24`` mouth crops, flattened: ``[N, 384]``.

    ``images``: uint8 ``[N, S, S, 3]`` or float ``[N, 3, S, S]`` in [0, 1]; ``boxes``: ``[N, 4]``
    (x0, y0, x1, y1) in pixels (tokenizers.data.mouth_box).
    """
    x = to_unit(images) if (isinstance(images, np.ndarray) or images.dtype == torch.uint8) else images.float()
    out = []
    for img, (x0, y0, x1, y1) in zip(x, np.asarray(boxes, dtype=np.int64)):
        x1, y1 = max(int(x1), int(x0) + 1), max(int(y1), int(y0) + 1)
        patch = img[:, int(y0):y1, int(x0):x1].mean(0, keepdim=True)[None]
        patch = F.interpolate(patch, size=MOUTH_SHAPE, mode="bilinear", align_corners=False).flatten()
        out.append((patch - patch.mean()).numpy())
    return np.stack(out) if out else np.zeros((0, MOUTH_SHAPE[0] * MOUTH_SHAPE[1]), np.float32)


def mouth_states(generated: torch.Tensor, key_boxes: np.ndarray, truth: dict[str, np.ndarray],
                 key_frames: list[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Measured (nearest ground-truth frame's) and true viseme / openness of each keyframe.

    ``generated``: ``[N, 3, S, S]`` in [0, 1]; ``key_boxes``: the mouth box of the frame each keyframe
    stands for; ``truth``: ``bank`` (every frame's ``mouth_descriptors``), ``viseme``, ``openness``
    per frame of the clip; ``key_frames``: the frame index of each keyframe.
    """
    key_frames = np.asarray(key_frames, dtype=np.int64)
    gen = torch.from_numpy(mouth_descriptors(generated, key_boxes)).float()
    bank = torch.as_tensor(np.asarray(truth["bank"], dtype=np.float32))
    nearest = torch.cdist(gen[None], bank[None])[0].argmin(1).numpy()
    vis, op = np.asarray(truth["viseme"]), np.asarray(truth["openness"])
    return {"viseme_pred": vis[nearest], "viseme_true": vis[key_frames],
            "open_pred": op[nearest], "open_true": op[key_frames]}


def pixel_openness(images: torch.Tensor, landmarks: np.ndarray) -> np.ndarray:
    """Lip gap measured from the pixels (data.measure.mouth_openness_from_pixels, in inter-ocular
    distances) of ``[N, 3, S, S]`` images in [0, 1] with renderer landmarks ``[N, K, 2]`` in the same
    pixel frame; NaN where it cannot be measured."""
    from ..data.measure import mouth_openness_from_pixels

    rgb = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = np.full(len(rgb), np.nan)
    for i, (img, lm) in enumerate(zip(rgb, np.asarray(landmarks, dtype=np.float64))):
        try:
            out[i] = mouth_openness_from_pixels(img, lm)
        except Exception:  # noqa: BLE001 - a failed measurement counts as a miss
            pass
    return out


def mouth_accuracy(states: dict[str, np.ndarray], openness_tol: float = 0.15) -> dict[str, float]:
    return {
        "mouth_viseme_acc": float(np.mean(states["viseme_pred"] == states["viseme_true"])),
        "mouth_open_acc": float(np.mean(np.abs(states["open_pred"] - states["open_true"]) <= openness_tol)),
        # mean measured minus true openness: < 0 when the generated mouths are too closed
        "mouth_open_bias": float(np.mean(states["open_pred"] - states["open_true"])),
    }
