"""Parallel keyframe prediction with a shared-prefix KV cache.

Decoding runs in two phases:

1. The prefix (``<bos>`` + reference tokens + every segment's duration and
   unit tokens) is computed once, batch size 1. Its keys/values do not depend
   on which keyframe reads them (masks.py), so they are shared.
2. All keyframes (or chunks of ``batch_size``) decode together, one row per
   keyframe: ``1 + h*w`` steps feed [B] and the frame tokens; each row reads
   the prefix columns its variant allows plus its own earlier frame tokens.
   ``engine="fast"`` (default) runs the steps in fast_decode.py;
   ``engine="reference"`` (``_decode_rows``, its reference twin) copies the
   prefix cache into a preallocated ``rows x (prefix + frame)`` buffer and runs
   the model's own forward (decoder.py).

Row i's tokens get the same positions and masks as in the packed training
layout, so batched, one-at-a-time and cache-free decoding agree (tests).
Sampling noise comes from a generator per keyframe seeded with
``(seed, keyframe index)``: a fixed seed gives the same keyframes whatever
the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .layout import (
    FRAME_OFFSET, KIND_BEGIN, KIND_FRAME, TokenMeta, frame_step_layout, layout_context, neighbour_ids,
    paste_window, prefix_layout, window_grid,
)
from .decoder import KVCache
from .fast_decode import decode_rows_fast
from .masks import allowed
from .model import FKGModel, digit_logits
from .vocab import UNK_UNIT, FKGVocab, merge_codes


ENGINES = ("fast", "reference")


class GenerationError(ValueError):
    """Bad decoding inputs or settings."""


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k filter (applied per code digit)
    seed: int = 0
    # Classifier-free guidance scale on the unit (one-to-one mask): each step's logits are
    # u + guidance * (c - u), c with the keyframe's unit and u with <unk> in its place. 1 = off.
    # Meant for models trained with loss.unit_dropout > 0 (they learn what <unk> means).
    guidance: float = 1.0
    # Guidance scale on the mouth-aperture plan (models with aperture_bins): adds
    # (plan_guidance - 1) * (c - v), v the same keyframe reading no plan. 1 = off. Meant for models
    # trained with loss.plan_dropout > 0 (they learn what no plan means).
    plan_guidance: float = 1.0
    # How a keyframe's aperture bin is read from the plan logits: "argmax", "median" or "mean" (pick_bins).
    plan_pick: str = "argmax"


@dataclass
class KeyframeResult:
    codes: torch.Tensor  # [N, h, w] visual codes (a windowed model's cells pasted into the reference codes)
    logits: torch.Tensor | None = None  # [N, f, sum(factors)] of the f generated cells, when requested
    apertures: torch.Tensor | None = None  # [N] the aperture bin each keyframe followed (models with a plan)
    plan_logits: torch.Tensor | None = None  # [N, bins] the (guided) plan logits the bins were read from


def _pick(logits: torch.Tensor, factors: tuple[int, ...], codebook_size: int, sampling: SamplingConfig,
          generators: list[torch.Generator] | None) -> torch.Tensor:
    """Codes ``[b]`` from logits ``[b, sum(factors)]``: greedy, or temperature / top-k sampling."""
    digits = []
    for k, lg in enumerate(digit_logits(logits.float(), factors)):
        if sampling.temperature <= 0 or generators is None:
            digits.append(lg.argmax(-1))
            continue
        lg = lg / sampling.temperature
        if 0 < sampling.top_k < lg.shape[-1]:
            kth = lg.topk(sampling.top_k, dim=-1).values[..., -1:]
            lg = lg.masked_fill(lg < kth, float("-inf"))
        u = torch.stack([torch.rand(lg.shape[-1], generator=g, dtype=torch.float64) for g in generators])
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-12))).to(lg.device, lg.dtype)
        digits.append((lg + gumbel).argmax(-1))
    return merge_codes(torch.stack(digits, -1), factors).clamp(max=codebook_size - 1)


def _prefix_pass(model: FKGModel, ids: torch.Tensor, meta: TokenMeta, position: torch.Tensor,
                 context: torch.Tensor | None = None):
    """The prefix's per-layer keys/values and (models with a plan) the aperture logits of its unit
    tokens in segment order, ``[segments, aperture_bins]``."""
    cache = KVCache()
    mask = allowed(meta, meta, model.mask_variant, model.window)
    out = model(ids[None], position[None], mask[None], meta.kind[None], meta.offset[None], past_key_values=cache,
                use_cache=True, context=None if context is None else context[None])
    return [(layer.keys, layer.values) for layer in cache.layers], out.aperture_logits


@torch.no_grad()
def generate_keyframes(model: FKGModel, ref_codes: torch.Tensor, unit_ids: Sequence[int] | torch.Tensor,
                       dur_ids: Sequence[int] | torch.Tensor, sampling: SamplingConfig | None = None,
                       batch_size: int | None = None, use_cache: bool = True,
                       return_logits: bool = False, engine: str = "fast", dedupe: bool = True,
                       context_ids: torch.Tensor | None = None,
                       apertures: torch.Tensor | None = None) -> KeyframeResult:
    """Predict the visual codes of every keyframe of one utterance.

    ``ref_codes [h, w]``: the reference image's codes; ``unit_ids``/``dur_ids [N]``: vocabulary
    ids (FKGVocab.unit_id / duration_id). ``batch_size``: keyframes decoded together
    (None = all at once, 1 = one at a time). ``use_cache=False`` recomputes the whole
    sequence at every step (slow; for checking the cache). ``engine``: "fast" runs the
    cached steps through fast_decode (the default), "reference" through the model's
    forward (its reference twin). ``dedupe``: under the one-to-one mask with
    stride 0 a keyframe depends only on its own (unit, duration) pair and the reference, so
    greedy decoding computes each distinct pair once and copies it to its repeats.
    A model with a frame window (``model.frame_window``) generates only the window's cells;
    the rest of each keyframe is ``ref_codes``. ``sampling.guidance != 1`` decodes every keyframe
    beside an unconditional twin (its unit replaced by ``<unk>``) and picks codes from the guided
    logits; both rows are fed the picked codes (one-to-one mask only). A model with
    ``unit_context`` reads each unit's neighbours: ``context_ids [N, 2]`` (previous, next unit id),
    by default the neighbours in ``unit_ids`` (``<pad>`` past the ends). A model with a mouth-aperture
    plan (``aperture_bins``) first picks each keyframe's bin from its unit token (argmax of the guided
    plan logits), then decodes the codes under it; ``apertures [N]`` imposes the bins instead.
    """
    sampling = sampling or SamplingConfig()
    vocab: FKGVocab = model.vocab
    device = next(model.parameters()).device
    unit_ids = torch.as_tensor(unit_ids, dtype=torch.long)
    dur_ids = torch.as_tensor(dur_ids, dtype=torch.long)
    if ref_codes.dim() != 2:
        raise GenerationError(f"ref_codes must be [h, w], got {tuple(ref_codes.shape)}")
    n = unit_ids.numel()
    if n == 0:
        raise GenerationError("no units to generate keyframes for", "pass a non-empty phoneme track")
    if engine not in ENGINES:
        raise GenerationError(f"engine must be one of {ENGINES}, got {engine!r}")
    if batch_size is not None and batch_size < 1:
        raise GenerationError(f"batch_size must be >= 1 or None, got {batch_size}")
    guided = float(sampling.guidance) != 1.0
    if guided and model.mask_variant != "one_to_one":
        raise GenerationError(f"guidance needs the one-to-one mask (keyframes that see only their own unit), "
                              f"not {model.mask_variant!r}", "use guidance=1 with this model")
    plan_guided = float(sampling.plan_guidance) != 1.0
    if plan_guided and not model.aperture_bins:
        raise GenerationError("plan_guidance needs a keyframe model with an aperture plan (aperture_bins > 0)",
                              "use plan_guidance=1 with this model")
    if apertures is not None:
        if not model.aperture_bins:
            raise GenerationError("apertures were given but this keyframe model has no aperture plan",
                                  "pass apertures=None")
        apertures = torch.as_tensor(apertures, dtype=torch.long).cpu()
        if apertures.shape != (n,) or bool(((apertures < 0) | (apertures >= model.aperture_bins)).any()):
            raise GenerationError(f"apertures must be [N] = [{n}] bins in 0..{model.aperture_bins - 1}, got "
                                  f"{apertures.tolist()}")
    ctx = None
    if model.unit_context:
        ctx = (neighbour_ids(unit_ids.cpu(), vocab.pad_id) if context_ids is None
               else torch.as_tensor(context_ids, dtype=torch.long).cpu())
        if ctx.shape != (n, 2):
            raise GenerationError(f"context_ids must be [N, 2] = [{n}, 2], got {tuple(ctx.shape)}")
    if (dedupe and sampling.temperature <= 0 and model.mask_variant == "one_to_one" and model.stride == 0
            and unit_ids.numel() == dur_ids.numel()):
        keys = torch.stack([unit_ids.cpu(), dur_ids.cpu()], 1)
        keys = keys if ctx is None else torch.cat([keys, ctx], 1)
        keys = keys if apertures is None else torch.cat([keys, apertures[:, None]], 1)
        pairs, inverse = torch.unique(keys, dim=0, return_inverse=True)
        if len(pairs) < n:
            res = generate_keyframes(model, ref_codes, pairs[:, 0], pairs[:, 1], sampling, batch_size, use_cache,
                                     return_logits, engine, dedupe=False,
                                     context_ids=None if ctx is None else pairs[:, 2:4],
                                     apertures=None if apertures is None else pairs[:, -1])
            inverse = inverse.to(res.codes.device)
            return KeyframeResult(codes=res.codes[inverse],
                                  logits=None if res.logits is None else res.logits[inverse],
                                  apertures=None if res.apertures is None else res.apertures[inverse],
                                  plan_logits=None if res.plan_logits is None else res.plan_logits[inverse])
    h, w = ref_codes.shape
    fh, fw = window_grid((h, w), model.frame_window)
    f = fh * fw
    model.check_grid(h * w)
    if guided:  # segments n..2n-1: the same keyframes with <unk> units (their unconditional twins)
        ids, meta, position = prefix_layout(vocab, ref_codes.cpu(), torch.cat([unit_ids, torch.full_like(
            unit_ids, vocab.special_id(UNK_UNIT))]), torch.cat([dur_ids, dur_ids]), model.stride)
        if ctx is not None:  # twins have no context either (as units dropped in training)
            ctx = torch.cat([ctx, torch.full_like(ctx, vocab.pad_id)])
    else:
        ids, meta, position = prefix_layout(vocab, ref_codes.cpu(), unit_ids, dur_ids, model.stride)
    prefix_ctx = None if ctx is None else layout_context(meta, ctx, vocab.pad_id).to(device)
    ids, meta, position = ids.to(device), meta.to(device), position.to(device)
    prefix_kv, plan, plan_logits = None, None, None
    if use_cache or model.aperture_bins:
        prefix_kv, plan_logits = _prefix_pass(model, ids, meta, position, prefix_ctx)
        prefix_kv = prefix_kv if use_cache else None
        if plan_logits is not None:
            plan_logits = _guide(plan_logits, [float(sampling.guidance)] if guided else [])
        if apertures is not None:
            plan = apertures.to(device)
        elif plan_logits is not None:
            plan = pick_bins(plan_logits, sampling.plan_pick)

    scales = ([float(sampling.guidance)] if guided else []) + ([float(sampling.plan_guidance)] if plan_guided else [])
    chunk = n if batch_size is None else batch_size
    codes = torch.zeros(n, f, dtype=torch.long, device=device)
    all_logits = torch.zeros(n, f, sum(model.factors), device=device) if return_logits else None
    for start in range(0, n, chunk):
        segs = torch.arange(start, min(n, start + chunk), device=device)
        gens = None
        if sampling.temperature > 0:
            gens = [torch.Generator().manual_seed(int(sampling.seed) * 1_000_003 + int(s)) for s in segs]

        def pick(logits: torch.Tensor, gens=gens) -> torch.Tensor:
            # rows [keyframes, their twins...]: pick from the guided logits, feed every row the same codes
            codes = _pick(_guide(logits, scales), model.factors, vocab.codebook_size, sampling, gens)
            return codes.repeat(len(scales) + 1)

        # Row groups: the keyframes; with guidance their unit twins (segments n.., <unk> units, the same
        # plan); with plan guidance their plan twins (the same segments, reading no plan: bin -1).
        rows, row_plan = [segs], None if plan is None else [plan[segs]]
        if guided:
            rows.append(segs + n)
            row_plan = None if plan is None else row_plan + [plan[segs]]
        if plan_guided:
            rows.append(segs)
            row_plan.append(torch.full_like(plan[segs], -1))
        rows = torch.cat(rows)
        row_plan = None if row_plan is None else torch.cat(row_plan)
        if use_cache and engine == "fast":
            out_codes, out_logits = decode_rows_fast(model, rows, meta, prefix_kv, f, pick, return_logits, h * w,
                                                     row_plan)
        else:
            out_codes, out_logits = _decode_rows(model, rows, ids, meta, position, prefix_kv, f, pick, h * w,
                                                 prefix_ctx, row_plan)
        codes[segs] = out_codes[:len(segs)]
        if all_logits is not None:
            all_logits[segs] = _guide(out_logits, scales)
    return KeyframeResult(codes=paste_window(ref_codes, codes.reshape(n, fh, fw), model.frame_window),
                          logits=all_logits, apertures=plan, plan_logits=plan_logits)


PLAN_PICKS = ("argmax", "median", "mean")


def pick_bins(logits: torch.Tensor, how: str = "argmax") -> torch.Tensor:
    """Aperture bins ``[N]`` from plan logits ``[N, bins]``: the likeliest bin (``argmax``), the median of
    the bin distribution (``median``: fewest expected bins off) or its rounded mean (``mean``)."""
    if how == "argmax":
        return logits.argmax(-1)
    probs = logits.float().softmax(-1)
    if how == "median":
        return (probs.cumsum(-1) < 0.5).sum(-1).clamp(max=logits.shape[-1] - 1)
    if how == "mean":
        return (probs * torch.arange(logits.shape[-1], device=logits.device)).sum(-1).round().long()
    raise GenerationError(f"plan_pick must be one of {PLAN_PICKS}, got {how!r}")


def _guide(logits: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """Guided logits from row groups ``[conditional; twin_1; ...]`` (first dim split evenly), one scale
    per twin: ``c + sum_i (scale_i - 1) * (c - twin_i)`` (with one twin, ``u + scale * (c - u)``)."""
    groups = logits.float().chunk(len(scales) + 1, dim=0)
    out = groups[0]
    for scale, twin in zip(scales, groups[1:]):
        out = out + (scale - 1.0) * (groups[0] - twin)
    return out


def _decode_rows(model: FKGModel, segs: torch.Tensor, prefix_ids: torch.Tensor, prefix_meta: TokenMeta,
                 prefix_pos: torch.Tensor, prefix_kv, f: int, pick, ref_len: int,
                 prefix_ctx: torch.Tensor | None = None,
                 aperture: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    vocab: FKGVocab = model.vocab
    b, p = segs.numel(), prefix_ids.numel()
    device = prefix_ids.device
    # Key metadata of every slot a row will ever hold: the prefix, then [B] and frame tokens 0..f-2.
    gen_kind = torch.full((b, f), KIND_FRAME, dtype=torch.long, device=device)
    gen_kind[:, 0] = KIND_BEGIN
    gen_off = (FRAME_OFFSET - 1 + torch.arange(f, device=device)).expand(b, f)
    k_meta = TokenMeta(torch.cat([prefix_meta.kind.expand(b, p), gen_kind], 1),
                       torch.cat([prefix_meta.segment.expand(b, p), segs[:, None].expand(b, f)], 1),
                       torch.cat([prefix_meta.offset.expand(b, p), gen_off], 1))
    fed = torch.full((b, f), vocab.begin_frame_id, dtype=torch.long, device=device)
    fed_pos = torch.zeros((b, f), dtype=torch.long, device=device)
    codes = torch.zeros((b, f), dtype=torch.long, device=device)
    logits_out = torch.zeros((b, f, sum(model.factors)), device=device)
    cache = KVCache.from_prefix(prefix_kv, b, f) if prefix_kv is not None else None
    for t in range(f):
        q_meta, q_pos = frame_step_layout(segs, t, ref_len, model.stride)
        fed_pos[:, t] = q_pos
        if t > 0:
            fed[:, t] = vocab.visual_ids(codes[:, t - 1])
        if cache is not None:
            k = TokenMeta(k_meta.kind[:, :p + t + 1], k_meta.segment[:, :p + t + 1], k_meta.offset[:, :p + t + 1])
            q = TokenMeta(q_meta.kind[:, None], q_meta.segment[:, None], q_meta.offset[:, None])
            mask = allowed(q, k, model.mask_variant, model.window)
            out = model(fed[:, t:t + 1], q_pos[:, None], mask, q.kind, q.offset, past_key_values=cache,
                        use_cache=True, aperture=None if aperture is None else aperture[:, None])
            logits = out.logits[:, -1]
        else:  # full recomputation of prefix + this row's tokens
            all_ids = torch.cat([prefix_ids.expand(b, p), fed[:, :t + 1]], 1)
            all_pos = torch.cat([prefix_pos.expand(b, p), fed_pos[:, :t + 1]], 1)
            m = TokenMeta(k_meta.kind[:, :p + t + 1], k_meta.segment[:, :p + t + 1], k_meta.offset[:, :p + t + 1])
            mask = allowed(m, m, model.mask_variant, model.window)
            ctx = None
            if prefix_ctx is not None:
                ctx = torch.cat([prefix_ctx.expand(b, p, 2), torch.full((b, t + 1, 2), vocab.pad_id,
                                                                        dtype=torch.long, device=device)], 1)
            ap = None
            if aperture is not None:  # read by the row's [B] and frame tokens (columns p..)
                ap = torch.full((b, p + t + 1), -1, dtype=torch.long, device=device)
                ap[:, p:] = aperture[:, None]
            logits = model(all_ids, all_pos, mask, m.kind, m.offset, context=ctx, aperture=ap).logits[:, -1]
        logits_out[:, t] = logits.float()
        codes[:, t] = pick(logits)
    return codes, logits_out


def track_ids(vocab: FKGVocab, units: Sequence, unit_key: str = "symbol") -> tuple[torch.Tensor, torch.Tensor]:
    """Unit and duration ids for ``PhonemeTrack.units`` (``unit_key``: "symbol" or "viseme")."""
    if unit_key not in ("symbol", "viseme"):
        raise GenerationError(f"unit_key must be 'symbol' or 'viseme', got {unit_key!r}")
    uid = [vocab.unit_id(getattr(u, unit_key)) for u in units]
    did = [vocab.duration_id(u.end - u.start) for u in units]
    return torch.tensor(uid, dtype=torch.long), torch.tensor(did, dtype=torch.long)
