"""Tokenizer training losses: pixel, perceptual (LPIPS / VGG / weight-free fallback), mouth, adversarial.

Perceptual options (``TokenizerLossConfig.perceptual_kind``):

- ``lpips``: the lpips package's VGG variant with its calibrated linear heads
  (shipped in the wheel) on a VGG16 backbone loaded from ``lpips_backbone``,
  a local torchvision VGG16 state dict. Nothing is downloaded.
- ``vgg``: the same backbone without the heads: mean squared difference of
  unit-normalised relu1_2..relu5_3 features (when lpips is not installed).
- ``fallback`` (no weights needed, the CPU default): L1 between Laplacian
  pyramids (5 levels, each band-pass level weighted equally) plus L1 between
  horizontal and vertical image gradients. It rewards sharp edges and fine
  structure the way a perceptual loss does, costs a few convolutions, and
  is what ``auto`` picks when no backbone path is configured.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackendUnavailable, CheckpointError, InputError

log = logging.getLogger("avatarsync.tokenizers")

# Slices of torchvision's vgg16().features ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2); ``mask`` [B, 1, H, W] selects pixels."""
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


class PyramidGradientLoss(nn.Module):
    """Weight-free perceptual fallback: Laplacian-pyramid L1 + image-gradient L1 (see module docstring)."""

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


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"VGG16 backbone weights {p} not found",
                              "set loss.lpips_backbone to a local torchvision vgg16 state dict, or use the fallback")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(p))
    sd = torch.load(p, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _vgg_features(path: str | Path) -> nn.Module:
    """torchvision VGG16 ``features`` loaded from a local file (keys ``features.N.*`` or ``N.*``)."""
    from torchvision.models import vgg16  # noqa: PLC0415

    feats = vgg16(weights=None).features[:30]
    sd = _load_state_dict(path)
    sd = {k[len("features."):] if k.startswith("features.") else k: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 30}
    missing, _ = feats.load_state_dict(sd, strict=False)
    if missing:
        raise CheckpointError(f"{path} is not a VGG16 state dict (missing {missing[:3]}...)",
                              "save torchvision.models.vgg16(...).state_dict() to a file")
    return feats.eval().requires_grad_(False)


class VGGFeatureLoss(nn.Module):
    """Mean squared difference of unit-normalised VGG16 features (LPIPS without its learned heads)."""

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


class LPIPSLoss(nn.Module):
    """The lpips package's LPIPS-VGG with its shipped heads and a locally loaded backbone."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import lpips  # noqa: PLC0415
        except ImportError as e:
            raise BackendUnavailable(f"lpips is not installed ({e})", "pip install lpips, or use perceptual_kind: vgg") from None
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's pretrained= deprecation notes
            self.net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        feats = _vgg_features(path)
        for i, (a, b) in enumerate(_VGG_SLICES):
            slice_ = getattr(self.net.net, f"slice{i + 1}")
            for j in range(a, b):
                getattr(slice_, str(j)).load_state_dict(feats[j].state_dict())
        self.net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y).mean()


def build_perceptual(kind: str, backbone: str | None) -> nn.Module:
    """The perceptual loss module for ``kind`` (see module docstring)."""
    if kind == "auto":
        if backbone:
            try:
                import lpips  # noqa: F401, PLC0415

                kind = "lpips"
            except ImportError:
                kind = "vgg"
        else:
            kind = "fallback"
    if kind in ("lpips", "vgg") and not backbone:
        raise InputError(f"perceptual_kind {kind!r} needs loss.lpips_backbone (a local VGG16 weights file)",
                         "set the path, or use perceptual_kind: fallback")
    if kind == "lpips":
        return LPIPSLoss(backbone)
    if kind == "vgg":
        return VGGFeatureLoss(backbone)
    if kind == "fallback":
        return PyramidGradientLoss()
    raise InputError(f"unknown perceptual_kind {kind!r}", "use auto, lpips, vgg or fallback")


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
