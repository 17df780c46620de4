"""``VisualTokenizer``: images in [-1, 1] <-> token grids, plus differentiable decoding from logits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from .config import TokenizerConfig
from .model import Decoder, Encoder, ReferenceEncoder
from .quantizers import LFQuantizer, VQuantizer, soft_or_straight


# A reference for decoding: images [1 or B, 3, H, W] in [-1, 1], or their ``reference_features``.
Reference = Union[torch.Tensor, list[torch.Tensor], None]


@dataclass
class TokenizerOutput:
    recon: torch.Tensor  # [B, 3, H, W], not clamped
    indices: torch.Tensor  # [B, h, w]
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def build_quantizer(cfg: TokenizerConfig) -> nn.Module:
    if cfg.quantizer == "lfq":
        return LFQuantizer(cfg.codebook_bits, cfg.factors, cfg.entropy_inv_temperature, cfg.loss.diversity_gamma)
    return VQuantizer(cfg.vq_dim, cfg.codebook_bits, cfg.vq_decay)


class VisualTokenizer(nn.Module):
    """Convolutional encoder -> LFQ/VQ -> decoder. Images are ``[B, 3, H, W]`` floats in [-1, 1]."""

    def __init__(self, cfg: TokenizerConfig | None = None) -> None:
        super().__init__()
        self.config = (cfg or TokenizerConfig()).resolved()
        self.encoder = Encoder(self.config)
        self.quantizer = build_quantizer(self.config)
        self.decoder = Decoder(self.config)
        self.reference_encoder = ReferenceEncoder(self.config) if self.config.reference else None

    # -- facts -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def factors(self) -> int:
        """Sub-tokens per token (1 = no factorization)."""
        return self.quantizer.factors

    @property
    def factor_size(self) -> int:
        """Ids per sub-token (``codebook_size`` when not factorized)."""
        return self.quantizer.factor_size

    @property
    def needs_reference(self) -> bool:
        """Whether decoding takes a reference image of the face (``TokenizerConfig.reference``)."""
        return self.reference_encoder is not None

    @property
    def downsample(self) -> int:
        return self.config.downsample

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "VisualTokenizer":
        """A tokenizer in eval mode from a folder written by ``save_tokenizer`` (or the training loop):
        ``config.yaml`` + ``model.safetensors``."""
        from ..weights import read_state_dict
        from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, _clean_keys, read_tokenizer_config

        folder = Path(folder)
        if folder.is_file():
            folder = folder.parent
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder} has no {name}", "pass a tokenizer folder written by save_tokenizer or training")
        model = cls(read_tokenizer_config(folder))
        sd = _clean_keys(read_state_dict(folder / WEIGHTS_NAME))
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"weights in {folder} do not match its config: {str(e).splitlines()[0]}") from None
        return model.to(device).eval()

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Token grid (h, w) for an image side (or (H, W)); sides must be multiples of ``downsample``."""
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if any(s % self.downsample for s in hw):
            raise InputError(f"image size {hw} is not a multiple of the tokenizer's downsampling {self.downsample}")
        return hw[0] // self.downsample, hw[1] // self.downsample

    def _check(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        self.grid_size(tuple(images.shape[-2:]))

    # -- reference ---------------------------------------------------------------------------
    def reference_features(self, reference: torch.Tensor) -> list[torch.Tensor] | None:
        """Decoder features of reference images ``[B, 3, H, W]``; compute once, decode many frames."""
        if self.reference_encoder is None:
            return None
        self._check(reference)
        return self.reference_encoder(reference.to(next(self.parameters()).dtype))

    def _reference(self, reference: Reference, batch: int) -> list[torch.Tensor] | None:
        if self.reference_encoder is None:
            return None
        if reference is None:
            raise InputError("this tokenizer decodes relative to a reference image of the face, and none was given",
                             "pass reference= (the portrait crop, or its reference_features)")
        feats = self.reference_features(reference) if isinstance(reference, torch.Tensor) else reference
        if feats[0].shape[0] == batch:
            return feats
        if feats[0].shape[0] != 1:
            raise InputError(f"{feats[0].shape[0]} references for {batch} frames", "pass one reference, or one per frame")
        return [f.expand(batch, *f.shape[1:]) for f in feats]

    # -- training forward --------------------------------------------------------------------
    def _encoder_input(self, images: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        if not self.config.reference_encoder:
            return images
        if not isinstance(reference, torch.Tensor):
            raise InputError("this tokenizer encodes frames relative to a reference image, and none was given",
                             "pass reference= (the portrait crop, [1 or B, 3, H, W])")
        if reference.shape[0] not in (1, images.shape[0]):
            raise InputError(f"{reference.shape[0]} references for {images.shape[0]} frames",
                             "pass one reference, or one per frame")
        return torch.cat([images, reference.to(images.dtype).expand(images.shape[0], -1, -1, -1)], dim=1)

    def forward(self, images: torch.Tensor, reference: Reference = None) -> TokenizerOutput:
        self._check(images)
        q = self.quantizer(self.encoder(self._encoder_input(images, reference)))
        recon = self.decoder(q.codes, self._reference(reference, images.shape[0]))
        return TokenizerOutput(recon, q.indices, q.losses)

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor, factorized: bool = False, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids ``[B, h, w]`` (``[B, h, w, F]`` sub-ids when ``factorized``); ``reference`` images
        ``[1 or B, 3, H, W]`` when the tokenizer was trained with ``reference_encoder``."""
        self._check(images)
        x = self._encoder_input(images, reference)
        was = self.quantizer.training
        self.quantizer.eval()  # no entropy terms, no VQ codebook updates
        try:
            idx = self.quantizer(self.encoder(x)).indices
        finally:
            self.quantizer.train(was)
        return self.quantizer.split(idx) if factorized else idx

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``[B, h, w]`` ids (or ``[B, h, w, F]`` sub-ids) -> quantized latent ``[B, C, h, w]``."""
        return self.quantizer.indices_to_codes(indices.to(next(self.parameters()).device))

    def decode_codes(self, codes: torch.Tensor, reference: Reference = None) -> torch.Tensor:
        """Quantized latent -> images (not clamped). ``reference``: see ``needs_reference``."""
        return self.decoder(codes, self._reference(reference, codes.shape[0]))

    def decode(self, indices: torch.Tensor, clamp: bool = True, reference: Reference = None) -> torch.Tensor:
        """Token ids -> images ``[B, 3, H, W]`` in [-1, 1]."""
        out = self.decode_codes(self.indices_to_codes(indices).to(next(self.parameters()).dtype), reference)
        return out.clamp(-1, 1) if clamp else out

    def decode_logits(self, logits: torch.Tensor | Sequence[torch.Tensor], mode: str = "soft",
                      temperature: float = 1.0, reference: Reference = None) -> torch.Tensor:
        """Differentiable decode from token logits (not clamped).

        ``logits``: ``[B, h, w, V]`` over full ids; with factorization also
        ``[B, h, w, F, V_f]`` or a list of F ``[B, h, w, V_f]``. ``mode="soft"``
        decodes the softmax-expected code, ``"st"`` the argmax code with the
        softmax's gradient (straight-through).
        """
        return self.decode_codes(self.codes_from_logits(logits, mode, temperature), reference)

    def codes_from_logits(self, logits: torch.Tensor | Sequence[torch.Tensor], mode: str = "soft",
                          temperature: float = 1.0) -> torch.Tensor:
        """Quantized latent ``[B, C, h, w]`` from token logits (shapes and modes as ``decode_logits``)."""
        if isinstance(logits, (list, tuple)):
            weights = [soft_or_straight(t, mode, temperature) for t in logits]
        else:
            weights = soft_or_straight(logits, mode, temperature)
        return self.quantizer.codes_from_weights(weights).to(next(self.parameters()).dtype)
