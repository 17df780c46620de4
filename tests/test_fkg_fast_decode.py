"""fast_decode (lean loop, compact per-row KV buffer) against its reference twin, the model's own forward."""

import pytest
import torch

from avatarsync.fkg.fakes import noisy_model
from avatarsync.fkg.fast_decode import split_prefix
from avatarsync.fkg.generate import GenerationError, SamplingConfig, generate_keyframes
from avatarsync.fkg.layout import KIND_DUR, KIND_REF, KIND_UNIT, prefix_layout
from avatarsync.fkg.vocab import FKGVocab

UNITS = ["a", "b", "c", "d", "e", "f"]


def _model(variant, k=16, seed=0, frame_window=None, unit_context=False):
    return noisy_model(FKGVocab(units=UNITS, codebook_size=k), variant, seed, frame_window=frame_window,
                       unit_context=unit_context)


def _utterance(vocab, units="abcdae", grid=(3, 4), seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, vocab.codebook_size, grid, generator=g),
            torch.tensor([vocab.unit_id(u) for u in units]),
            torch.tensor([vocab.duration_id(0.04 + 0.03 * i) for i in range(len(units))]))


@pytest.mark.parametrize("variant", ["one_to_one", "accumulative", "window", "global"])
@pytest.mark.parametrize("k", [16, 4096])
def test_fast_engine_matches_transformers_engine(variant, k):
    m = _model(variant, k=k)
    ref, units, durs = _utterance(m.vocab)
    fast = generate_keyframes(m, ref, units, durs, return_logits=True, engine="fast")
    slow = generate_keyframes(m, ref, units, durs, return_logits=True, engine="reference")
    assert torch.equal(fast.codes, slow.codes)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    chunked = generate_keyframes(m, ref, units, durs, batch_size=4, engine="fast")
    assert torch.equal(chunked.codes, fast.codes)


@pytest.mark.parametrize("variant", ["one_to_one", "accumulative"])
def test_windowed_model_generates_only_the_window_and_engines_agree(variant):
    box = [0.5, 0.3, 1.0, 1.0]  # rows 0.3*3 -> 0 .. 3, cols 2 .. 4 of a 3 x 4 grid
    m = _model(variant, k=64, frame_window=box)
    ref, units, durs = _utterance(m.vocab)
    fast = generate_keyframes(m, ref, units, durs, return_logits=True, engine="fast")
    slow = generate_keyframes(m, ref, units, durs, return_logits=True, engine="reference")
    nocache = generate_keyframes(m, ref, units, durs, engine="reference", use_cache=False)
    assert fast.codes.shape == (len(units), 3, 4) and fast.logits.shape[1] == 3 * 2
    assert torch.equal(fast.codes, slow.codes) and torch.equal(fast.codes, nocache.codes)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(fast.codes[:, :, :2], ref[None, :, :2].expand(len(units), -1, -1))  # outside: the reference
    assert not torch.equal(fast.codes[:, :, 2:], ref[None, :, 2:].expand(len(units), -1, -1))


@pytest.mark.parametrize("frame_window", [None, [0.5, 0.0, 1.0, 1.0]])
def test_guided_decoding_engines_agree_and_follow_the_guided_logits(frame_window):
    from avatarsync.fkg.vocab import UNK_UNIT

    m = _model("one_to_one", k=64, frame_window=frame_window)
    ref, units, durs = _utterance(m.vocab, "abcd")
    scale = 3.0
    fast = generate_keyframes(m, ref, units, durs, SamplingConfig(guidance=scale), return_logits=True)
    slow = generate_keyframes(m, ref, units, durs, SamplingConfig(guidance=scale), return_logits=True,
                              engine="reference", dedupe=False)
    assert torch.equal(fast.codes, slow.codes)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    plain = generate_keyframes(m, ref, units, durs, return_logits=True)
    assert not torch.equal(plain.codes, fast.codes)
    # the guided logits of the first step are u + s (c - u), from the keyframe and its <unk> twin alone
    unk = torch.full_like(units, m.vocab.special_id(UNK_UNIT))
    uncond = generate_keyframes(m, ref, unk, durs, return_logits=True)
    expect = uncond.logits[:, 0] + scale * (plain.logits[:, 0] - uncond.logits[:, 0])
    torch.testing.assert_close(fast.logits[:, 0], expect, atol=1e-4, rtol=1e-4)
    one = generate_keyframes(m, ref, units, durs, SamplingConfig(guidance=1.0), return_logits=True)
    assert torch.equal(one.codes, plain.codes)
    with pytest.raises(GenerationError, match="one-to-one"):
        generate_keyframes(_model("global"), ref, units, durs, SamplingConfig(guidance=2.0))


