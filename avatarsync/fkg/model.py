"""The keyframe model: a decoder-only Llama transformer (decoder.py; from a config, no pretrained weights).

Text ids (specials, units, duration bins) use the backbone's token embedding;
visual codes use one embedding table per code digit (summed), and the output
head predicts one distribution per digit (see vocab.code_factors). Attention
masks are explicit (masks.py) and positions explicit (layout.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .decoder import ATTN_IMPLEMENTATIONS, DecoderConfig, LlamaDecoder
from .layout import IGNORE, KIND_BEGIN, KIND_FRAME, KIND_UNIT, check_window, n_slots, slot_ids
from .masks import backend_mask, canonical_variant, default_stride
from .vocab import FKGVocab, split_codes


class ModelConfigError(ValueError):
    """An unknown model size or attention implementation."""


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 16384
    rope_theta: float = 10000.0
    max_frame_tokens: int = 1024  # largest token grid (h*w) the slot embedding covers


# tiny: unit tests; cpu / cpu_wide: models trained on 2 CPU cores; small: a larger CPU model;
# base / large: GPU training.
MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128),
    "cpu": ModelSize(hidden_size=128, num_layers=3, num_heads=4, intermediate_size=384),
    "cpu_wide": ModelSize(hidden_size=192, num_layers=4, num_heads=6, intermediate_size=512),
    "small": ModelSize(hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1024),
    "base": ModelSize(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048),
    "large": ModelSize(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=2816),
}
def model_size(size: str | ModelSize) -> ModelSize:
    if isinstance(size, ModelSize):
        return size
    if size not in MODEL_SIZES:
        raise ModelConfigError(f"unknown FKG model size {size!r}; use one of {', '.join(MODEL_SIZES)}")
    return MODEL_SIZES[size]


@dataclass
class FKGOutput:
    logits: torch.Tensor  # [..., sum(factors)]: concatenated per-digit logits
    past_key_values: Any = None
    aperture_logits: torch.Tensor | None = None  # [M, aperture_bins] at the M unit tokens (models with a plan)


class FKGModel(nn.Module):
    """Decoder-only keyframe generator; ``forward`` takes ids, positions and a bool mask."""

    def __init__(self, vocab: FKGVocab, size: str | ModelSize = "small", mask_variant: str = "one_to_one",
                 window: int = 2, stride: int | None = None, attn_implementation: str = "sdpa",
                 dropout: float = 0.0, frame_window: Sequence[float] | None = None,
                 unit_context: bool = False, aperture_bins: int = 0) -> None:
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ModelConfigError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                                   f"got {attn_implementation!r}")
        self.vocab = vocab
        self.size_name = size if isinstance(size, str) else "custom"
        self.size = model_size(size)
        self.mask_variant = canonical_variant(mask_variant)
        self.window = window
        self.stride = default_stride(self.mask_variant) if stride is None else int(stride)
        # (x0, y0, x1, y1) fractions of the token grid whose cells a keyframe generates; None: all
        self.frame_window = check_window(frame_window) if frame_window else None
        s = self.size
        if s.hidden_size % s.num_heads:
            raise ModelConfigError(f"hidden_size {s.hidden_size} is not divisible by num_heads {s.num_heads}")
        self.decoder_config = DecoderConfig(
            vocab_size=vocab.n_text, hidden_size=s.hidden_size, num_layers=s.num_layers, num_heads=s.num_heads,
            intermediate_size=s.intermediate_size, rope_theta=s.rope_theta, attention_dropout=dropout,
            pad_token_id=vocab.pad_id)
        self.backbone = LlamaDecoder(self.decoder_config, attn_implementation)
        self.factors = tuple(vocab.factors)
        self.code_embed = nn.ModuleList(nn.Embedding(f, s.hidden_size) for f in self.factors)
        self.slot_embed = nn.Embedding(n_slots(s.max_frame_tokens), s.hidden_size)
        self.head = nn.Linear(s.hidden_size, sum(self.factors), bias=False)
        # Unit context: each unit token also carries its neighbours' ids (previous, next unit; <pad> at
        # the utterance's ends), embedded and added to it. The mask is unchanged (a keyframe still reads
        # only its own unit token), but that token says which units surround it (coarticulation).
        self.unit_context = bool(unit_context)
        self.context_embed = (nn.ModuleList(nn.Embedding(vocab.n_text, s.hidden_size) for _ in range(2))
                              if self.unit_context else None)
        # Mouth-aperture plan (aperture_bins > 0): the unit token's output predicts the keyframe's mouth
        # opening as one of `aperture_bins` bins (aperture_head); the keyframe's [B] and frame tokens all
        # carry the chosen bin (aperture_embed, added like the slot embedding), so every cell reads the one
        # decision directly instead of inferring the mouth's state from the cells before it.
        self.aperture_bins = int(aperture_bins)
        if self.aperture_bins < 0:
            raise ModelConfigError(f"aperture_bins must be >= 0, got {aperture_bins}")
        self.aperture_embed = nn.Embedding(self.aperture_bins, s.hidden_size) if self.aperture_bins else None
        self.aperture_head = nn.Linear(s.hidden_size, self.aperture_bins, bias=False) if self.aperture_bins else None
        extra = [m for m in (self.aperture_embed, self.aperture_head) if m is not None]
        for m in [*self.code_embed, self.slot_embed, self.head, *(self.context_embed or []), *extra]:
            nn.init.normal_(m.weight, std=self.decoder_config.initializer_range)

    # -- configuration --------------------------------------------------------------------
    @property
    def attn_implementation(self) -> str:
        return self.backbone.attn_implementation

    def set_attn_implementation(self, name: str) -> None:
        if name not in ATTN_IMPLEMENTATIONS:
            raise ModelConfigError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {name!r}")
        self.backbone.attn_implementation = name

    def check_grid(self, frame_tokens: int) -> None:
        if frame_tokens > self.size.max_frame_tokens:
            raise ModelConfigError(f"a token grid of {frame_tokens} cells exceeds the model's max_frame_tokens="
                                   f"{self.size.max_frame_tokens}; use a smaller grid or a custom ModelSize")

    def describe(self) -> dict[str, Any]:
        """What is needed to rebuild this model (saved as model.json beside the weights)."""
        return {"size": self.size_name if self.size_name != "custom" else asdict(self.size),
                "mask_variant": self.mask_variant, "window": self.window, "stride": self.stride,
                "frame_window": list(self.frame_window) if self.frame_window else None,
                "unit_context": self.unit_context, "aperture_bins": self.aperture_bins,
                "vocab": self.vocab.to_dict()}

    @classmethod
    def from_description(cls, d: dict[str, Any], attn_implementation: str = "sdpa") -> "FKGModel":
        size = d["size"] if isinstance(d["size"], str) else ModelSize(**d["size"])
        return cls(FKGVocab.from_dict(d["vocab"]), size, d["mask_variant"], int(d["window"]), int(d["stride"]),
                   attn_implementation, frame_window=d.get("frame_window"),
                   unit_context=bool(d.get("unit_context", False)),
                   aperture_bins=int(d.get("aperture_bins", 0)))

    # -- model folders --------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, config: Any = None) -> None:
        """``model.safetensors`` + ``model.json`` (size, mask, stride, vocab) [+ ``config.yaml``, the
        dataclass ``config``]."""
        from ..config import save_config
        from ..train.checkpoint import save_weights

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(self, folder / "model.safetensors")
        (folder / "model.json").write_text(json.dumps(self.describe(), ensure_ascii=False, indent=1), encoding="utf-8")
        if config is not None:
            save_config(config, folder / "config.yaml")

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: torch.device | str = "cpu",
                        attn_implementation: str = "sdpa") -> "FKGModel":
        """A trained keyframe model, in eval mode, from a folder written by ``save_pretrained`` / the
        training loop."""
        from ..weights import load_weights

        folder = Path(folder)
        if not (folder / "model.json").is_file() or not (folder / "model.safetensors").is_file():
            raise CheckpointError(f"{folder} is not an FKG model folder (needs model.json and model.safetensors)",
                                  "point at the 'final' folder of an `avatarsync train fkg` run")
        model = cls.from_description(json.loads((folder / "model.json").read_text(encoding="utf-8")),
                                     attn_implementation)
        load_weights(model, folder / "model.safetensors")
        return model.to(device).eval()

    # -- compute --------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor, kind: torch.Tensor, offset: torch.Tensor,
              context: torch.Tensor | None = None, aperture: torch.Tensor | None = None) -> torch.Tensor:
        vis = ids >= self.vocab.visual_offset
        text = self.backbone.embed_tokens(torch.where(vis, torch.zeros_like(ids), ids))
        digits = split_codes((ids - self.vocab.visual_offset).clamp(min=0), self.factors)
        code = sum(emb(digits[..., k]) for k, emb in enumerate(self.code_embed))
        slots = slot_ids(kind, offset, self.size.max_frame_tokens)
        x = torch.where(vis.unsqueeze(-1), code, text) + self.slot_embed(slots)
        if self.context_embed is not None and (context is not None or bool((kind == KIND_UNIT).any())):
            if context is None:
                raise ModelConfigError("this keyframe model reads unit context: pass context [..., 2] "
                                       "(previous and next unit ids per token, layout.layout_context)")
            near = self.context_embed[0](context[..., 0]) + self.context_embed[1](context[..., 1])
            x = x + near * (kind == KIND_UNIT).unsqueeze(-1).to(near.dtype)
        keyframe = (kind == KIND_BEGIN) | (kind == KIND_FRAME)
        if self.aperture_embed is not None and (aperture is not None or bool(keyframe.any())):
            if aperture is None:
                raise ModelConfigError("this keyframe model plans the mouth aperture: pass aperture [...] "
                                       "(the bin of each [B] / frame token's keyframe, -1 elsewhere)")
            at = keyframe & (aperture >= 0)
            x = x + self.aperture_embed(aperture.clamp(min=0)) * at.unsqueeze(-1).to(x.dtype)
        return x

    def forward(self, ids: torch.Tensor, position: torch.Tensor, mask: torch.Tensor, kind: torch.Tensor,
                offset: torch.Tensor, past_key_values: Any = None, use_cache: bool = False,
                select: torch.Tensor | None = None, context: torch.Tensor | None = None,
                aperture: torch.Tensor | None = None) -> FKGOutput:
        """``ids``/``position``/``kind``/``offset`` ``[B, Lq]`` (layout.py); ``mask`` bool
        ``[B, Lq, Lk]`` (True = attend), where ``Lk`` counts cached tokens plus the new ones.
        ``select`` (bool ``[B, Lq]``) keeps only those positions' logits (``[M, sum(factors)]``); the plan's
        ``aperture_logits`` are those of the unit tokens, in row-major order.
        ``context [B, Lq, 2]``: neighbouring unit ids of unit tokens (models with ``unit_context``).
        ``aperture [B, Lq]``: the aperture bin read by [B] and frame tokens (models with ``aperture_bins``;
        -1 = none)."""
        x = self.embed(ids, kind, offset, context, aperture)
        attn = backend_mask(mask, self.attn_implementation, x.dtype)
        out = self.backbone(inputs_embeds=x, attention_mask=attn, position_ids=position,
                            past_key_values=past_key_values, use_cache=use_cache)
        h = out.last_hidden_state
        plan = self.aperture_head(h[kind == KIND_UNIT]) if self.aperture_head is not None else None
        if select is not None:
            h = h[select]
        return FKGOutput(logits=self.head(h), past_key_values=out.past_key_values if use_cache else None,
                         aperture_logits=plan)


# -- logits helpers --------------------------------------------------------------------------
def digit_logits(logits: torch.Tensor, factors: tuple[int, ...]) -> list[torch.Tensor]:
    return list(logits.split(list(factors), dim=-1))


def code_log_probs(logits: torch.Tensor, factors: tuple[int, ...], codebook_size: int) -> torch.Tensor:
    """Per-code log-probabilities ``[..., K]`` (sum of digit log-probs; renormalised when the digit
    product exceeds K)."""
    parts = [F.log_softmax(x.float(), dim=-1) for x in digit_logits(logits, factors)]
    out = parts[0]
    for p in parts[1:]:
        out = (out.unsqueeze(-1) + p.unsqueeze(-2)).flatten(-2)
    if out.shape[-1] != codebook_size:
        out = F.log_softmax(out[..., :codebook_size], dim=-1)
    return out


def code_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, factors: tuple[int, ...],
                       weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean token cross-entropy (nats per code, summed over digits) and accuracy of the
    per-digit argmax. ``logits [M, sum(f)]``, ``labels [M]`` codes (``IGNORE`` skipped);
    ``weights [M]`` make it a weighted mean."""
    keep = labels != IGNORE
    logits, labels = logits[keep], labels[keep]
    if labels.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    w = None if weights is None else weights[keep].float()
    digits = split_codes(labels, factors)
    loss = logits.new_zeros((), dtype=torch.float32)
    correct = torch.ones_like(labels, dtype=torch.bool)
    for k, lg in enumerate(digit_logits(logits, factors)):
        if w is None:
            loss = loss + F.cross_entropy(lg.float(), digits[:, k])
        else:
            loss = loss + (F.cross_entropy(lg.float(), digits[:, k], reduction="none") * w).sum() / w.sum()
        correct &= lg.argmax(-1) == digits[:, k]
    return loss, correct.float().mean().detach()
