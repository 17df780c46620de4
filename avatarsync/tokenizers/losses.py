"""Tokenizer training losses: pixel (PSNR, mouth box) and adversarial (PatchGAN hinge).

The perceptual term (``TokenizerLossConfig.perceptual_kind`` / ``lpips_backbone``)
comes from :mod:`avatarsync.perceptual`, shared with the keyframe model's stage 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR in dB of images ``[B, C, H, W]`` in [-1, 1] (peak-to-peak 2; values outside are
    clamped); ``mask`` [B, 1, H, W] selects pixels. The package's one PSNR of tensors: callers with
    [0, 1] or uint8 images convert (``x * 2 - 1``, ``x / 127.5 - 1``)."""
    err = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.float().expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, 4] integer (x0, y0, x1, y1) boxes -> [B, 1, H, W] float masks."""
    ys = torch.arange(height, device=boxes.device)[None, :, None]
    xs = torch.arange(width, device=boxes.device)[None, None, :]
    b = boxes.long()
    m = (xs >= b[:, 0, None, None]) & (xs < b[:, 2, None, None]) & (ys >= b[:, 1, None, None]) & (ys < b[:, 3, None, None])
    return m[:, None].float()


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: strided 4x4 convs, GroupNorm, LeakyReLU; one logit per patch."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers):
            c2 = min(channels * 2 ** i, channels * 8)
            mods += [nn.Conv2d(c, c2, 4, 2, 1, bias=False), nn.GroupNorm(min(32, c2 // 4), c2), nn.LeakyReLU(0.2)]
            c = c2
        mods += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def generator_hinge(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Generator GAN loss with the discriminator's parameters detached, so one optimiser can step both nets."""
    params = {k: v.detach() for k, v in disc.named_parameters()}
    params.update(dict(disc.named_buffers()))
    return -torch.func.functional_call(disc, params, (fake,)).mean()


def discriminator_hinge(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator; ``fake`` is detached so the generator gets no gradient from it."""
    return F.relu(1 - disc(real)).mean() + F.relu(1 + disc(fake.detach())).mean()
