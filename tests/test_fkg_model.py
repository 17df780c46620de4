"""FKG model: SDPA == eager, one-to-one independence, parallel / cached decoding, a toy mapping learned."""

import pytest
import torch

from avatarsync.fkg.fakes import toy_examples
from avatarsync.fkg.generate import SamplingConfig, generate_keyframes
from avatarsync.fkg.layout import IGNORE, TokenMeta, collate_packed, pack_utterance
from avatarsync.fkg.masks import packed_mask
from avatarsync.fkg.model import FKGModel, code_cross_entropy, code_log_probs
from avatarsync.fkg.task import FKGConfig, FKGTask
from avatarsync.fkg.vocab import FKGVocab

UNITS = ["a", "b", "c", "d", "e", "f"]


def _model(variant="one_to_one", k=16, attn="sdpa", seed=0, std=0.1, **kw):
    torch.manual_seed(seed)
    vocab = FKGVocab(units=UNITS, codebook_size=k, **kw)
    m = FKGModel(vocab, "tiny", variant, attn_implementation=attn)
    with torch.no_grad():  # larger weights than the 0.02 init so that every dependence shows
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, std)
    return m.eval()


def _utterance(vocab, units="abcd", grid=(2, 3), seed=1):
    g = torch.Generator().manual_seed(seed)
    k = vocab.codebook_size
    return (torch.randint(0, k, grid, generator=g), torch.tensor([vocab.unit_id(u) for u in units]),
            torch.tensor([vocab.duration_id(0.05 + 0.05 * i) for i in range(len(units))]),
            torch.randint(0, k, (len(units), *grid), generator=g))


def _keyframe_logits(model, ref, units, durs, frames):
    """Teacher-forced logits per keyframe, [N, h*w, sum(factors)]."""
    p = pack_utterance(model.vocab, ref, units, durs, frames, model.stride)
    b = collate_packed([p], model.vocab.pad_id)
    mask = packed_mask(TokenMeta(b["kind"], b["segment"], b["offset"]), model.mask_variant)
    with torch.no_grad():
        out = model(b["ids"], b["position"], mask, b["kind"], b["offset"], select=b["labels"] != IGNORE)
    return out.logits.reshape(len(units), -1, out.logits.shape[-1])


@pytest.mark.parametrize("variant", ["one_to_one", "accumulative", "window", "global"])
def test_sdpa_and_eager_give_the_same_logits(variant):
    sdpa = _model(variant, attn="sdpa")
    eager = _model(variant, attn="eager")
    eager.load_state_dict(sdpa.state_dict())
    v = sdpa.vocab
    long = pack_utterance(v, *_utterance(v, "abcd")[:3], _utterance(v, "abcd")[3], sdpa.stride)
    short = pack_utterance(v, *_utterance(v, "ef", seed=2)[:3], _utterance(v, "ef", seed=2)[3], sdpa.stride)
    b = collate_packed([long, short], v.pad_id)  # padded batch
    mask = packed_mask(TokenMeta(b["kind"], b["segment"], b["offset"]), variant)
    real = b["kind"] != 0
    with torch.no_grad():
        a = sdpa(b["ids"], b["position"], mask, b["kind"], b["offset"]).logits[real]
        e = eager(b["ids"], b["position"], mask, b["kind"], b["offset"]).logits[real]
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, e, atol=2e-5, rtol=1e-4)
    # eager attention given the bool mask itself converts it (adding 0/1 would attend everywhere)
    from avatarsync.fkg import model as model_mod

    orig = model_mod.backend_mask
    try:
        model_mod.backend_mask = lambda m, impl, dtype: m.unsqueeze(1)
        with torch.no_grad():
            direct = eager(b["ids"], b["position"], mask, b["kind"], b["offset"]).logits[real]
    finally:
        model_mod.backend_mask = orig
    torch.testing.assert_close(direct, a, atol=2e-5, rtol=1e-4)


def test_one_to_one_keyframe_depends_only_on_its_own_unit():
    m = _model("one_to_one")
    v = m.vocab
    ref, units, durs, frames = _utterance(v, "abcd")
    base = _keyframe_logits(m, ref, units, durs, frames)
    changed_units = units.clone()
    changed_units[2] = v.unit_id("f")
    changed_frames = frames.clone()
    changed_frames[2] = (frames[2] + 1) % v.codebook_size
    other = _keyframe_logits(m, ref, changed_units, durs, changed_frames)
    for i in (0, 1, 3):
        torch.testing.assert_close(other[i], base[i], atol=1e-5, rtol=0)
    assert (other[2] - base[2]).abs().max() > 1e-2
    # stride 0: keyframe i is computed exactly as a one-unit utterance of unit i
    alone = _keyframe_logits(m, ref, units[3:], durs[3:], frames[3:])
    torch.testing.assert_close(alone[0], base[3], atol=1e-5, rtol=0)
    # the reference conditions every keyframe
    other_ref = _keyframe_logits(m, (ref + 1) % v.codebook_size, units, durs, frames)
    assert (other_ref[0] - base[0]).abs().max() > 1e-2


