"""Lean keyframe decoding: the Llama layers run directly on a compact per-row KV buffer.

Same computation as ``generate._decode_rows`` (its reference twin, through the
transformers forward); ``tests/test_fkg_fast_decode.py`` checks both give the same
codes and logits for every mask variant. Two things make it faster on a CPU:

* no per-step framework work: the rotary tables, the slot embeddings, the
  attention mask and the fused q/k/v and gate/up weights are prepared once, and a
  step is ~10 tensor ops per layer;
* each row keeps only the prefix columns its mask lets it read (for the one-to-one
  mask: the reference prefix and its own duration/unit tokens), gathered into a
  compact buffer, so a step's attention costs the same whatever the number of units
  (the full buffer grows with every unit's two condition tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layout import FRAME_OFFSET, KIND_BEGIN, KIND_FRAME, TokenMeta, frame_step_layout, slot_ids
from .masks import allowed
from .model import FKGModel
from .vocab import split_codes


@dataclass
class _Layer:
    norm1: torch.Tensor
    norm2: torch.Tensor
    eps1: float
    eps2: float
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None
    act: object


def _cat_bias(*linears) -> torch.Tensor | None:
    if all(lin.bias is None for lin in linears):
        return None
    return torch.cat([lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
                      for lin in linears])


def _layers(model: FKGModel) -> list[_Layer]:
    out = []
    for layer in model.backbone.layers:
        a, m = layer.self_attn, layer.mlp
        out.append(_Layer(
            layer.input_layernorm.weight, layer.post_attention_layernorm.weight,
            layer.input_layernorm.variance_epsilon, layer.post_attention_layernorm.variance_epsilon,
            torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), _cat_bias(a.q_proj, a.k_proj, a.v_proj),
            a.o_proj.weight, a.o_proj.bias,
            torch.cat([m.gate_proj.weight, m.up_proj.weight]), _cat_bias(m.gate_proj, m.up_proj),
            m.down_proj.weight, m.down_proj.bias, m.act_fn))
    return out


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def compact_prefix(model: FKGModel, segs: torch.Tensor, prefix_meta: TokenMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the prefix columns its frame side may read, as indices ``[b, P]`` (padded with 0)
    and a validity mask ``[b, P]``; ``P`` is the most any row reads."""
    b, p = segs.numel(), prefix_meta.kind.numel()
    q = TokenMeta(torch.full((b, 1), KIND_BEGIN, dtype=torch.long, device=segs.device), segs[:, None],
                  torch.full((b, 1), FRAME_OFFSET - 1, dtype=torch.long, device=segs.device))
    k = TokenMeta(prefix_meta.kind.expand(b, p), prefix_meta.segment.expand(b, p), prefix_meta.offset.expand(b, p))
    visible = allowed(q, k, model.mask_variant, model.window)[:, 0]  # [b, p]
    counts = visible.sum(1)
    width = int(counts.max())
    # stable sort puts each row's visible columns first, in prefix order
    order = torch.sort((~visible).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=segs.device)[None] < counts[:, None]
    return torch.where(valid, order, torch.zeros_like(order)), valid


@torch.no_grad()
def decode_rows_fast(model: FKGModel, segs: torch.Tensor, prefix_meta: TokenMeta, prefix_kv, f: int,
                     pick, return_logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Codes ``[b, f]`` (and logits ``[b, f, sum(factors)]``) of keyframes ``segs``.

    ``prefix_kv``: per layer ``(keys, values)`` ``[1, heads, p, head_dim]`` of the shared prefix;
    ``pick(logits [b, sum(factors)]) -> codes [b]`` chooses each step's codes (greedy or sampled).
    """
    vocab = model.vocab
    cfg = model.llama_config
    device = segs.device
    b = segs.numel()
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    layers = _layers(model)
    dtype = layers[0].qkv.dtype

    index, valid = compact_prefix(model, segs, prefix_meta)
    width = index.shape[1]
    gather = index[:, None, :, None].expand(b, kv_heads, width, head_dim)
    kbuf, vbuf = [], []
    for k, v in prefix_kv:
        kb = k.new_empty((b, kv_heads, width + f, head_dim))
        vb = v.new_empty((b, kv_heads, width + f, head_dim))
        kb[:, :, :width] = k.expand(b, -1, -1, -1).gather(2, gather)
        vb[:, :, :width] = v.expand(b, -1, -1, -1).gather(2, gather)
        kbuf.append(kb)
        vbuf.append(vb)
    mask = torch.cat([valid, torch.ones((b, f), dtype=torch.bool, device=device)], 1)[:, None, None, :]

    # per-step tables: positions -> rotary cos/sin, slot embeddings, the [B] token's embedding
    steps = [frame_step_layout(segs, t, f, model.stride) for t in range(f)]
    positions = torch.stack([pos for _, pos in steps], 1)  # [b, f]
    probe = torch.zeros(1, dtype=dtype, device=device)
    cos, sin = model.backbone.rotary_emb(probe, positions)
    cos, sin = cos.to(dtype)[:, None], sin.to(dtype)[:, None]  # [b, 1, f, head_dim]
    offsets = FRAME_OFFSET - 1 + torch.arange(f, device=device)
    kinds = torch.full((f,), KIND_FRAME, dtype=torch.long, device=device)
    kinds[0] = KIND_BEGIN
    slot_vec = model.slot_embed(slot_ids(kinds, offsets, model.size.max_frame_tokens))  # [f, hidden]
    begin = model.backbone.embed_tokens(torch.tensor([vocab.begin_frame_id], device=device))[0]
    final_norm = model.backbone.norm

    codes = torch.zeros((b, f), dtype=torch.long, device=device)
    logits_out = torch.zeros((b, f, sum(model.factors)), device=device) if return_logits else None
    scale = head_dim ** -0.5
    for t in range(f):
        if t == 0:
            x = (begin + slot_vec[0]).expand(b, -1)
        else:
            digits = split_codes(codes[:, t - 1], model.factors)
            x = slot_vec[t] + sum(emb(digits[:, i]) for i, emb in enumerate(model.code_embed))
        x = x.to(dtype)
        c, s = cos[:, :, t:t + 1], sin[:, :, t:t + 1]
        length = width + t + 1
        step_mask = mask[..., :length]
        for li, ly in enumerate(layers):
            h = _rms(x, ly.norm1, ly.eps1)
            qkv = F.linear(h, ly.qkv, ly.qkv_bias)
            q = qkv[:, :q_width].view(b, heads, 1, head_dim)
            k = qkv[:, q_width:q_width + kv_width].view(b, kv_heads, 1, head_dim)
            v = qkv[:, q_width + kv_width:].view(b, kv_heads, 1, head_dim)
            q, k = _rotate(q, c, s), _rotate(k, c, s)
            kbuf[li][:, :, width + t:width + t + 1] = k
            vbuf[li][:, :, width + t:width + t + 1] = v
            att = F.scaled_dot_product_attention(q, kbuf[li][:, :, :length], vbuf[li][:, :, :length],
                                                 attn_mask=step_mask, scale=scale,
                                                 enable_gqa=kv_heads != heads)
            x = x + F.linear(att.reshape(b, q_width), ly.o, ly.o_bias)
            h = _rms(x, ly.norm2, ly.eps2)
            gate, up = F.linear(h, ly.gate_up, ly.gate_up_bias).chunk(2, dim=-1)
            x = x + F.linear(ly.act(gate) * up, ly.down, ly.down_bias)
        logits = model.head(final_norm(x))
        if logits_out is not None:
            logits_out[:, t] = logits.float()
        codes[:, t] = pick(logits)
    return codes, logits_out
