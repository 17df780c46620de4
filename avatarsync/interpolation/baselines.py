"""Reference interpolators the model must beat: nearest keyframe and linear cross-fade.

Both work on any tensors shaped (B, ...) (latents or images) with tau (B,).
"""

from __future__ import annotations

import torch


def _expand(tau: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tau.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def nearest_keyframe(a: torch.Tensor, b: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Show keyframe A until the midpoint, then keyframe B (ties at tau = 0.5 go to B)."""
    return torch.where(_expand(tau, a) < 0.5, a, b)


def linear_crossfade(a: torch.Tensor, b: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """(1 - tau) * a + tau * b."""
    t = _expand(tau, a)
    return (1 - t) * a + t * b


BASELINES = {"nearest": nearest_keyframe, "crossfade": linear_crossfade}
