"""Tokenizer configuration: architecture presets, codebook and loss weights.

``TokenizerConfig`` is what an exported tokenizer folder stores in
``config.yaml``. Fields left ``None`` take the value of the ``size`` preset
(``MODEL_SIZES``), so a recipe can say ``size: small`` and override one knob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from ..errors import InputError

# Channel multipliers are for 8x downsampling (four levels, three halvings); 16x prepends a 1.
MODEL_SIZES: dict[str, dict] = {
    "tiny": {"channels": 16, "channel_mult": [1, 1, 2, 2], "num_res_blocks": 1},  # tests
    "small": {"channels": 16, "channel_mult": [1, 2, 4, 8], "num_res_blocks": 1},  # CPU default (~2.2M params)
    "base": {"channels": 128, "channel_mult": [1, 2, 2, 4], "num_res_blocks": 4},  # Open-MAGVIT2 128 px "L" layout
}


@dataclass
class TokenizerLossConfig:
    l1: float = 1.0
    l2: float = 1.0
    perceptual: float = 0.1  # weight of the perceptual term (0 = off)
    # "auto": LPIPS when lpips_backbone is given and lpips is installed, else VGG features when
    # lpips_backbone is given, else the fallback (Laplacian-pyramid + gradient L1; no weights needed).
    perceptual_kind: Literal["auto", "lpips", "vgg", "fallback"] = "auto"
    lpips_backbone: str | None = None  # local path to torchvision VGG16 weights (state dict .pth / .safetensors)
    entropy: float = 0.1  # LFQ entropy loss: per-sample entropy - diversity_gamma * batch entropy
    diversity_gamma: float = 1.0
    commitment: float = 0.25  # LFQ / VQ commitment
    mouth: float = 0.0  # extra L1 weight on the mouth box (0 = off)
    # Reference tokenizers: per-pixel weight 1 + change * (blurred |frame - reference|) on L1 and L2, so the
    # few pixels that differ from the reference (mouth, eyes) drive training instead of the many that do not.
    change: float = 0.0
    adversarial: float = 0.0  # hinge GAN generator weight (0 = off: no discriminator is built)
    adversarial_start: int = 0  # optimisation step at which the GAN terms switch on
    disc_channels: int = 32


@dataclass
class TokenizerConfig:
    size: Literal["tiny", "small", "base"] = "small"
    channels: int | None = None  # base width of the first level
    channel_mult: list[int] | None = None  # width multiplier per level; len = log2(downsample) + 1
    num_res_blocks: int | None = None  # residual blocks per level
    downsample: Literal[8, 16] = 8  # image side / token grid side
    adaptive_norm: bool = True  # MAGVIT-2 decoder: adaptive group norm conditioned on the codes
    # Decode relative to a reference image of the same face (the portrait at inference): a reference
    # encoder feeds the decoder at every resolution, so tokens need only carry what changes.
    reference: bool = False
    # With reference: the encoder also sees the reference (stacked with the frame), so tokens code
    # what differs from it, as a video codec's predicted frames do. Encoding then needs the reference.
    reference_encoder: bool = False
    norm_groups: int = 32  # GroupNorm groups at most (0 = no normalisation)
    norm_min_channels: int = 4  # fewer groups where a layer is narrow (1 = exactly norm_groups, as Open-MAGVIT2)
    quantizer: Literal["lfq", "vq"] = "lfq"
    codebook_bits: int = 14  # codebook size = 2 ** bits (LFQ: 10..18)
    factors: int = 1  # token factorization: each token = `factors` sub-tokens of bits / factors bits (LFQ only)
    vq_dim: int = 16  # VQ: code vector size
    vq_decay: float = 0.99  # VQ: EMA decay of the codebook
    entropy_inv_temperature: float = 100.0  # LFQ entropy loss sharpness
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)

    # -- resolved values ---------------------------------------------------------------------
    def resolved(self) -> "TokenizerConfig":
        """A copy with the preset's values filled in and every field checked."""
        if self.size not in MODEL_SIZES:
            raise InputError(f"unknown tokenizer size {self.size!r}", f"use one of {', '.join(MODEL_SIZES)}")
        preset = MODEL_SIZES[self.size]
        levels = int(math.log2(self.downsample)) + 1
        mult = list(self.channel_mult) if self.channel_mult is not None else list(preset["channel_mult"])
        if self.channel_mult is None and levels > len(mult):
            mult = [1] * (levels - len(mult)) + mult
        cfg = replace(self, channels=self.channels or preset["channels"], channel_mult=mult,
                      num_res_blocks=self.num_res_blocks or preset["num_res_blocks"])
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.reference_encoder and not self.reference:
            raise InputError("reference_encoder needs reference: true", "set both, or neither")
        if self.downsample not in (8, 16):
            raise InputError(f"downsample must be 8 or 16, got {self.downsample}")
        levels = int(math.log2(self.downsample)) + 1
        if self.channel_mult is not None and len(self.channel_mult) != levels:
            raise InputError(f"channel_mult {self.channel_mult} has {len(self.channel_mult)} levels; "
                             f"downsample {self.downsample} needs {levels}", "give one multiplier per level")
        if self.quantizer == "lfq":
            if not 1 <= self.codebook_bits <= 18:
                raise InputError(f"codebook_bits must be between 1 and 18 for LFQ, got {self.codebook_bits}",
                                 "the issue's range is 10..18 (1k..262k codes)")
            if self.factors < 1 or self.codebook_bits % self.factors:
                raise InputError(f"factors={self.factors} must divide codebook_bits={self.codebook_bits}")
        else:
            if self.factors != 1:
                raise InputError("token factorization is only available with the LFQ quantizer", "set factors: 1")
            if not 1 <= self.codebook_bits <= 16:
                raise InputError(f"VQ codebook_bits must be between 1 and 16, got {self.codebook_bits}")

    @property
    def codebook_size(self) -> int:
        return 2 ** self.codebook_bits

    @property
    def z_channels(self) -> int:
        """Channels of the latent the quantizer sees (LFQ: one per bit)."""
        return self.codebook_bits if self.quantizer == "lfq" else self.vq_dim
