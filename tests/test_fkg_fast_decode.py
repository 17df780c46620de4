"""fast_decode (lean loop, compact per-row KV buffer) against its reference twin, the transformers forward."""

import pytest
import torch

from avatarsync.fkg.fast_decode import compact_prefix
from avatarsync.fkg.generate import GenerationError, SamplingConfig, generate_keyframes
from avatarsync.fkg.layout import KIND_DUR, KIND_REF, KIND_UNIT, prefix_layout
from avatarsync.fkg.model import FKGModel
from avatarsync.fkg.vocab import FKGVocab

UNITS = ["a", "b", "c", "d", "e", "f"]


def _model(variant, k=16, seed=0):
    torch.manual_seed(seed)
    m = FKGModel(FKGVocab(units=UNITS, codebook_size=k), "tiny", variant)
    with torch.no_grad():  # larger weights than the init, so that every input moves the logits
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return m.eval()


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
    slow = generate_keyframes(m, ref, units, durs, return_logits=True, engine="transformers")
    assert torch.equal(fast.codes, slow.codes)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    chunked = generate_keyframes(m, ref, units, durs, batch_size=4, engine="fast")
    assert torch.equal(chunked.codes, fast.codes)


def test_fast_engine_samples_like_the_reference():
    m = _model("one_to_one", k=64)
    ref, units, durs = _utterance(m.vocab)
    cfg = SamplingConfig(temperature=1.0, top_k=8, seed=3)
    fast = generate_keyframes(m, ref, units, durs, cfg, engine="fast")
    slow = generate_keyframes(m, ref, units, durs, cfg, engine="transformers")
    greedy = generate_keyframes(m, ref, units, durs)
    assert torch.equal(fast.codes, slow.codes)
    assert not torch.equal(fast.codes, greedy.codes)


def test_compact_prefix_keeps_exactly_the_visible_columns():
    m = _model("one_to_one")
    ref, units, durs = _utterance(m.vocab, "abc")
    _, meta, _ = prefix_layout(m.vocab, ref, units, durs, m.stride)
    index, valid = compact_prefix(m, torch.arange(3), meta)
    n_ref = 1 + ref.numel()
    assert index.shape == (3, n_ref + 2) and valid.all()  # reference prefix + own duration and unit
    for row in range(3):
        cols = index[row]
        assert torch.equal(cols[:n_ref], torch.arange(n_ref))
        assert (meta.kind[cols[:n_ref]] == KIND_REF).all()
        assert meta.kind[cols[n_ref]] == KIND_DUR and meta.kind[cols[n_ref + 1]] == KIND_UNIT
        assert (meta.segment[cols[n_ref:]] == row).all()
    acc = _model("accumulative")
    index, valid = compact_prefix(acc, torch.arange(3), meta)
    assert valid.sum(1).tolist() == [n_ref + 2, n_ref + 4, n_ref + 6]  # units 0..i


def test_unknown_engine_is_refused():
    m = _model("one_to_one")
    with pytest.raises(GenerationError, match="engine"):
        generate_keyframes(m, *_utterance(m.vocab), engine="turbo")
