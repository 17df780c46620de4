"""Sequence layout of the keyframe model (paper Sec. 3.2, FKG).

One utterance with N units is packed as::

    [<bos>] [reference tokens (h*w)]                       the prefix (R = 1 + h*w tokens)
    [dur_0] [unit_0] [B] [frame_0 tokens (f)]              segment 0
    ...
    [dur_N-1] [unit_N-1] [B] [frame_N-1 tokens]            segment N-1

Frame tokens cover the whole ``h x w`` grid (``f = h*w``, the paper's layout) or,
for a model with a frame window, only the grid cells inside it (``window_cells``;
the rest of each keyframe is the reference's codes, ``paste_window``).

Every token carries metadata used by the attention masks (masks.py):
``kind`` (what it is), ``segment`` (its unit index, -1 in the prefix) and
``offset`` (its index inside the segment: 0 duration, 1 unit, 2 [B], 3+t
frame token t). Position ids are explicit: prefix token j sits at position j,
segment i token k at ``R + stride * i + k``. With ``stride = 0`` (the
one-to-one default) every segment sits at the same positions, so a keyframe
is computed exactly as if its unit were the only one in the utterance.

Training targets are visual codes: the logits at [B] predict frame token 0,
the logits at frame token t predict token t+1 (``labels``; -100 elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .vocab import FKGVocab

KIND_PAD, KIND_REF, KIND_DUR, KIND_UNIT, KIND_BEGIN, KIND_FRAME = range(6)
KIND_NAMES = ("pad", "ref", "dur", "unit", "begin", "frame")
COND_OFFSETS = 2  # duration + unit tokens at the head of each segment
FRAME_OFFSET = 3  # first frame token's offset inside a segment
IGNORE = -100


class LayoutError(ValueError):
    """Inputs that cannot be packed into an FKG sequence."""


def prefix_length(ref_len: int) -> int:
    """Tokens before the first segment: ``<bos>`` and the ``ref_len`` reference codes."""
    return 1 + ref_len


def segment_length(frame_len: int) -> int:
    return FRAME_OFFSET + frame_len


@dataclass
class TokenMeta:
    """Per-token metadata tensors (same shape): what the attention masks are built from."""

    kind: torch.Tensor
    segment: torch.Tensor
    offset: torch.Tensor

    def to(self, device: torch.device | str) -> "TokenMeta":
        return TokenMeta(self.kind.to(device), self.segment.to(device), self.offset.to(device))


@dataclass
class PackedUtterance:
    """One utterance laid out as a single sequence (1-D tensors of length L)."""

    ids: torch.Tensor
    kind: torch.Tensor
    segment: torch.Tensor
    offset: torch.Tensor
    position: torch.Tensor
    labels: torch.Tensor
    n_units: int
    grid: tuple[int, int]  # the frame tokens' grid (the window's, for a windowed model)
    ref_grid: tuple[int, int]  # the reference grid

    @property
    def meta(self) -> TokenMeta:
        return TokenMeta(self.kind, self.segment, self.offset)

    def __len__(self) -> int:
        return int(self.ids.numel())


def _check(ref_codes: torch.Tensor, unit_ids: torch.Tensor, dur_ids: torch.Tensor,
           frame_codes: torch.Tensor | None) -> tuple[int, int]:
    if ref_codes.dim() != 2:
        raise LayoutError(f"reference codes must be [h, w], got shape {tuple(ref_codes.shape)}")
    if unit_ids.dim() != 1 or dur_ids.shape != unit_ids.shape:
        raise LayoutError(f"unit and duration ids must be 1-D of equal length, got {tuple(unit_ids.shape)} "
                          f"and {tuple(dur_ids.shape)}")
    if unit_ids.numel() == 0:
        raise LayoutError("an utterance needs at least one unit", "drop empty tracks before packing")
    if frame_codes is not None and (frame_codes.dim() != 3 or frame_codes.shape[0] != unit_ids.numel()):
        raise LayoutError(f"frame codes must be [N, h, w] with N = {unit_ids.numel()}, "
                          f"got {tuple(frame_codes.shape)}")
    return int(ref_codes.shape[0]), int(ref_codes.shape[1])


def pack_utterance(vocab: FKGVocab, ref_codes: torch.Tensor, unit_ids: Sequence[int] | torch.Tensor,
                   dur_ids: Sequence[int] | torch.Tensor, frame_codes: torch.Tensor | None = None,
                   stride: int = 0, frame_grid: tuple[int, int] | None = None) -> PackedUtterance:
    """Lay out one utterance; ``frame_codes=None`` leaves frames as pad (no labels).

    ``frame_codes [N, fh, fw]`` may be a window of the reference grid; without codes,
    ``frame_grid`` gives its shape (default: the reference grid)."""
    unit_ids = torch.as_tensor(unit_ids, dtype=torch.long)
    dur_ids = torch.as_tensor(dur_ids, dtype=torch.long)
    h, w = _check(ref_codes, unit_ids, dur_ids, frame_codes)
    if frame_codes is not None:
        frame_grid = (int(frame_codes.shape[1]), int(frame_codes.shape[2]))
    fh, fw = frame_grid or (h, w)
    n, f = unit_ids.numel(), fh * fw
    r, s = prefix_length(h * w), segment_length(f)

    prefix_ids = torch.cat([torch.tensor([vocab.bos_id]), vocab.visual_ids(ref_codes.reshape(-1))])
    seg_ids = torch.full((n, s), vocab.pad_id, dtype=torch.long)
    seg_ids[:, 0] = dur_ids
    seg_ids[:, 1] = unit_ids
    seg_ids[:, 2] = vocab.begin_frame_id
    labels = torch.full((n, s), IGNORE, dtype=torch.long)
    if frame_codes is not None:
        codes = frame_codes.reshape(n, f).long()
        seg_ids[:, FRAME_OFFSET:] = vocab.visual_ids(codes)
        labels[:, FRAME_OFFSET - 1:-1] = codes  # [B] predicts token 0, token t predicts t+1

    seg_kind = torch.full((s,), KIND_FRAME, dtype=torch.long)
    seg_kind[:3] = torch.tensor([KIND_DUR, KIND_UNIT, KIND_BEGIN])
    offsets = torch.arange(s)
    seg_index = torch.arange(n).unsqueeze(1)
    return PackedUtterance(
        ids=torch.cat([prefix_ids, seg_ids.reshape(-1)]),
        kind=torch.cat([torch.full((r,), KIND_REF, dtype=torch.long), seg_kind.repeat(n)]),
        segment=torch.cat([torch.full((r,), -1, dtype=torch.long), seg_index.expand(n, s).reshape(-1)]),
        offset=torch.cat([torch.arange(r), offsets.repeat(n)]),
        position=torch.cat([torch.arange(r), (r + stride * seg_index + offsets).reshape(-1)]),
        labels=torch.cat([torch.full((r,), IGNORE, dtype=torch.long), labels.reshape(-1)]),
        n_units=n,
        grid=(fh, fw),
        ref_grid=(h, w),
    )


def unpack_utterance(vocab: FKGVocab, packed: PackedUtterance) -> dict[str, torch.Tensor]:
    """Inverse of ``pack_utterance``: reference codes, unit ids, duration ids and frame codes."""
    fh, fw = packed.grid
    h, w = packed.ref_grid
    r, s, n = prefix_length(h * w), segment_length(fh * fw), packed.n_units
    segs = packed.ids[r:r + n * s].reshape(n, s)
    return {
        "ref_codes": vocab.codes_of(packed.ids[1:r]).reshape(h, w),
        "unit_ids": segs[:, 1].clone(),
        "dur_ids": segs[:, 0].clone(),
        "frame_codes": vocab.codes_of(segs[:, FRAME_OFFSET:]).reshape(n, fh, fw),
    }


# -- unit context -----------------------------------------------------------------------------
def neighbour_ids(unit_ids: torch.Tensor, pad_id: int, before: int | None = None,
                  after: int | None = None) -> torch.Tensor:
    """``[N, 2]``: the previous and next unit id of every unit (``before`` / ``after`` or ``pad_id``
    past the ends)."""
    unit_ids = torch.as_tensor(unit_ids, dtype=torch.long)
    first = torch.tensor([pad_id if before is None else before], dtype=torch.long, device=unit_ids.device)
    last = torch.tensor([pad_id if after is None else after], dtype=torch.long, device=unit_ids.device)
    return torch.stack([torch.cat([first, unit_ids[:-1]]), torch.cat([unit_ids[1:], last])], 1)


def layout_context(meta: TokenMeta, neighbours: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Context ids ``[..., L, 2]`` of a layout: segment i's unit token gets ``neighbours[i]``
    (``[N, 2]``), every other token ``pad_id``."""
    is_unit = meta.kind == KIND_UNIT
    seg = meta.segment.clamp(min=0)
    ctx = neighbours.to(seg.device)[seg]
    return torch.where(is_unit.unsqueeze(-1), ctx, torch.full_like(ctx, pad_id))


