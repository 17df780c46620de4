"""Latent codecs: images <-> the continuous latent grid the interpolator works in.

The interpolator predicts the *quantized code vectors* of the visual
tokenizer (``VisualTokenizer.indices_to_codes``), not token ids; the
tokenizer's decoder renders them (``decode_codes``). ``SpaceToDepthCodec`` is an
exact, parameter-free stand-in (pixel unshuffle) for development and tests
before a tokenizer is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..errors import InputError


@runtime_checkable
class LatentCodec(Protocol):
    name: str  # identifies the codec and its weights (names latent caches)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, C, h, w]."""

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, 3, H, W] in [-1, 1]."""


class SpaceToDepthCodec:
    """Lossless pixel unshuffle: [B, 3, H, W] -> [B, 3 f^2, H/f, W/f]."""

    def __init__(self, factor: int = 8) -> None:
        if factor < 1:
            raise InputError(f"space_to_depth factor must be >= 1, got {factor}")
        self.factor = factor
        self.name = f"space_to_depth{factor}"

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] % self.factor or images.shape[-2] % self.factor:
            raise InputError(f"image size {tuple(images.shape[-2:])} is not a multiple of {self.factor}")
        return F.pixel_unshuffle(images, self.factor)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents, self.factor).clamp(-1, 1)

    def to(self, device) -> "SpaceToDepthCodec":
        return self


class TokenizerCodec:
    """A trained ``VisualTokenizer``: encode -> ids -> quantized codes; decode_codes renders latents."""

    def __init__(self, tokenizer) -> None:
        from ..tokenizers import tokenizer_fingerprint

        if getattr(tokenizer, "needs_reference", False):
            raise InputError("this tokenizer decodes against a reference image, which the interpolator's "
                             "latent codec does not carry",
                             "interpolate pixels (data.tokenizer=space_to_depth:8, the default recipe) or use a "
                             "tokenizer trained with model.reference=false")
        self.tokenizer = tokenizer.eval()
        self.name = f"tokenizer-{tokenizer_fingerprint(tokenizer)}"

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.indices_to_codes(self.tokenizer.encode(images.to(self.device))).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = next(self.tokenizer.parameters()).dtype
        return self.tokenizer.decode_codes(latents.to(self.device, dtype)).clamp(-1, 1)

    def to(self, device) -> "TokenizerCodec":
        self.tokenizer.to(device)
        return self


def load_codec(spec: str, device: str | torch.device = "cpu") -> LatentCodec:
    """``space_to_depth:F`` (exact stand-in) or the folder of a trained tokenizer."""
    if spec.startswith("space_to_depth"):
        _, _, f = spec.partition(":")
        try:
            return SpaceToDepthCodec(int(f or 8))
        except ValueError:
            raise InputError(f"bad codec spec {spec!r}", "use space_to_depth:8 or a tokenizer folder") from None
    if not Path(spec).exists():
        raise InputError(f"codec {spec!r} is neither space_to_depth:F nor an existing tokenizer folder",
                         "train a tokenizer (`avatarsync train tokenizer ...`) and pass its final/ folder")
    from ..tokenizers import VisualTokenizer

    return TokenizerCodec(VisualTokenizer.from_pretrained(spec, device))
