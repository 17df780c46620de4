"""The mouth-aperture plan of a keyframe model (``aperture_bins > 0``).

A keyframe's mouth opening (truth openness, 0 closed .. 1 widest) is cut into
``bins`` equal bins. In training the unit token learns to predict its
keyframe's bin, and the keyframe's [B] and frame tokens all read the true bin
(an embedding added to each); in decoding they read the predicted one. The
plan is one discrete decision per keyframe that every generated cell reads.
"""

from __future__ import annotations

import numpy as np
import torch

from .layout import TokenMeta


def openness_bins(openness: np.ndarray | torch.Tensor | list[float], bins: int) -> torch.Tensor:
    """Bin index ``[N]`` of each openness in [0, 1] (values outside are clipped)."""
    x = torch.as_tensor(np.asarray(openness, dtype=np.float64))
    return (x * bins).floor().long().clamp(0, bins - 1)


def bin_centres(bins: int) -> torch.Tensor:
    """The openness each bin stands for (its centre), ``[bins]``."""
    return (torch.arange(bins, dtype=torch.float32) + 0.5) / bins


def segment_apertures(meta: TokenMeta, per_segment: torch.Tensor) -> torch.Tensor:
    """Per-token aperture ``[..., L]``: every token of segment i holds ``per_segment[i]``; prefix and
    padding hold -1. The model reads it at [B] and frame tokens and is trained to predict it at unit tokens."""
    seg = meta.segment
    values = per_segment.to(seg.device)[seg.clamp(min=0)]
    return torch.where(seg >= 0, values, torch.full_like(values, -1))
