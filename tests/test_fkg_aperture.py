"""The mouth-aperture plan: bins, engines that agree, a plan the model learns and follows, init_from."""

import numpy as np
import pytest
import torch

from avatarsync.errors import CheckpointError
from avatarsync.fkg.aperture import bin_centres, openness_bins, segment_apertures
from avatarsync.fkg.data import FKGExample
from avatarsync.fkg.fakes import fit_toy, noisy_model, toy_examples
from avatarsync.fkg.generate import GenerationError, SamplingConfig, _guide, generate_keyframes, pick_bins
from avatarsync.fkg.layout import pack_utterance
from avatarsync.fkg.task import FKGConfig, FKGTask
from avatarsync.fkg.vocab import FKGVocab

UNITS = ["a", "b", "c", "d"]


def test_bins_cut_openness_evenly_and_fill_every_segment_token():
    assert openness_bins([0.0, 0.099, 0.1, 0.55, 0.95, 1.0, 1.3, -0.2], 10).tolist() == [0, 0, 1, 5, 9, 9, 9, 0]
    torch.testing.assert_close(bin_centres(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    vocab = FKGVocab(units=UNITS, codebook_size=16)
    packed = pack_utterance(vocab, torch.zeros(2, 2, dtype=torch.long), [vocab.unit_id(u) for u in "abc"],
                            [vocab.duration_id(0.1)] * 3, torch.zeros(3, 2, 2, dtype=torch.long))
    per_token = segment_apertures(packed.meta, torch.tensor([4, 7, 1]))
    assert (per_token[packed.segment < 0] == -1).all()
    for i, b in enumerate([4, 7, 1]):
        assert (per_token[packed.segment == i] == b).all()


def _model(unit_context=False, bins=5):
    return noisy_model(FKGVocab(units=UNITS, codebook_size=16), unit_context=unit_context, aperture_bins=bins)


@pytest.mark.parametrize("guidance,plan_guidance", [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 3.0)])
@pytest.mark.parametrize("unit_context", [False, True])
def test_engines_agree_and_the_imposed_plan_steers_the_codes(guidance, plan_guidance, unit_context):
    m = _model(unit_context=unit_context)
    vocab = m.vocab
    ref = torch.randint(0, 16, (3, 4), generator=torch.Generator().manual_seed(1))
    units = torch.tensor([vocab.unit_id(u) for u in "abcab"])
    durs = torch.tensor([vocab.duration_id(0.1)] * 5)
    s = SamplingConfig(guidance=guidance, plan_guidance=plan_guidance)
    fast = generate_keyframes(m, ref, units, durs, s, return_logits=True)
    slow = generate_keyframes(m, ref, units, durs, s, return_logits=True, engine="reference", dedupe=False)
    nocache = generate_keyframes(m, ref, units, durs, s, engine="reference", use_cache=False, dedupe=False)
    one = generate_keyframes(m, ref, units, durs, s, batch_size=1, dedupe=False)
    assert fast.apertures.shape == (5,) and ((fast.apertures >= 0) & (fast.apertures < 5)).all()
    for other in (slow, nocache, one):
        assert torch.equal(fast.codes, other.codes) and torch.equal(fast.apertures, other.apertures)
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-4, rtol=1e-4)
    plan = (fast.apertures + 2) % 5
    imposed = generate_keyframes(m, ref, units, durs, s, apertures=plan)
    imposed_slow = generate_keyframes(m, ref, units, durs, s, apertures=plan, engine="reference", dedupe=False)
    assert torch.equal(imposed.apertures, plan) and torch.equal(imposed.codes, imposed_slow.codes)
    assert not torch.equal(imposed.codes, fast.codes)
    with pytest.raises(GenerationError, match="bins in 0..4"):
        generate_keyframes(m, ref, units, durs, apertures=torch.full((5,), 5))