def test_unit_context_model_engines_agree_and_keyframes_see_their_neighbours():
    m = _model("one_to_one", k=64, unit_context=True, frame_window=[0.0, 0.5, 1.0, 1.0])
    ref, units, durs = _utterance(m.vocab, "abcdae")
    fast = generate_keyframes(m, ref, units, durs, return_logits=True)
    slow = generate_keyframes(m, ref, units, durs, return_logits=True, engine="reference", dedupe=False)
    nocache = generate_keyframes(m, ref, units, durs, engine="reference", use_cache=False)
    assert torch.equal(fast.codes, slow.codes) and torch.equal(fast.codes, nocache.codes)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    guided = generate_keyframes(m, ref, units, durs, SamplingConfig(guidance=2.0), return_logits=True)
    guided_slow = generate_keyframes(m, ref, units, durs, SamplingConfig(guidance=2.0), return_logits=True,
                                     engine="reference", dedupe=False)
    assert torch.equal(guided.codes, guided_slow.codes)
    # changing unit 3 changes keyframes 2, 3 and 4 (its neighbours read it as context), not 0, 1, 5
    other = units.clone()
    other[3] = m.vocab.unit_id("f")
    moved = generate_keyframes(m, ref, other, durs, return_logits=True)
    changed = [not torch.allclose(moved.logits[i], fast.logits[i]) for i in range(len(units))]
    assert changed == [False, False, True, True, True, False]
    # explicit context overrides the neighbours in unit_ids
    alone = generate_keyframes(m, ref, units[2:3], durs[2:3], return_logits=True,
                               context_ids=torch.stack([units[1:2], units[3:4]], 1))
    torch.testing.assert_close(alone.logits[0], fast.logits[2], atol=1e-5, rtol=1e-5)


def test_fast_engine_samples_like_the_reference():
    m = _model("one_to_one", k=64)
    ref, units, durs = _utterance(m.vocab)
    cfg = SamplingConfig(temperature=1.0, top_k=8, seed=3)
    fast = generate_keyframes(m, ref, units, durs, cfg, engine="fast")
    slow = generate_keyframes(m, ref, units, durs, cfg, engine="reference")
    greedy = generate_keyframes(m, ref, units, durs)
    assert torch.equal(fast.codes, slow.codes)
    assert not torch.equal(fast.codes, greedy.codes)


def test_split_prefix_shares_the_reference_and_keeps_each_rows_own_columns():
    m = _model("one_to_one")
    ref, units, durs = _utterance(m.vocab, "abc")
    _, meta, _ = prefix_layout(m.vocab, ref, units, durs, m.stride)
    shared, index, valid = split_prefix(m, torch.arange(3), meta)
    n_ref = 1 + ref.numel()
    assert torch.equal(shared, torch.arange(n_ref))  # <bos> + reference tokens: read by every row
    assert (meta.kind[shared] == KIND_REF).all()
    assert index.shape == (3, 2) and valid.all()  # each row: its own duration and unit tokens
    for row in range(3):
        assert meta.kind[index[row, 0]] == KIND_DUR and meta.kind[index[row, 1]] == KIND_UNIT
        assert (meta.segment[index[row]] == row).all()
    acc = _model("accumulative")
    shared, index, valid = split_prefix(acc, torch.arange(3), meta)
    assert shared.numel() == n_ref + 2  # unit 0 is visible to every keyframe
    assert valid.sum(1).tolist() == [0, 2, 4]  # units 1..i, padded to the widest row


def test_unknown_engine_is_refused():
    m = _model("one_to_one")
    with pytest.raises(GenerationError, match="engine"):
        generate_keyframes(m, *_utterance(m.vocab), engine="turbo")


def test_repeated_unit_duration_pairs_are_decoded_once_with_the_same_result():
    m = _model("one_to_one")
    ref, units, durs = _utterance(m.vocab, "abab")
    durs = torch.tensor([durs[0], durs[1], durs[0], durs[2]])  # keyframe 2 repeats keyframe 0's pair
    fast = generate_keyframes(m, ref, units, durs, return_logits=True)
    plain = generate_keyframes(m, ref, units, durs, return_logits=True, dedupe=False)
    assert torch.equal(fast.codes, plain.codes) and torch.equal(fast.codes[0], fast.codes[2])
    torch.testing.assert_close(fast.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert not torch.equal(fast.codes[1], fast.codes[3])  # same unit, other duration: decoded on its own
