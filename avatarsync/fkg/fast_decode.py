"""Lean keyframe decoding: the Llama layers run directly on shared and per-row KV buffers.

Same computation as ``generate._decode_rows`` (its reference twin, through the
model's forward); ``tests/test_fkg_fast_decode.py`` checks both give the same
codes and logits for every mask variant. Two things make it faster on a CPU:

* no per-step framework work: the rotary tables, the slot embeddings, the
  attention mask and the fused q/k/v and gate/up weights are prepared once, and a
  step is ~10 tensor ops per layer;
* the prefix columns every row may read (the reference prefix) are kept once and
  attended with one matrix product for all rows; the other columns a row may read
  (for the one-to-one mask: its own duration/unit tokens) go into a compact per-row
  buffer beside its frame tokens. One softmax runs over both parts, so the result is
  the same attention, but a step reads the shared keys once instead of once per row,
  and costs the same whatever the number of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .decoder import rms_norm, rotate
from .layout import FRAME_OFFSET, KIND_BEGIN, TokenMeta, frame_step_layout, slot_ids
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


def split_prefix(model: FKGModel, segs: torch.Tensor, prefix_meta: TokenMeta
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which prefix columns the frame side of each row may read, split into the columns every row
    reads (``shared [S]``) and the rest per row (``own [b, P]``, padded with 0, and its validity mask)."""
    b, p = segs.numel(), prefix_meta.kind.numel()
    q = TokenMeta(torch.full((b, 1), KIND_BEGIN, dtype=torch.long, device=segs.device), segs[:, None],
                  torch.full((b, 1), FRAME_OFFSET - 1, dtype=torch.long, device=segs.device))
    k = TokenMeta(prefix_meta.kind.expand(b, p), prefix_meta.segment.expand(b, p), prefix_meta.offset.expand(b, p))
    visible = allowed(q, k, model.mask_variant, model.window)[:, 0]  # [b, p]
    common = visible.all(0)
    shared = torch.nonzero(common).flatten()
    rest = visible & ~common
    counts = rest.sum(1)
    width = int(counts.max()) if b else 0
    # stable sort puts each row's remaining columns first, in prefix order
    order = torch.sort((~rest).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=segs.device)[None] < counts[:, None]
    return shared, torch.where(valid, order, torch.zeros_like(order)), valid


