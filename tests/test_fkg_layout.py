"""FKG vocabulary, sequence layout and the four Text-Frame attention masks (cell by cell)."""

import pytest
import torch

from avatarsync.fkg.layout import (
    IGNORE, KIND_PAD, LayoutError, TokenMeta, collate_packed, crop_window, pack_utterance, paste_window,
    prefix_layout, unpack_utterance, window_cells, window_grid,
)
from avatarsync.fkg.masks import MaskError, allowed, backend_mask, canonical_variant, packed_mask
from avatarsync.fkg.vocab import FKGVocab, VocabError, build_unit_list, code_factors, merge_codes, split_codes


def _vocab(k=16, **kw):
    return FKGVocab(units=["a", "b", "c", "sil"], codebook_size=k, **kw)


def test_vocab_ids_are_disjoint_and_round_trip(tmp_path):
    v = _vocab()
    assert v.unit_symbol(v.unit_id("b")) == "b"
    assert v.unit_symbol(v.unit_id("zzz")) == "<unk>"
    ids = {v.pad_id, v.bos_id, v.begin_frame_id, v.special_id("<unk>"), *(v.unit_id(u) for u in v.units),
           *(v.duration_offset + b for b in range(v.n_duration_bins))}
    assert len(ids) == 4 + len(v.units) + v.n_duration_bins and max(ids) < v.visual_offset
    codes = torch.arange(16)
    assert torch.equal(v.codes_of(v.visual_ids(codes)), codes)
    assert v.size == v.visual_offset + 16
    assert v.duration_bin(0.0) == 0 and v.duration_bin(10.0) == v.n_duration_bins - 1
    assert v.duration_bin(0.1) < v.duration_bin(0.3)
    v.save(tmp_path / "vocab.json")
    w = FKGVocab.load(tmp_path / "vocab.json")
    assert w.to_dict() == v.to_dict() and w.factors == v.factors
    with pytest.raises(VocabError):
        v.visual_ids(torch.tensor([16]))
    assert build_unit_list([["b", "a"], ["c", "a"]]) == ["a", "b", "c"]


@pytest.mark.parametrize("k,above,factors", [(4096, 4096, (4096,)), (2 ** 14, 4096, (128, 128)),
                                             (2 ** 13, 4096, (128, 64)), (5000, 4096, (71, 71))])
def test_code_factorization_round_trip(k, above, factors):
    assert code_factors(k, above) == factors
    codes = torch.randint(0, k, (7, 5))
    digits = split_codes(codes, factors)
    assert digits.shape == (7, 5, len(factors))
    assert all(int(digits[..., i].max()) < f for i, f in enumerate(factors))
    assert torch.equal(merge_codes(digits, factors), codes)


def test_pack_unpack_round_trip_and_labels():
    v = _vocab()
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 16, (2, 3), generator=g)
    frames = torch.randint(0, 16, (3, 2, 3), generator=g)
    units = [v.unit_id(u) for u in "abc"]
    durs = [v.duration_id(d) for d in (0.05, 0.1, 0.2)]
    p = pack_utterance(v, ref, units, durs, frames, stride=3)
    assert len(p) == (1 + 6) + 3 * (3 + 6)
    back = unpack_utterance(v, p)
    assert torch.equal(back["ref_codes"], ref) and torch.equal(back["frame_codes"], frames)
    assert back["unit_ids"].tolist() == units and back["dur_ids"].tolist() == durs
    # segment 1 = [dur, unit, B, f0..f5]; B predicts f0, f_t predicts f_{t+1}, the last predicts nothing
    s1 = 7 + 9
    assert p.labels[s1:s1 + 2].tolist() == [IGNORE, IGNORE]
    assert p.labels[s1 + 2:s1 + 8].tolist() == frames[1].flatten().tolist()
    assert p.labels[s1 + 8] == IGNORE
    assert (p.labels != IGNORE).sum() == 3 * 6
    # positions: prefix 0..6, segment i at 7 + 3 i + k
    assert p.position[:7].tolist() == list(range(7))
    assert p.position[s1:s1 + 9].tolist() == [7 + 3 + k for k in range(9)]
    assert pack_utterance(v, ref, units, durs, frames, stride=0).position[s1:s1 + 9].tolist() == [7 + k for k in range(9)]