# -- frame windows ----------------------------------------------------------------------------
def window_cells(grid: tuple[int, int], box: Sequence[float] | None) -> tuple[int, int, int, int]:
    """Grid rows ``r0:r1`` and columns ``c0:c1`` covered by ``box`` (x0, y0, x1, y1 as fractions
    of the grid; cells partly inside count). ``None`` or empty: the whole grid."""
    h, w = int(grid[0]), int(grid[1])
    if not box:
        return 0, h, 0, w
    x0, y0, x1, y1 = check_window(box)
    return int(y0 * h), math.ceil(y1 * h), int(x0 * w), math.ceil(x1 * w)


def check_window(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``box`` as four floats (x0, y0, x1, y1), or a LayoutError when it is not a box inside the grid."""
    if len(box) != 4:
        raise LayoutError(f"a frame window is (x0, y0, x1, y1) fractions of the grid, got {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise LayoutError(f"frame window {list(box)} is not inside the unit square with x0 < x1 and y0 < y1",
                          "give fractions of the token grid, for example [0.25, 0.5, 0.75, 1.0]")
    return x0, y0, x1, y1


def window_grid(grid: tuple[int, int], box: Sequence[float] | None) -> tuple[int, int]:
    r0, r1, c0, c1 = window_cells(grid, box)
    return r1 - r0, c1 - c0


def crop_window(codes: torch.Tensor, box: Sequence[float] | None) -> torch.Tensor:
    """The window's cells of code grids ``[..., h, w]``."""
    r0, r1, c0, c1 = window_cells(tuple(codes.shape[-2:]), box)
    return codes[..., r0:r1, c0:c1]


def paste_window(ref_codes: torch.Tensor, window_codes: torch.Tensor, box: Sequence[float] | None) -> torch.Tensor:
    """Full grids ``[N, h, w]``: the reference ``[h, w]`` with ``window_codes [N, wh, ww]`` in the window."""
    r0, r1, c0, c1 = window_cells(tuple(ref_codes.shape), box)
    if tuple(window_codes.shape[1:]) != (r1 - r0, c1 - c0):
        raise LayoutError(f"window codes {tuple(window_codes.shape)} do not fit window {(r1 - r0, c1 - c0)}")
    out = ref_codes.to(window_codes.device, window_codes.dtype).expand(window_codes.shape[0], -1, -1).clone()
    out[:, r0:r1, c0:c1] = window_codes
    return out


def collate_packed(items: list[PackedUtterance], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed utterances into ``[B, L]`` tensors (pad tokens have kind ``KIND_PAD``)."""
    if not items:
        raise LayoutError("cannot collate an empty batch")
    L = max(len(x) for x in items)
    out = {
        "ids": torch.full((len(items), L), pad_id, dtype=torch.long),
        "kind": torch.full((len(items), L), KIND_PAD, dtype=torch.long),
        "segment": torch.full((len(items), L), -1, dtype=torch.long),
        "offset": torch.zeros((len(items), L), dtype=torch.long),
        "position": torch.zeros((len(items), L), dtype=torch.long),
        "labels": torch.full((len(items), L), IGNORE, dtype=torch.long),
    }
    for b, x in enumerate(items):
        n = len(x)
        for key in ("ids", "kind", "segment", "offset", "position", "labels"):
            out[key][b, :n] = getattr(x, key)
    return out


def slot_ids(kind: torch.Tensor, offset: torch.Tensor, max_frame_tokens: int) -> torch.Tensor:
    """Learned-slot index of each token: where it sits inside the reference prefix or inside its
    segment (so the model knows which grid cell it predicts next). Prefix slots are
    ``0..max_frame_tokens``, segment slots follow; padding uses slot 0."""
    seg_side = (kind != KIND_REF) & (kind != KIND_PAD)
    slot = torch.where(seg_side, offset + max_frame_tokens + 1, offset)
    return torch.where(kind == KIND_PAD, torch.zeros_like(slot), slot)


def n_slots(max_frame_tokens: int) -> int:
    return 2 * max_frame_tokens + FRAME_OFFSET + 1


def prefix_layout(vocab: FKGVocab, ref_codes: torch.Tensor, unit_ids: torch.Tensor, dur_ids: torch.Tensor,
                  stride: int) -> tuple[torch.Tensor, TokenMeta, torch.Tensor]:
    """Decoding prefix shared by every keyframe of an utterance: the reference prefix, then
    every segment's duration and unit tokens (ids, metadata, positions; 1-D)."""
    unit_ids = torch.as_tensor(unit_ids, dtype=torch.long)
    dur_ids = torch.as_tensor(dur_ids, dtype=torch.long)
    h, w = _check(ref_codes, unit_ids, dur_ids, None)
    n, r = unit_ids.numel(), prefix_length(h * w)
    seg = torch.arange(n).repeat_interleave(COND_OFFSETS)
    off = torch.arange(COND_OFFSETS).repeat(n)
    cond_ids = torch.stack([dur_ids, unit_ids], dim=1).reshape(-1)
    ids = torch.cat([torch.tensor([vocab.bos_id]), vocab.visual_ids(ref_codes.reshape(-1)), cond_ids])
    kind = torch.cat([torch.full((r,), KIND_REF, dtype=torch.long),
                      torch.tensor([KIND_DUR, KIND_UNIT]).repeat(n)])
    meta = TokenMeta(kind, torch.cat([torch.full((r,), -1, dtype=torch.long), seg]),
                     torch.cat([torch.arange(r), off]))
    position = torch.cat([torch.arange(r), r + stride * seg + off])
    return ids, meta, position


def frame_step_layout(segments: torch.Tensor, step: int, ref_len: int, stride: int
                      ) -> tuple[TokenMeta, torch.Tensor]:
    """Metadata and positions of the token fed at decoding ``step`` for keyframes ``segments``
    (step 0 feeds [B], step t > 0 feeds frame token t-1); shapes ``[b]``. ``ref_len``: the
    number of reference codes (h*w)."""
    kind = torch.full_like(segments, KIND_BEGIN if step == 0 else KIND_FRAME)
    offset = torch.full_like(segments, FRAME_OFFSET - 1 + step)
    position = prefix_length(ref_len) + stride * segments + offset
    return TokenMeta(kind, segments.clone(), offset), position
