"""Perceptual losses, the one set every stage uses (tokenizer training, FKG stage 2, evaluation).

Images are ``[N, 3, H, W]`` in [-1, 1]; every loss returns a scalar, the mean
over the batch. Kinds (``build_perceptual``):

- ``lpips``: the lpips package's LPIPS with its calibrated linear heads
  (shipped in the wheel) on a backbone loaded from a local torchvision
  ``features`` state dict (VGG16, AlexNet or SqueezeNet, ``net``; keys
  ``features.N.*`` or ``N.*``). Nothing is downloaded.
- ``vgg``: the same VGG16 backbone without the heads: mean squared difference
  of unit-normalised relu1_2..relu5_3 features (when lpips is not installed).
- ``fallback`` (no weights needed, the CPU default): the weight-free stand-in,
  L1 between Laplacian pyramids (5 levels, each band-pass level weighted
  equally) plus L1 between horizontal and vertical image gradients. It rewards
  sharp edges and fine structure the way a perceptual loss does and costs a
  few convolutions.
- ``auto``: ``lpips`` when weights are given and lpips is installed, else
  ``vgg`` when weights are given (VGG16 only), else ``fallback``.

Each module's ``kind`` attribute names what it is (``lpips-vgg``, ``vgg``,
``fallback``). Recipes: the tokenizer's ``loss.perceptual_kind`` /
``loss.lpips_backbone``, FKG stage 2's ``loss.lpips_weights`` /
``loss.lpips_net`` (always ``auto``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import BackendUnavailable, CheckpointError, InputError
from .weights import read_state_dict

log = logging.getLogger("avatarsync.perceptual")

KINDS = ("auto", "lpips", "vgg", "fallback")
# Slices of torchvision's vgg16().features ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


class PyramidGradientLoss(nn.Module):
    """Weight-free perceptual stand-in: Laplacian-pyramid L1 + image-gradient L1 (see module docstring)."""

    kind = "fallback"

    def __init__(self, levels: int = 5) -> None:
        super().__init__()
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = torch.outer(k, k) / 256.0
        self.register_buffer("kernel", k[None, None].repeat(3, 1, 1, 1), persistent=False)
        self.levels = levels

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel.to(x.dtype), groups=3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y  # the pyramid and the gradients are linear: decompose the difference once
        loss = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean() + (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean()
        d = diff
        for _ in range(self.levels - 1):
            if min(d.shape[-2:]) < 4:
                break
            low = self._blur(d)
            loss = loss + (d - low).abs().mean()
            d = low[..., ::2, ::2]
        return loss + d.abs().mean()


def _features_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision ``features`` state dict from a local file, keys ``N.*`` (``features.`` dropped)."""
    sd = read_state_dict(path, "perceptual backbone weights",
                         "set the loss's backbone path to a local torchvision state dict, or use the fallback")
    return {k[len("features."):] if k.startswith("features.") else k: v for k, v in sd.items()}


def _vgg_features(path: str | Path) -> nn.Module:
    """torchvision VGG16 ``features`` loaded from a local file (keys ``features.N.*`` or ``N.*``)."""
    from torchvision.models import vgg16

    feats = vgg16(weights=None).features[:30]
    sd = {k: v for k, v in _features_state(path).items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 30}
    missing, _ = feats.load_state_dict(sd, strict=False)
    if missing:
        raise CheckpointError(f"{path} is not a VGG16 state dict (missing {missing[:3]}...)",
                              "save torchvision.models.vgg16(...).state_dict() to a file")
    return feats.eval().requires_grad_(False)


class VGGFeatureLoss(nn.Module):
    """Mean squared difference of unit-normalised VGG16 features (LPIPS without its learned heads)."""

    kind = "vgg"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        feats = _vgg_features(path)
        self.slices = nn.ModuleList([feats[a:b] for a, b in _VGG_SLICES])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[None, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, y]).add(1).div(2).sub(self.mean).div(self.std)
        loss = x.new_zeros(())
        for s in self.slices:
            h = s(h)
            a, b = h.chunk(2)
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            loss = loss + ((a - b) ** 2).sum(1).mean()
        return loss


def lpips_available() -> bool:
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    return True


class LPIPSLoss(nn.Module):
    """lpips.LPIPS (``net``: vgg, alex or squeeze) with its shipped heads and a backbone loaded from a
    local torchvision ``features`` state dict; frozen, in eval mode."""

    def __init__(self, weights: str | Path, net: str = "vgg") -> None:
        super().__init__()
        try:
            import lpips
        except ImportError as e:
            raise BackendUnavailable(f"lpips is not installed ({e})",
                                     "pip install lpips, or use the vgg or fallback perceptual loss") from None
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's pretrained= deprecation notes
            self.net = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        state = _features_state(weights)
        target = {}
        for name in self.net.net.state_dict():
            _, idx, rest = name.split(".", 2)  # sliceK.<features index>.<param>
            key = f"{idx}.{rest}"
            if key not in state:
                raise CheckpointError(f"{weights} has no tensor for LPIPS backbone parameter {name} "
                                      f"(expected features.{key})", f"save a torchvision {net} state dict")
            target[name] = state[key]
        self.net.net.load_state_dict(target)
        self.kind = f"lpips-{net}"
        self.net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y, normalize=False).mean()


def build_perceptual(kind: str = "auto", weights: str | Path | None = None, net: str = "vgg") -> nn.Module:
    """The perceptual loss module for ``kind`` (see module docstring); ``weights`` is the local backbone file."""
    if kind == "auto":
        if not weights:
            kind = "fallback"
        elif lpips_available():
            kind = "lpips"
        elif net == "vgg":
            kind = "vgg"
        else:
            log.warning("lpips is not installed and there is no weight-free %s loss: using the fallback "
                        "perceptual loss (pip install lpips)", net)
            kind = "fallback"
    if kind in ("lpips", "vgg") and not weights:
        raise InputError(f"perceptual kind {kind!r} needs a local backbone weights file",
                         "set the path (tokenizer: loss.lpips_backbone, fkg: loss.lpips_weights), or use the fallback")
    if kind == "lpips":
        return LPIPSLoss(weights, net)
    if kind == "vgg":
        if net != "vgg":
            raise InputError(f"perceptual kind 'vgg' needs VGG16 weights, not {net}", "use lpips or the fallback")
        return VGGFeatureLoss(weights)
    if kind == "fallback":
        return PyramidGradientLoss()
    raise InputError(f"unknown perceptual kind {kind!r}", f"use one of {', '.join(KINDS)}")
