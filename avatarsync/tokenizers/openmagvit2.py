"""Load Open-MAGVIT2 tokenizer weights (a PyTorch Lightning ``.ckpt`` on local disk) into ``VisualTokenizer``.

Open-MAGVIT2's encoder/decoder have the same layout as ours (model.py); only
the parameter names differ, and its decoder lists levels fine-to-coarse where
ours runs coarse-to-fine. The config (width, multipliers, blocks, latent
bits, adaptive norm) is read off the tensor shapes. Weights whose name or
shape has no counterpart are reported, not loaded.

Token ids: Open-MAGVIT2 gives latent channel ``k`` the weight ``2**k``; we
give it ``2**(bits-1-k)``. The codes (+-1 per channel) are identical, so
decoding is unaffected; ids from Open-MAGVIT2 data convert with
``openmagvit2_ids_to_ours`` (a bit reversal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..weights import read_state_dict
from .config import TokenizerConfig
from .tokenizer import VisualTokenizer

_RES_PARTS = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "skip"}


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)  # our parameter names that received weights
    missing: list[str] = field(default_factory=list)  # ours that kept their initial values
    unused: list[str] = field(default_factory=list)  # checkpoint names with no counterpart
    mismatched: list[str] = field(default_factory=list)  # mapped names whose shapes differ


def read_lightning_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict file)."""
    p = Path(path)
    # Lightning checkpoints may pickle callbacks/hparams; the file is a trusted local one
    sd = read_state_dict(p, "Open-MAGVIT2 checkpoint", "pass a local path to the .ckpt file", allow_pickle=True)
    if not isinstance(sd, dict) or not any(k.startswith("encoder.") for k in sd):
        raise CheckpointError(f"{p} holds no Open-MAGVIT2 tokenizer weights (no encoder.* tensors)")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def select_weights(sd: dict[str, torch.Tensor], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Encoder/decoder tensors, taking the EMA copies (``model_ema.<name without dots>``) when present."""
    out = {k: v for k, v in sd.items() if k.startswith(("encoder.", "decoder."))}
    if use_ema:
        for k in list(out):
            ema = sd.get("model_ema." + k.replace(".", ""))
            if ema is not None and ema.shape == out[k].shape:
                out[k] = ema
    return out


def infer_config(sd: dict[str, torch.Tensor], base: TokenizerConfig | None = None) -> TokenizerConfig:
    """A ``TokenizerConfig`` matching the checkpoint's encoder/decoder shapes."""
    try:
        ch = sd["encoder.conv_in.weight"].shape[0]
        z = sd["encoder.conv_out.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"not an Open-MAGVIT2 tokenizer state dict (missing {e})") from None
    levels = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
    blocks = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)))
    mult = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels)]
    down = 2 ** (levels - 1)
    if down not in (8, 16):
        raise CheckpointError(f"checkpoint downsamples by {down}; only 8 and 16 are supported")
    adaptive = any(k.startswith("decoder.adaptive.") for k in sd)
    base = base or TokenizerConfig()
    return replace(base, size="base", channels=ch, channel_mult=mult, num_res_blocks=blocks, downsample=down,
                   adaptive_norm=adaptive, norm_groups=32, norm_min_channels=1, quantizer="lfq", codebook_bits=z,
                   factors=base.factors if z % base.factors == 0 else 1)


def _res(rest: str) -> str | None:
    part, _, tail = rest.partition(".")
    return f"{_RES_PARTS[part]}.{tail}" if part in _RES_PARTS else None


def map_name(name: str, levels: int) -> str | None:
    """Our parameter name for an Open-MAGVIT2 encoder/decoder name (None when there is none)."""
    simple = {"encoder.conv_in.": "encoder.stem.", "encoder.norm_out.": "encoder.head_norm.",
              "encoder.conv_out.": "encoder.head.", "decoder.conv_in.": "decoder.stem.",
              "decoder.norm_out.": "decoder.head_norm.", "decoder.conv_out.": "decoder.head."}
    for old, new in simple.items():
        if name.startswith(old):
            return new + name[len(old):]
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.(\d+)\.(.+)", name):
        r = _res(m.group(3))
        return r and f"{m.group(1)}.mid.{m.group(2)}.{r}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", name):
        r = _res(m.group(3))
        return r and f"encoder.levels.{m.group(1)}.blocks.{m.group(2)}.{r}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.(.+)", name):
        return f"encoder.levels.{m.group(1)}.down.{m.group(2)}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", name):
        r = _res(m.group(3))
        return r and f"decoder.levels.{levels - 1 - int(m.group(1))}.blocks.{m.group(2)}.{r}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv1\.(.+)", name):
        return f"decoder.levels.{levels - 1 - int(m.group(1))}.up.conv.{m.group(2)}"
    if m := re.fullmatch(r"decoder\.adaptive\.(\d+)\.(gamma|beta)\.(.+)", name):
        return f"decoder.levels.{levels - 1 - int(m.group(1))}.adanorm.{m.group(2)}.{m.group(3)}"
    return None


def load_into(model: VisualTokenizer, sd: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every mappable, shape-matching tensor of ``sd`` into ``model``."""
    levels = len(model.config.channel_mult)
    ours = model.state_dict()
    report = LoadReport()
    new = {}
    for name, t in sd.items():
        target = map_name(name, levels)
        if target is None or target not in ours:
            report.unused.append(name)
        elif ours[target].shape != t.shape:
            report.mismatched.append(f"{name} {tuple(t.shape)} -> {target} {tuple(ours[target].shape)}")
        else:
            new[target] = t.to(ours[target].dtype)
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    params = {n for n, _ in model.named_parameters()}
    report.missing = sorted(params - set(new))
    return report


def load_openmagvit2(path: str | Path, cfg: TokenizerConfig | None = None, use_ema: bool = True,
                     device: str | torch.device = "cpu", strict: bool = False) -> tuple[VisualTokenizer, LoadReport]:
    """Build a ``VisualTokenizer`` shaped like the checkpoint and load its weights.

    ``cfg`` supplies what the shapes cannot tell (loss weights, factorization);
    ``strict`` raises ``CheckpointError`` when any of our parameters stays unloaded.
    """
    sd = select_weights(read_lightning_state_dict(path), use_ema)
    model = VisualTokenizer(infer_config(sd, cfg))
    report = load_into(model, sd)
    if strict and (report.missing or report.mismatched):
        raise CheckpointError(f"{path}: {len(report.missing)} parameter(s) not loaded "
                              f"(e.g. {(report.missing or report.mismatched)[:3]})")
    return model.to(device).eval(), report


def openmagvit2_ids_to_ours(ids: torch.Tensor, bits: int) -> torch.Tensor:
    """Reverse the bit order of Open-MAGVIT2 token ids (see module docstring)."""
    ids = ids.long()
    out = torch.zeros_like(ids)
    for k in range(bits):
        out |= ((ids >> k) & 1) << (bits - 1 - k)
    return out
