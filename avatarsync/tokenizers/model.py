"""MAGVIT-2 style convolutional encoder and decoder (no attention).

Encoder: stem conv, per level residual blocks then a stride-2 conv, middle
blocks, GroupNorm + SiLU + 1x1 conv to the latent. Decoder: stem conv,
middle blocks, per level (from coarse to fine) an optional adaptive group
norm conditioned on the codes' per-channel mean and spread, residual blocks,
then a conv + depth-to-space upsampler; GroupNorm + SiLU + conv to RGB.

Reference conditioning (``TokenizerConfig.reference``): a ``ReferenceEncoder``
turns a reference image of the same face (at inference, the portrait) into
features at every decoder resolution. Each decoder level predicts a flow field
from its activations, warps the reference features with it and adds a 1x1
projection of them before its blocks; at the output a per-pixel weight blends
the decoder's image towards the reference image warped by a last flow. Flows,
projections and blend weights start at zero, so a reference decoder starts as
a plain one (and can start from a plain tokenizer's weights). With ``reference_encoder`` the encoder sees the frame stacked with the
reference, so the tokens code what differs from it. The decoder takes
what does not change (hair, background, skin texture) from the reference, and
the tokens are left to carry what does (mouth, eyes, pose).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import TokenizerConfig


def norm_groups(channels: int, groups: int = 32, min_per_group: int = 4) -> int:
    """The largest divisor of ``channels`` that is at most ``groups`` and leaves ``min_per_group`` channels per group.

    One channel per group would be instance norm, which erases each image's mean colour: narrow layers
    (the CPU presets) would then have to smuggle colour through spatial patterns.
    """
    limit = min(groups, max(1, channels // min_per_group))
    return max(d for d in range(1, limit + 1) if channels % d == 0)


def group_norm(channels: int, groups: int | tuple[int, int] = 32, affine: bool = True) -> nn.Module:
    """GroupNorm; ``groups`` is a count or (count, min channels per group); a count of 0 means no normalisation."""
    count, min_per = groups if isinstance(groups, tuple) else (groups, 4)
    if count <= 0:
        return nn.Identity()
    return nn.GroupNorm(norm_groups(channels, count, min_per), channels, eps=1e-6, affine=affine)


class ResBlock(nn.Module):
    """norm-SiLU-conv twice plus a (1x1 conv when widths differ) skip."""

    def __init__(self, cin: int, cout: int, groups: int | tuple[int, int] = 32) -> None:
        super().__init__()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as its skip path: faster early training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class EncoderLevel(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, downsample: bool, groups: int | tuple[int, int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(cin if i == 0 else cout, cout, groups) for i in range(blocks)])
        self.down = nn.Conv2d(cout, cout, 3, stride=2, padding=1) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.down(x) if self.down is not None else x


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, nrb, g = cfg.channels, cfg.channel_mult, cfg.num_res_blocks, (cfg.norm_groups, cfg.norm_min_channels)
        widths = [ch * m for m in mult]
        # with reference_encoder the frame and its reference are stacked: tokens code the difference
        self.stem = nn.Conv2d(6 if cfg.reference_encoder else 3, ch, 3, padding=1, bias=False)
        cin = ch
        levels = []
        for i, w in enumerate(widths):
            levels.append(EncoderLevel(cin, w, nrb, downsample=i < len(widths) - 1, groups=g))
            cin = w
        self.levels = nn.ModuleList(levels)
        self.mid = nn.ModuleList([ResBlock(cin, cin, g) for _ in range(nrb)])
        self.head_norm = group_norm(cin, g)
        self.head = nn.Conv2d(cin, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for lvl in self.levels:
            x = lvl(x)
        for b in self.mid:
            x = b(x)
        return self.head(F.silu(self.head_norm(x)))


class AdaptiveGroupNorm(nn.Module):
    """Parameter-free GroupNorm, then scale/shift predicted from the codes' per-channel std / mean."""

    def __init__(self, z_channels: int, channels: int, groups: int | tuple[int, int] = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups, affine=False)
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        flat = codes.flatten(2)
        std = (flat.var(dim=-1, unbiased=False) + 1e-6).sqrt()
        scale = self.gamma(std)[..., None, None]
        shift = self.beta(flat.mean(dim=-1))[..., None, None]
        return self.norm(x) * scale + shift


