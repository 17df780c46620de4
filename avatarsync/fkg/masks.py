"""Text-Frame attention masks (paper Sec. 3.2 and Appendix A.4).

Four variants differ only in which units' duration/unit tokens the frame
side of keyframe i ([B]_i and its frame tokens) may read:

================  ======================================
variant           units visible to keyframe i
================  ======================================
``global``        all units (non-causal, sees the future)
``accumulative``  units 0..i
``window``        units i-1 and i (sliding window of 2)
``one_to_one``    unit i only (the paper's default)
================  ======================================

Rules shared by all variants (query row -> key columns it may attend to):

* reference prefix (<bos> + reference tokens): the whole prefix (bidirectional);
* duration/unit tokens of segment i: the prefix and segment i's own
  duration/unit tokens up to themselves (so they encode their unit alone and
  no information leaks from unit to unit through them);
* [B]_i and frame tokens of segment i: the prefix, the duration/unit tokens of
  every visible unit, and segment i's own [B] and frame tokens up to
  themselves (causal inside the frame). Never another keyframe's frame
  tokens, so every variant decodes all keyframes in parallel;
* padding: nothing attends to it; a padding row attends only to itself.

Masks are boolean ``True = attend`` tensors; ``backend_mask`` turns them into
what the attention implementation needs (bool for SDPA, additive float
0 / finfo.min for eager, where a bool mask would be silently wrong).
"""

from __future__ import annotations

import torch

from .layout import KIND_BEGIN, KIND_DUR, KIND_FRAME, KIND_PAD, KIND_REF, KIND_UNIT, TokenMeta

MASK_VARIANTS: tuple[str, ...] = ("global", "accumulative", "window", "one_to_one")
_ALIASES = {
    "non_causal": "global", "noncausal": "global", "full": "global", "non_causal_global": "global",
    "causal": "accumulative", "causal_accumulative": "accumulative",
    "limited_history": "window", "sliding_window": "window",
    "one-to-one": "one_to_one", "onetoone": "one_to_one", "text_frame": "one_to_one",
}
VARIANT_TITLES = {
    "global": "Non-Causal Global",
    "accumulative": "Causal Accumulative",
    "window": "Limited History (w=2)",
    "one_to_one": "One-to-One",
}


class MaskError(ValueError):
    """An unknown mask variant or a malformed mask request."""


def canonical_variant(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in MASK_VARIANTS:
        raise MaskError(f"unknown attention mask variant {name!r}; use one of {', '.join(MASK_VARIANTS)}")
    return key


def default_stride(variant: str) -> int:
    """Position-id stride between segments: 0 for one-to-one (every keyframe at the same
    positions), 3 otherwise (visible units need distinct positions to be told apart)."""
    return 0 if canonical_variant(variant) == "one_to_one" else 3


def visible_units(variant: str, seg_q: torch.Tensor, seg_k: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Whether keyframe ``seg_q`` may read unit ``seg_k`` (broadcasting)."""
    v = canonical_variant(variant)
    if v == "global":
        return torch.ones(torch.broadcast_shapes(seg_q.shape, seg_k.shape), dtype=torch.bool, device=seg_q.device)
    if v == "accumulative":
        return seg_k <= seg_q
    if v == "window":
        if window < 1:
            raise MaskError(f"window must be >= 1, got {window}")
        return (seg_k <= seg_q) & (seg_k > seg_q - window)
    return seg_k == seg_q


def allowed(q: TokenMeta, k: TokenMeta, variant: str, window: int = 2) -> torch.Tensor:
    """Boolean ``[..., Lq, Lk]``: may query token attend to key token (True = attend).

    ``q`` tensors have shape ``[..., Lq]`` and ``k`` tensors ``[..., Lk]`` (leading dims
    broadcast). Padding rows get no columns here; see ``packed_mask``.
    """
    qk, qs, qo = (t.unsqueeze(-1) for t in (q.kind, q.segment, q.offset))
    kk, ks, ko = (t.unsqueeze(-2) for t in (k.kind, k.segment, k.offset))
    k_ref = kk == KIND_REF
    k_cond = (kk == KIND_DUR) | (kk == KIND_UNIT)
    k_frame_side = (kk == KIND_BEGIN) | (kk == KIND_FRAME)
    q_ref = qk == KIND_REF
    q_cond = (qk == KIND_DUR) | (qk == KIND_UNIT)
    q_frame_side = (qk == KIND_BEGIN) | (qk == KIND_FRAME)
    same_seg = ks == qs
    causal = ko <= qo

    ref_rows = q_ref & k_ref
    cond_rows = q_cond & (k_ref | (k_cond & same_seg & causal))
    frame_rows = q_frame_side & (
        k_ref | (k_cond & visible_units(variant, qs, ks, window)) | (k_frame_side & same_seg & causal)
    )
    return ref_rows | cond_rows | frame_rows


def packed_mask(meta: TokenMeta, variant: str, window: int = 2) -> torch.Tensor:
    """Self-attention mask ``[B, L, L]`` (or ``[L, L]``) of packed utterances."""
    m = allowed(meta, meta, variant, window)
    pad = meta.kind == KIND_PAD
    if pad.any():
        eye = torch.eye(m.shape[-1], dtype=torch.bool, device=m.device)
        m = m | (pad.unsqueeze(-1) & eye)
    return m


def backend_mask(mask: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """``[B, Lq, Lk]`` bool -> ``[B, 1, Lq, Lk]`` in the form the attention backend expects."""
    if mask.dtype != torch.bool:
        raise MaskError(f"expected a bool mask (True = attend), got {mask.dtype}")
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    mask = mask.unsqueeze(1)
    if attn_implementation == "eager":
        out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return out.masked_fill(~mask, torch.finfo(dtype).min)
    if attn_implementation == "sdpa":
        return mask
    raise MaskError(f"attention implementation {attn_implementation!r} is not supported with explicit masks; "
                    "use 'sdpa' or 'eager'")