def test_frame_window_cells_crop_and_paste():
    assert window_cells((16, 16), None) == (0, 16, 0, 16) and window_cells((16, 16), []) == (0, 16, 0, 16)
    # cells partly inside count: rows floor(0.58*16)=9 .. ceil(0.88*16)=15, cols 4 .. 12
    assert window_cells((16, 16), [0.3, 0.58, 0.7, 0.88]) == (9, 15, 4, 12)
    assert window_grid((16, 16), [0.3, 0.58, 0.7, 0.88]) == (6, 8)
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 99, (4, 6), generator=g)
    frames = torch.randint(100, 199, (3, 4, 6), generator=g)
    box = [0.5, 0.5, 1.0, 1.0]  # bottom-right 2 x 3 cells
    win = crop_window(frames, box)
    assert win.shape == (3, 2, 3) and torch.equal(win, frames[:, 2:, 3:])
    full = paste_window(ref, win, box)
    assert torch.equal(full[:, 2:, 3:], frames[:, 2:, 3:])
    outside = torch.ones(4, 6, dtype=torch.bool)
    outside[2:, 3:] = False
    assert bool((full[:, outside] == ref[outside]).all())
    assert torch.equal(paste_window(ref, frames, None), frames)
    for bad in ([0.5, 0.5, 0.4, 1.0], [0.0, 0.0, 1.2, 1.0], [0.1, 0.2]):
        with pytest.raises(LayoutError):
            window_cells((4, 6), bad)
    with pytest.raises(LayoutError):
        paste_window(ref, frames[:, :1], box)


def test_pack_unpack_with_a_frame_window():
    v = _vocab()
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 16, (4, 4), generator=g)
    win = torch.randint(0, 16, (2, 2, 3), generator=g)
    units = [v.unit_id(u) for u in "ab"]
    durs = [v.duration_id(d) for d in (0.05, 0.1)]
    p = pack_utterance(v, ref, units, durs, win, stride=0)
    assert p.grid == (2, 3) and p.ref_grid == (4, 4)
    assert len(p) == (1 + 16) + 2 * (3 + 6) and (p.labels != IGNORE).sum() == 2 * 6
    back = unpack_utterance(v, p)
    assert torch.equal(back["ref_codes"], ref) and torch.equal(back["frame_codes"], win)
    # segment 1 starts after the full reference prefix; stride 0 puts every segment at the same positions
    assert p.position[17 + 9:17 + 18].tolist() == p.position[17:17 + 9].tolist() == [17 + k for k in range(9)]
    empty = pack_utterance(v, ref, units, durs, frame_grid=(2, 3))
    assert len(empty) == len(p) and bool((empty.labels == IGNORE).all())


def test_prefix_layout_matches_packed_positions():
    v = _vocab()
    ref = torch.zeros(1, 2, dtype=torch.long)
    units, durs = [v.unit_id(u) for u in "ab"], [v.duration_id(0.1)] * 2
    p = pack_utterance(v, ref, units, durs, torch.zeros(2, 1, 2, dtype=torch.long), stride=3)
    ids, meta, pos = prefix_layout(v, ref, torch.tensor(units), torch.tensor(durs), stride=3)
    cond = (p.kind >= 1) & (p.kind <= 3)  # ref, dur, unit
    assert torch.equal(ids, p.ids[cond]) and torch.equal(pos, p.position[cond])
    assert torch.equal(meta.segment, p.segment[cond]) and torch.equal(meta.offset, p.offset[cond])


# -- masks, cell by cell ------------------------------------------------------------------------
# 3 units, reference grid 1x2 (prefix: <bos> r0 r1), frames of 2 tokens; columns grouped as
# [prefix 3] [seg0: d u B f0 f1] [seg1: ...] [seg2: ...]
_COMMON_HEAD = [
    "111 00000 00000 00000",  # <bos>
    "111 00000 00000 00000",  # r0
    "111 00000 00000 00000",  # r1
]
EXPECTED = {
    "one_to_one": _COMMON_HEAD + [
        "111 10000 00000 00000",  # d0
        "111 11000 00000 00000",  # u0
        "111 11100 00000 00000",  # B0
        "111 11110 00000 00000",  # f0_0
        "111 11111 00000 00000",  # f0_1
        "111 00000 10000 00000",  # d1
        "111 00000 11000 00000",  # u1
        "111 00000 11100 00000",  # B1
        "111 00000 11110 00000",  # f1_0
        "111 00000 11111 00000",  # f1_1
        "111 00000 00000 10000",  # d2
        "111 00000 00000 11000",  # u2
        "111 00000 00000 11100",  # B2
        "111 00000 00000 11110",  # f2_0
        "111 00000 00000 11111",  # f2_1
    ],
    "accumulative": _COMMON_HEAD + [
        "111 10000 00000 00000",
        "111 11000 00000 00000",
        "111 11100 00000 00000",
        "111 11110 00000 00000",
        "111 11111 00000 00000",
        "111 00000 10000 00000",
        "111 00000 11000 00000",
        "111 11000 11100 00000",
        "111 11000 11110 00000",
        "111 11000 11111 00000",
        "111 00000 00000 10000",
        "111 00000 00000 11000",
        "111 11000 11000 11100",
        "111 11000 11000 11110",
        "111 11000 11000 11111",
    ],
    "window": _COMMON_HEAD + [
        "111 10000 00000 00000",
        "111 11000 00000 00000",
        "111 11100 00000 00000",
        "111 11110 00000 00000",
        "111 11111 00000 00000",
        "111 00000 10000 00000",
        "111 00000 11000 00000",
        "111 11000 11100 00000",
        "111 11000 11110 00000",
        "111 11000 11111 00000",
        "111 00000 00000 10000",
        "111 00000 00000 11000",
        "111 00000 11000 11100",
        "111 00000 11000 11110",
        "111 00000 11000 11111",
    ],
    "global": _COMMON_HEAD + [
        "111 10000 00000 00000",
        "111 11000 00000 00000",
        "111 11100 11000 11000",
        "111 11110 11000 11000",
        "111 11111 11000 11000",
        "111 00000 10000 00000",
        "111 00000 11000 00000",
        "111 11000 11100 11000",
        "111 11000 11110 11000",
        "111 11000 11111 11000",
        "111 00000 00000 10000",
        "111 00000 00000 11000",
        "111 11000 11000 11100",
        "111 11000 11000 11110",
        "111 11000 11000 11111",
    ],
}