def test_accumulative_and_window_see_exactly_their_units():
    v_units = "abcd"
    for variant, sees in (("accumulative", lambda i, j: j <= i), ("window", lambda i, j: i - 2 < j <= i),
                          ("global", lambda i, j: True)):
        m = _model(variant)
        ref, units, durs, frames = _utterance(m.vocab, v_units)
        base = _keyframe_logits(m, ref, units, durs, frames)
        for j in range(4):
            changed = units.clone()
            changed[j] = m.vocab.unit_id("f")
            other = _keyframe_logits(m, ref, changed, durs, frames)
            for i in range(4):
                moved = (other[i] - base[i]).abs().max().item()
                assert (moved > 1e-3) == sees(i, j), f"{variant}: keyframe {i} vs unit {j}: {moved}"


@pytest.mark.parametrize("variant,k", [("one_to_one", 16), ("one_to_one", 8192), ("window", 16)])
def test_parallel_decoding_equals_one_at_a_time_and_cache_equals_recompute(variant, k):
    m = _model(variant, k=k)
    ref, units, durs, _ = _utterance(m.vocab, "abcda")
    par = generate_keyframes(m, ref, units, durs, return_logits=True)
    one = generate_keyframes(m, ref, units, durs, batch_size=1, return_logits=True)
    two = generate_keyframes(m, ref, units, durs, batch_size=2)
    full = generate_keyframes(m, ref, units, durs, use_cache=False, return_logits=True)
    assert par.codes.shape == (5, 2, 3)
    assert torch.equal(par.codes, one.codes) and torch.equal(par.codes, two.codes)
    assert torch.equal(par.codes, full.codes)
    torch.testing.assert_close(par.logits, full.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(par.logits, one.logits, atol=1e-4, rtol=1e-4)
    # decoding logits are the training (teacher-forced) logits of the packed sequence
    tf = _keyframe_logits(m, ref, units, durs, par.codes)
    torch.testing.assert_close(par.logits, tf, atol=1e-4, rtol=1e-4)
    if variant == "one_to_one":  # units 0 and 4 are both 'a' with different durations; 'a' alone:
        alone = generate_keyframes(m, ref, units[:1], durs[:1])
        assert torch.equal(alone.codes[0], par.codes[0])


def test_sampling_is_seeded_and_batch_independent():
    m = _model("one_to_one", k=64)
    ref, units, durs, _ = _utterance(m.vocab, "abcd")
    s = SamplingConfig(temperature=1.5, top_k=8, seed=7)
    a = generate_keyframes(m, ref, units, durs, s).codes
    b = generate_keyframes(m, ref, units, durs, s, batch_size=1).codes
    c = generate_keyframes(m, ref, units, durs, SamplingConfig(temperature=1.5, top_k=8, seed=8)).codes
    greedy = generate_keyframes(m, ref, units, durs).codes
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, greedy)
    # top-k = 1 is greedy
    assert torch.equal(generate_keyframes(m, ref, units, durs, SamplingConfig(1.0, 1, 3)).codes, greedy)


def test_factorized_log_probs_and_cross_entropy():
    torch.manual_seed(0)
    factors, k = (128, 128), 2 ** 14
    logits = torch.randn(5, 256)
    lp = code_log_probs(logits, factors, k)
    assert lp.shape == (5, k)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(5), atol=1e-4, rtol=0)
    labels = torch.tensor([0, 77, 16383, IGNORE, 5000])
    ce, _ = code_cross_entropy(logits, labels, factors)
    keep = labels != IGNORE
    # CE is the sum over digits of per-digit CE = -mean log P(code)
    torch.testing.assert_close(ce, -lp[keep].gather(1, labels[keep, None]).mean(), atol=1e-4, rtol=1e-5)


def test_tiny_model_learns_a_unit_to_pattern_mapping_and_generalizes(tmp_path):
    """units -> fixed code patterns; greedy decoding reproduces them for unseen unit combinations."""
    train = toy_examples(256, UNITS, grid=(2, 2), codebook_size=16, seed=0)
    seen = {tuple(ex.units) for ex in train}
    held = [list("fedcba"), list("aaff"), list("cafe"), list("beef"), list("dab")]
    assert not any(tuple(h) in seen for h in held)
    val = toy_examples(len(held), UNITS, grid=(2, 2), codebook_size=16, seed=1, sequences=held)
    task = FKGTask(FKGConfig(size="tiny", codebook_size=16),
                   train_examples=train, val_examples=val)
    torch.manual_seed(0)
    model = task.build_model()
    steps = 40
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-3)
    ds = task.train_dataset()
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        batch = task.collate([ds[int(i)] for i in torch.randint(0, len(ds), (8,), generator=g)])
        loss, logs = task.compute_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(logs["ce"])
    assert sum(losses[-5:]) / 5 < 0.05 * sum(losses[:3]) / 3
    model.eval()
    metrics = task.evaluate(model, [task.collate([val[i] for i in range(len(val))])])
    assert metrics["gen_code_acc"] >= 0.95 and metrics["acc"] >= 0.95
    # export / load round trip keeps the behaviour
    model.save_pretrained(tmp_path / "fkg", task.cfg)
    again = FKGModel.from_pretrained(tmp_path / "fkg")
    ex = val[0]
    ids = [task.vocab.unit_id(u) for u in ex.units]
    durs = [task.vocab.duration_id(d) for d in ex.durations]
    out = generate_keyframes(again, torch.as_tensor(ex.ref_codes), ids, durs).codes
    assert torch.equal(out, torch.as_tensor(ex.key_codes))