def depth_to_space(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """Depth-to-space in DCR order: channel ``(i * block + j) * C + c`` goes to pixel offset ``(i, j)``."""
    return rearrange(x, "b (i j c) h w -> b c (h i) (w j)", i=block, j=block)


class Upsample(nn.Module):
    """Conv to 4x channels, then depth-to-space (2x). Initialised so the four sub-pixels start equal
    (nearest-neighbour upsampling of one conv): no checkerboard pattern at the start of training."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        with torch.no_grad():
            base = nn.Conv2d(channels, channels, 3, padding=1)
            self.conv.weight.copy_(base.weight.repeat(4, 1, 1, 1))  # DCR: channel k*C + c is sub-pixel k of c
            self.conv.bias.copy_(base.bias.repeat(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv(x), 2)


class DecoderLevel(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, upsample: bool, z_channels: int, adaptive: bool,
                 groups: int | tuple[int, int]) -> None:
        super().__init__()
        self.adanorm = AdaptiveGroupNorm(z_channels, cin, groups) if adaptive else None
        self.blocks = nn.ModuleList([ResBlock(cin if i == 0 else cout, cout, groups) for i in range(blocks)])
        self.up = Upsample(cout) if upsample else None

    def forward(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.adanorm is not None:
            x = self.adanorm(x, codes)
        for b in self.blocks:
            x = b(x)
        return self.up(x) if self.up is not None else x


class ReferenceEncoder(nn.Module):
    """Reference image -> features at the decoder's resolutions, coarse to fine (one per decoder level)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, g = cfg.channels, cfg.channel_mult, (cfg.norm_groups, cfg.norm_min_channels)
        widths = [ch * m for m in mult]
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList([ResBlock(widths[max(i - 1, 0)], w, g) for i, w in enumerate(widths)])
        self.down = nn.ModuleList([nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1]])

    def forward(self, reference: torch.Tensor) -> list[torch.Tensor]:
        """Features coarse to fine (one per decoder level), then the reference image itself."""
        x = self.stem(reference)
        feats = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.down[i - 1](x)
            x = block(x)
            feats.append(x)
        return [*feats[::-1], reference]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``features`` [B, C, H, W] at each pixel plus ``flow`` [B, 2, H, W] (x, y offsets in pixels)."""
    b, _, h, w = flow.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=flow.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] as (x, y)
    scale = torch.tensor([2.0 / w, 2.0 / h], device=flow.device, dtype=flow.dtype)
    grid = base + flow.permute(0, 2, 3, 1) * scale
    if features.shape[0] != b:
        features = features.expand(b, *features.shape[1:])
    return F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


class ReferenceFusion(nn.Module):
    """Warp reference features by a flow predicted from the decoder's activations, then add them (1x1)."""

    def __init__(self, channels: int, ref_channels: int) -> None:
        super().__init__()
        self.flow = nn.Conv2d(channels, 2, 3, padding=1)
        self.proj = nn.Conv2d(ref_channels, channels, 1)
        for conv in (self.flow, self.proj):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return x + self.proj(warp(reference, self.flow(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, nrb, g = cfg.channels, cfg.channel_mult, cfg.num_res_blocks, (cfg.norm_groups, cfg.norm_min_channels)
        widths = [ch * m for m in reversed(mult)]  # coarse to fine
        cin = widths[0]
        self.stem = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = nn.ModuleList([ResBlock(cin, cin, g) for _ in range(nrb)])
        levels = []
        for i, w in enumerate(widths):
            levels.append(DecoderLevel(cin, w, nrb, upsample=i < len(widths) - 1, z_channels=cfg.z_channels,
                                       adaptive=cfg.adaptive_norm, groups=g))
            cin = w
        self.levels = nn.ModuleList(levels)
        self.head_norm = group_norm(cin, g)
        self.head = nn.Conv2d(cin, 3, 3, padding=1)
        self.reference_in: nn.ModuleList | None = None
        self.output_flow: nn.Conv2d | None = None
        self.output_blend: nn.Conv2d | None = None
        if cfg.reference:
            ref_widths = [ch * m for m in reversed(mult)]  # ReferenceEncoder output widths, coarse to fine
            level_in = [widths[0]] + widths[:-1]  # each level's input width
            self.reference_in = nn.ModuleList([ReferenceFusion(c, r) for r, c in zip(ref_widths, level_in)])
            self.output_flow = nn.Conv2d(cin, 2, 3, padding=1)
            self.output_blend = nn.Conv2d(cin, 1, 3, padding=1)
            for conv in (self.output_flow, self.output_blend):  # start as a plain decoder
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, codes: torch.Tensor, reference: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``reference``: ``ReferenceEncoder`` features (batch 1 or the codes' batch, the image last) when the
        decoder was built with ``reference``."""
        x = self.stem(codes)
        for b in self.mid:
            x = b(x)
        for i, lvl in enumerate(self.levels):
            if self.reference_in is not None and reference is not None:
                x = self.reference_in[i](x, reference[i])
            x = lvl(x, codes)
        out = self.head(F.silu(self.head_norm(x)))
        if self.output_flow is not None and reference is not None:  # per pixel, copy the warped reference
            blend = self.output_blend(x)
            out = out + blend * (warp(reference[-1], self.output_flow(x)) - out)
        return out