def _two_state_examples(n, seed, patterns):
    """Each unit has a closed and an open mouth pattern, drawn at random per keyframe: only the
    truth openness says which one a keyframe shows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = list(rng.choice(UNITS, 4))
        state = rng.integers(0, 2, len(seq))
        out.append(FKGExample(ref_codes=rng.integers(0, 16, (1, 2)),
                              key_codes=np.stack([patterns[(u, int(o))] for u, o in zip(seq, state)]),
                              units=seq, visemes=seq, durations=[0.1] * len(seq),
                              key_openness=np.where(state == 1, 0.9, 0.1).astype(np.float32)))
    return out


def test_keyframes_follow_the_plan_that_the_truth_openness_gives():
    rng = np.random.default_rng(0)
    patterns = {(u, o): rng.integers(0, 16, (1, 2)) for u in UNITS for o in (0, 1)}
    train, val = _two_state_examples(256, 1, patterns), _two_state_examples(8, 2, patterns)
    scores = {}
    for bins, oracle in ((0, False), (2, True)):
        cfg = FKGConfig(size="tiny", codebook_size=16, aperture_bins=bins)
        cfg.eval.oracle_aperture = oracle
        task = FKGTask(cfg, train_examples=train, val_examples=val)
        model, logs = fit_toy(task, 150)
        vb = task.collate([task.val_dataset()[i] for i in range(len(task.val_dataset()))])
        scores[bins] = task.evaluate(model, [vb])
    # without a plan the state is a coin flip; decoded under the true plan the codes are right
    assert scores[0]["gen_code_acc"] < 0.8 and scores[2]["gen_code_acc"] >= 0.95, scores
    assert 0.2 < scores[2]["aperture_acc"] < 0.8  # the coin itself cannot be predicted
    assert scores[2]["gen_aperture_acc"] == 1.0  # oracle decoding follows the true bins


def test_the_plan_is_learned_where_the_unit_decides_it():
    train = toy_examples(128, UNITS, grid=(2, 2), codebook_size=16, seed=0)  # unit j opens j / 3
    val = toy_examples(6, UNITS, grid=(2, 2), codebook_size=16, seed=1)
    cfg = FKGConfig(size="tiny", codebook_size=16, aperture_bins=4)
    cfg.eval.max_utterances = len(val)
    task = FKGTask(cfg, train_examples=train, val_examples=val)
    model, logs = fit_toy(task, 100)
    assert logs[-1]["aperture_ce"] < 0.3 * logs[0]["aperture_ce"]
    vb = task.collate([task.val_dataset()[i] for i in range(len(task.val_dataset()))])
    m = task.evaluate(model, [vb])
    assert m["gen_aperture_acc"] == 1.0 and m["gen_code_acc"] >= 0.95, m
    cfg.eval.force_aperture = 0  # every keyframe decoded under bin 0: right only for unit "a"
    forced = task.evaluate(model, [vb])
    assert forced["gen_aperture_acc"] == pytest.approx(float(np.mean([u == "a" for ex in val for u in ex.units])))


def test_a_plan_starts_from_a_model_without_one_and_a_misfit_is_refused(tmp_path):
    train = toy_examples(16, UNITS, grid=(2, 2), codebook_size=16, seed=0)
    base = FKGTask(FKGConfig(size="tiny", codebook_size=16), train_examples=train, val_examples=[])
    plain = base.build_model()
    plain.save_pretrained(tmp_path / "plain")
    cfg = FKGConfig(size="tiny", codebook_size=16, aperture_bins=3, init_from=str(tmp_path / "plain"))
    model = FKGTask(cfg, train_examples=train, val_examples=[]).build_model()
    assert model.aperture_bins == 3
    torch.testing.assert_close(model.head.weight, plain.head.weight)
    cfg.size = "cpu"
    with pytest.raises(CheckpointError, match="does not fit"):
        FKGTask(cfg, train_examples=train, val_examples=[]).build_model()


def test_a_plan_needs_truth_openness():
    from avatarsync.errors import InputError

    train = toy_examples(4, UNITS, grid=(2, 2), codebook_size=16, seed=0)
    for ex in train:
        ex.key_openness = None
    task = FKGTask(FKGConfig(size="tiny", codebook_size=16, aperture_bins=3), train_examples=train, val_examples=[])
    with pytest.raises(InputError, match="no truth mouth openness"):
        task.collate([task.train_dataset()[0]])


def test_guidance_adds_each_twins_difference_and_plan_guidance_needs_a_plan():
    c, u, v = torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(_guide(torch.cat([c, u]), [3.0]), u + 3 * (c - u))
    torch.testing.assert_close(_guide(torch.cat([c, u, v]), [3.0, 2.0]), c + 2 * (c - u) + (c - v))
    torch.testing.assert_close(_guide(c, []), c)
    m = noisy_model(FKGVocab(units=UNITS, codebook_size=16))
    with pytest.raises(GenerationError, match="plan_guidance needs"):
        generate_keyframes(m, torch.zeros(3, 4, dtype=torch.long), torch.tensor([m.vocab.unit_id("a")]),
                           torch.tensor([m.vocab.duration_id(0.1)]), SamplingConfig(plan_guidance=2.0))


def test_plan_guidance_moves_codes_only_where_the_plan_is_read():
    m = _model()
    vocab = m.vocab
    ref = torch.randint(0, 16, (3, 4), generator=torch.Generator().manual_seed(1))
    units = torch.tensor([vocab.unit_id(u) for u in "abcd"])
    durs = torch.tensor([vocab.duration_id(0.1)] * 4)
    plain = generate_keyframes(m, ref, units, durs, return_logits=True)
    guided = generate_keyframes(m, ref, units, durs, SamplingConfig(plan_guidance=3.0), return_logits=True)
    assert torch.equal(plain.apertures, guided.apertures)  # the plan itself is not guided by it
    assert not torch.allclose(plain.logits, guided.logits)
    with torch.no_grad():  # a plan embedding of zeros reads like no plan: guidance then changes nothing
        m.aperture_embed.weight.zero_()
    plain = generate_keyframes(m, ref, units, durs, return_logits=True)
    guided = generate_keyframes(m, ref, units, durs, SamplingConfig(plan_guidance=3.0), return_logits=True)
    torch.testing.assert_close(plain.logits, guided.logits)


def test_bins_are_picked_by_argmax_median_or_mean():
    probs = torch.tensor([[0.4, 0.0, 0.0, 0.3, 0.3], [0.1, 0.2, 0.3, 0.2, 0.2]])
    logits = probs.clamp(min=1e-9).log()
    assert pick_bins(logits, "argmax").tolist() == [0, 2]
    assert pick_bins(logits, "median").tolist() == [3, 2]
    assert pick_bins(logits, "mean").tolist() == [2, 2]  # 1.8 and 2.2 rounded
    with pytest.raises(GenerationError, match="plan_pick"):
        pick_bins(logits, "mode")


def test_plan_dropout_hides_whole_keyframes_plans_and_keeps_the_plan_target():
    torch.manual_seed(0)
    segment = torch.tensor([[-1, -1, 0, 0, 0, 1, 1, 1, 2, 2, 2], [-1, -1, 0, 0, 0, 1, 1, 1, -1, -1, -1]])
    aperture = torch.where(segment >= 0, segment + 3, torch.full_like(segment, -1))
    assert torch.equal(FKGTask._hide_plan(aperture, segment, 0.0), aperture)
    assert (FKGTask._hide_plan(aperture, segment, 1.0) == -1).all()
    seen = set()
    for _ in range(50):
        out = FKGTask._hide_plan(aperture, segment, 0.5)
        assert (out[segment < 0] == -1).all()
        for b in range(2):
            for i in range(3):
                vals = set(out[b][segment[b] == i].tolist())
                assert len(vals) <= 1 and vals <= {-1, i + 3}  # a keyframe's tokens agree
                seen |= vals
    assert seen == {-1, 3, 4, 5}