def _attend(q: torch.Tensor, shared_k: torch.Tensor, shared_v: torch.Tensor, own_k: torch.Tensor,
            own_v: torch.Tensor, own_ok: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of ``q [b, h, 1, d]`` over keys shared by all rows ``[h, S, d]`` and each row's own
    keys ``[b, h, L, d]`` (``own_ok [b, 1, 1, L]`` False = masked), one softmax over both."""
    b, h, _, d = q.shape
    qh = q.reshape(b, h, d).transpose(0, 1)  # [h, b, d]
    s_shared = torch.matmul(qh, shared_k.transpose(1, 2)).transpose(0, 1).unsqueeze(2)  # [b, h, 1, S]
    s_own = torch.matmul(q, own_k.transpose(2, 3))  # [b, h, 1, L]
    if own_ok is not None:
        s_own = s_own.masked_fill(~own_ok, float("-inf"))
    weights = torch.softmax(torch.cat([s_shared, s_own], -1).float() * scale, -1).to(q.dtype)
    n = shared_k.shape[1]
    out = torch.matmul(weights[:, :, 0, :n].transpose(0, 1), shared_v).transpose(0, 1)  # [b, h, d]
    return out.unsqueeze(2) + torch.matmul(weights[..., n:], own_v)


@torch.no_grad()
def decode_rows_fast(model: FKGModel, segs: torch.Tensor, prefix_meta: TokenMeta, prefix_kv, f: int,
                     pick, return_logits: bool, ref_len: int, aperture: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Codes ``[b, f]`` (and logits ``[b, f, sum(factors)]``) of keyframes ``segs``.

    ``prefix_kv``: per layer ``(keys, values)`` ``[1, heads, p, head_dim]`` of the shared prefix;
    ``pick(logits [b, sum(factors)]) -> codes [b]`` chooses each step's codes (greedy or sampled).
    ``ref_len``: reference codes in the prefix (``f`` for a full-grid model, more for a windowed one).
    ``aperture [b]``: each row's aperture bin, read at every step (models with ``aperture_bins``; -1 = none).
    """
    vocab = model.vocab
    cfg = model.decoder_config
    device = segs.device
    b = segs.numel()
    heads = kv_heads = cfg.num_heads
    head_dim = cfg.head_dim
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    layers = _layers(model)
    dtype = layers[0].qkv.dtype

    shared, index, valid = split_prefix(model, segs, prefix_meta)
    width = index.shape[1]
    gather = index[:, None, :, None].expand(b, kv_heads, width, head_dim)
    shared_kv, kbuf, vbuf = [], [], []
    for k, v in prefix_kv:
        shared_kv.append((k[0, :, shared], v[0, :, shared]))
        kb = k.new_empty((b, heads, width + f, head_dim))
        vb = v.new_empty((b, heads, width + f, head_dim))
        kb[:, :, :width] = k.expand(b, -1, -1, -1).gather(2, gather)
        vb[:, :, :width] = v.expand(b, -1, -1, -1).gather(2, gather)
        kbuf.append(kb)
        vbuf.append(vb)
    own_ok = None
    if not bool(valid.all()):
        own_ok = torch.cat([valid, torch.ones((b, f), dtype=torch.bool, device=device)], 1)[:, None, None, :]

    # per-step tables: positions -> rotary cos/sin, slot embeddings, the [B] token's embedding
    steps = [frame_step_layout(segs, t, ref_len, model.stride) for t in range(f)]
    positions = torch.stack([pos for _, pos in steps], 1)  # [b, f]
    probe = torch.zeros(1, dtype=dtype, device=device)
    cos, sin = model.backbone.rotary_emb(probe, positions)
    cos, sin = cos.to(dtype)[:, None], sin.to(dtype)[:, None]  # [b, 1, f, head_dim]
    kinds = torch.stack([meta.kind[0] for meta, _ in steps])  # a step's kind and offset are the same in every row
    offsets = torch.stack([meta.offset[0] for meta, _ in steps])
    slot_vec = model.slot_embed(slot_ids(kinds, offsets, model.size.max_frame_tokens))  # [f, hidden]
    begin = model.backbone.embed_tokens(torch.tensor([vocab.begin_frame_id], device=device))[0]
    plan = 0.0
    if model.aperture_embed is not None:  # every step of a row reads its aperture bin
        if aperture is None:
            raise ValueError("this keyframe model plans the mouth aperture: pass each row's aperture bin")
        aperture = aperture.to(device)  # bin -1 reads no plan (a plan-guidance twin)
        plan = model.aperture_embed(aperture.clamp(min=0)) * (aperture >= 0).unsqueeze(-1).to(dtype)  # [b, hidden]
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
        x = (x + plan).to(dtype)
        c, s = cos[:, :, t:t + 1], sin[:, :, t:t + 1]
        length = width + t + 1
        step_ok = own_ok[..., :length] if own_ok is not None else None
        for li, ly in enumerate(layers):
            h = rms_norm(x, ly.norm1, ly.eps1)
            qkv = F.linear(h, ly.qkv, ly.qkv_bias)
            q = qkv[:, :q_width].view(b, heads, 1, head_dim)
            k = qkv[:, q_width:q_width + kv_width].view(b, kv_heads, 1, head_dim)
            v = qkv[:, q_width + kv_width:].view(b, kv_heads, 1, head_dim)
            q, k = rotate(q, c, s), rotate(k, c, s)
            kbuf[li][:, :, width + t:width + t + 1] = k
            vbuf[li][:, :, width + t:width + t + 1] = v
            att = _attend(q, *shared_kv[li], kbuf[li][:, :, :length], vbuf[li][:, :, :length], step_ok, scale)
            x = x + F.linear(att.reshape(b, q_width), ly.o, ly.o_bias)
            h = rms_norm(x, ly.norm2, ly.eps2)
            gate, up = F.linear(h, ly.gate_up, ly.gate_up_bias).chunk(2, dim=-1)
            x = x + F.linear(ly.act(gate) * up, ly.down, ly.down_bias)
        logits = model.head(final_norm(x))
        if logits_out is not None:
            logits_out[:, t] = logits.float()
        codes[:, t] = pick(logits)
    return codes, logits_out