def _three_unit_example(v):
    ref = torch.tensor([[1, 2]])
    frames = torch.tensor([[[3, 4]], [[5, 6]], [[7, 8]]])
    return pack_utterance(v, ref, [v.unit_id(u) for u in "abc"], [v.duration_id(0.1)] * 3, frames)


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_mask_cell_by_cell(variant):
    v = _vocab()
    p = _three_unit_example(v)
    got = packed_mask(p.meta, variant).int().tolist()
    want = [[int(c) for c in row.replace(" ", "")] for row in EXPECTED[variant]]
    assert len(got) == 18 and len(want) == 18
    for i in range(18):
        assert got[i] == want[i], f"{variant}: row {i} is {got[i]}, expected {want[i]}"


def test_mask_aliases_and_errors():
    assert canonical_variant("Non-Causal".replace("-", "_")) == "global"
    assert canonical_variant("limited_history") == "window"
    assert canonical_variant("one-to-one") == "one_to_one"
    with pytest.raises(MaskError):
        canonical_variant("bidirectional-ish")


def test_padding_rows_attend_only_to_themselves():
    v = _vocab()
    p = _three_unit_example(v)
    short = pack_utterance(v, torch.tensor([[1, 2]]), [v.unit_id("a")], [v.duration_id(0.1)], torch.tensor([[[3, 4]]]))
    b = collate_packed([p, short], v.pad_id)
    m = packed_mask(TokenMeta(b["kind"], b["segment"], b["offset"]), "one_to_one")
    assert m.shape == (2, 18, 18)
    pad = b["kind"][1] == KIND_PAD
    assert pad.sum() == 18 - len(short)
    assert not m[1][~pad][:, pad].any()  # no real token attends to padding
    assert torch.equal(m[1][pad][:, pad], torch.eye(int(pad.sum()), dtype=torch.bool))
    assert torch.equal(m[1][:len(short), :len(short)], packed_mask(short.meta, "one_to_one"))


def test_backend_mask_forms():
    m = torch.tensor([[True, False], [True, True]])
    sd = backend_mask(m, "sdpa", torch.float32)
    assert sd.dtype == torch.bool and sd.shape == (1, 1, 2, 2)
    ea = backend_mask(m, "eager", torch.bfloat16)
    assert ea.dtype == torch.bfloat16 and ea.shape == (1, 1, 2, 2)
    assert ea[0, 0, 0, 0] == 0 and ea[0, 0, 0, 1] == torch.finfo(torch.bfloat16).min
    with pytest.raises(MaskError):
        backend_mask(m.float(), "sdpa", torch.float32)
    with pytest.raises(MaskError):
        backend_mask(m, "flash_attention_2", torch.float32)


def test_allowed_broadcasts_for_decoding_rows():
    """A decoding query row ([B] of keyframe 1) against the shared prefix equals the packed row."""
    v = _vocab()
    p = _three_unit_example(v)
    full = packed_mask(p.meta, "accumulative")
    _, meta, _ = prefix_layout(v, torch.tensor([[1, 2]]), torch.tensor([v.unit_id(u) for u in "abc"]),
                               torch.tensor([v.duration_id(0.1)] * 3), stride=3)
    q = TokenMeta(torch.tensor([[4]]), torch.tensor([[1]]), torch.tensor([[2]]))  # [B] of segment 1
    k = TokenMeta(torch.cat([meta.kind, torch.tensor([4])])[None], torch.cat([meta.segment, torch.tensor([1])])[None],
                  torch.cat([meta.offset, torch.tensor([2])])[None])
    row = allowed(q, k, "accumulative")[0, 0]
    packed_cols = torch.tensor([0, 1, 2, 3, 4, 8, 9, 13, 14, 10])  # prefix, d/u of each seg, then B1
    assert torch.equal(row, full[10, packed_cols])
