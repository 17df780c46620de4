"""FKGTask with a fake tokenizer: stage-2 pixel losses, pixel metrics, mouth state, loss loaders."""

import numpy as np
import pytest
import torch

from avatarsync.fkg.data import ExampleDataset, FKGExample, chunk_bounds
from avatarsync.fkg.fakes import FakeTokenizer, fit_toy, toy_examples
from avatarsync.fkg.losses import FallbackEmbedder, PixelLosses
from avatarsync.fkg.metrics import mouth_accuracy, mouth_descriptors, mouth_states, ssim, to_unit
from avatarsync.perceptual import PyramidGradientLoss
from avatarsync.tokenizers.losses import psnr
from avatarsync.errors import InputError
from avatarsync.fkg.task import FKGConfig, FKGTask

UNITS = ["a", "b", "c", "d"]


def _pixel_examples(n, seed, tok, sequences=None):
    exs = toy_examples(n, UNITS, grid=(2, 2), codebook_size=tok.codebook_size, seed=seed, sequences=sequences)
    for ex in exs:
        dec = tok.decode(torch.as_tensor(np.concatenate([ex.ref_codes[None], ex.key_codes])))
        pix = ((dec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        ex.ref_pixels, ex.key_pixels = pix[0], pix[1:]
    return exs


def test_chunking_splits_long_utterances_evenly():
    assert chunk_bounds(5, 0) == [(0, 5)] and chunk_bounds(5, 8) == [(0, 5)]
    assert chunk_bounds(10, 4) == [(0, 3), (3, 7), (7, 10)]
    ex = toy_examples(1, UNITS, sequences=[list("abcabca")])[0]
    ds = ExampleDataset([ex], max_units=3)
    parts = [ds[i] for i in range(len(ds))]
    assert [p.units for p in parts] == [list("ab"), list("cab"), list("ca")]
    assert np.array_equal(np.concatenate([p.key_codes for p in parts]), ex.key_codes)


def test_stage1_training_beats_the_still_reference_in_pixels():
    tok = FakeTokenizer()
    task = FKGTask(FKGConfig(size="tiny"), train_examples=_pixel_examples(128, 0, tok),
                   val_examples=_pixel_examples(4, 1, tok), tokenizer=tok)
    assert task.vocab.codebook_size == 64
    model, hist = fit_toy(task, 40)
    assert hist[-1]["ce"] < 0.1 * hist[0]["ce"]
    val = task.val_dataset()
    m = task.evaluate(model, [task.collate([val[i] for i in range(len(val))])])
    assert m["gen_code_acc"] >= 0.95
    assert m["kf_psnr"] > m["still_psnr"] + 5 and m["kf_ssim"] > m["still_ssim"]
    task.cfg.eval.keyframe_decode = "expected"  # expected colours: a blend of the right one and others
    soft = task.evaluate(model, [task.collate([val[i] for i in range(len(val))])])
    assert soft["gen_code_acc"] == m["gen_code_acc"] and soft["kf_psnr"] < m["kf_psnr"]
    assert soft["kf_psnr"] > m["still_psnr"] + 5
    task.cfg.eval.keyframe_decode = "mode"
    with pytest.raises(InputError, match="keyframe_decode"):
        task.evaluate(model, [task.collate([val[0]])])


def test_stage2_pixel_losses_reach_the_model_and_fall():
    tok = FakeTokenizer()
    cfg = FKGConfig(size="tiny")
    cfg.loss.stage = 2
    cfg.loss.lambda1 = 0.0  # pixel terms only: the model must learn through the differentiable decode
    cfg.loss.decode_mode = "soft"
    cfg.loss.max_frames = 8
    task = FKGTask(cfg, train_examples=_pixel_examples(64, 0, tok), val_examples=[], tokenizer=tok)
    batch = task.collate([task.train_dataset()[i] for i in range(4)])
    torch.manual_seed(0)
    model = task.build_model()
    loss, logs = task.compute_loss(model, batch)
    assert {"ce", "lpips", "identity", "facial"} <= set(logs) and torch.isfinite(loss)
    loss.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    _, hist = fit_toy(task, 25, lr=1e-2)
    first = np.mean([h["loss"] for h in hist[:3]])
    last = np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.7 * first
    assert task.pixel_losses(torch.device("cpu")).backends == {"lpips": "fallback", "identity": "fallback",
                                                                "facial": "fallback"}


def test_fallback_losses_are_zero_for_identical_images_and_grow_with_change():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(-1, 1)
    per = PyramidGradientLoss()  # the weight-free stand-in both stages use
    assert per(a, a).abs().max() < 1e-6 and (per(a, b) > 0.05).all()
    emb = FallbackEmbedder()
    e = emb(a)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    losses = PixelLosses()
    same = losses(a, a)
    diff = losses(a, b)
    assert all(float(same[k]) < 1e-5 for k in same)
    assert all(float(diff[k]) > float(same[k]) for k in diff)


def test_lpips_loads_a_local_backbone_file(tmp_path):
    pytest.importorskip("lpips")
    import torchvision

    from avatarsync.errors import CheckpointError
    from avatarsync.perceptual import LPIPSLoss

    torch.manual_seed(0)
    feats = torchvision.models.squeezenet1_1(weights=None).features
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, tmp_path / "squeeze.pth")
    lp = LPIPSLoss(tmp_path / "squeeze.pth", net="squeeze")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(lp(x, x)) < 1e-6 and float(lp(x, -x)) > 0
    assert not any(p.requires_grad for p in lp.parameters())
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError):
        LPIPSLoss(tmp_path / "bad.pth", net="squeeze")
    with pytest.raises(CheckpointError):
        LPIPSLoss(tmp_path / "missing.pth", net="squeeze")


def _mouth_clip(n_frames=12, size=64):
    """Flat faces whose mouth box holds a dark bar of height ~ openness."""
    rng = np.random.default_rng(0)
    openness = rng.choice([0.0, 0.3, 0.6, 0.95], n_frames)
    frames = np.full((n_frames, size, size, 3), 200, np.uint8)
    box = np.array([int(0.28 * size), int(0.58 * size), int(0.72 * size), int(0.88 * size)])
    x0, y0, x1, y1 = box
    for t, o in enumerate(openness):
        h = int(round(o * (y1 - y0)))
        cy = (y0 + y1) // 2
        frames[t, cy - h // 2:cy - h // 2 + h, x0 + 4:x1 - 4] = 30
    names = {0.0: "bilabial", 0.3: "alveolar", 0.6: "mid_vowel", 0.95: "open_vowel"}
    boxes = np.repeat(box[None], n_frames, axis=0)
    truth = {"bank": mouth_descriptors(frames, boxes), "openness": openness,
             "viseme": np.array([names[o] for o in openness])}
    return frames, boxes, truth


def test_mouth_state_is_measured_from_pixels():
    frames, boxes, truth = _mouth_clip()
    assert truth["bank"].shape == (12, 16 * 24)
    clip = to_unit(frames)
    keys = [1, 3, 5, 7, 9, 11]
    perfect = clip[keys] + 0.02 * torch.randn(len(keys), 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got = mouth_accuracy(mouth_states(perfect.clamp(0, 1), boxes[keys], truth, keys))
    assert got == {"mouth_viseme_acc": 1.0, "mouth_open_acc": 1.0, "mouth_open_bias": 0.0}
    closed = int(np.flatnonzero(truth["openness"] == 0.0)[0])
    still = clip[closed:closed + 1].expand(len(keys), -1, -1, -1)
    base = mouth_accuracy(mouth_states(still, boxes[keys], truth, keys))
    expected = float(np.mean(truth["openness"][keys] == 0.0))
    assert base["mouth_open_acc"] == pytest.approx(expected) and expected < 1.0
    assert base["mouth_open_bias"] == pytest.approx(-float(np.mean(truth["openness"][keys])))  # all closed


def test_psnr_and_ssim():
    a = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (psnr(a * 2 - 1, a * 2 - 1) > 90).all()  # psnr takes [-1, 1] images
    torch.testing.assert_close(ssim(a, a), torch.ones(2), atol=1e-4, rtol=0)
    noisy = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert (psnr(a * 2 - 1, noisy * 2 - 1) < 25).all() and (ssim(a, noisy) < 0.95).all()
    assert torch.equal(to_unit(torch.zeros(1, 4, 4, 3, dtype=torch.uint8)), torch.zeros(1, 3, 4, 4))


def test_example_without_units_of_the_vocab_maps_to_unknown():
    tok = FakeTokenizer()
    task = FKGTask(FKGConfig(size="tiny"), train_examples=_pixel_examples(4, 0, tok), tokenizer=tok)
    ex = FKGExample(np.zeros((2, 2), np.int64), np.zeros((1, 2, 2), np.int64), ["zz"], ["rest"], [0.1])
    batch = task.collate([ex])
    assert int(batch["ids"][0, 5 + 1]) == task.vocab.special_id("<unk>")


def _write_corpus(root, n_clips=4, size=32, fps=25.0):
    """A minimal corpus folder (manifest, frames, truth, track) whose mouths follow the units."""
    import json

    from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit

    opening = {"a": ("open_vowel", 0.95), "m": ("bilabial", 0.0), "e": ("mid_vowel", 0.55), "s": ("alveolar", 0.25)}
    rng = np.random.default_rng(0)
    lines = []
    for c in range(n_clips):
        symbols = list(rng.choice(list(opening), 5))
        units = [PhonemeUnit(s, 0.2 * i, 0.2 * (i + 1), opening[s][0]) for i, s in enumerate(symbols)]
        n = int(round(1.0 * fps))
        frames = np.full((n, size, size, 3), 40 * (c + 1), np.uint8)
        vis, op = [], []
        for t in range(n):
            u = units[min(len(units) - 1, int(t / fps / 0.2))]
            o = opening[u.symbol][1]
            vis.append(u.viseme)
            op.append(o)
            h = int(round(o * 0.3 * size))
            frames[t, size // 2 + 2:size // 2 + 2 + h, size // 4:3 * size // 4] = 250
        folder = root / "clips" / f"c{c}"
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "frames.npz", frames=frames)
        np.savez_compressed(folder / "truth.npz", viseme=np.array(vis), openness=np.array(op, np.float32))
        PhonemeTrack(units, "en", 1.0, "test").save(folder / "track.json")
        lines.append(json.dumps({"clip_id": f"c{c}", "split": "train" if c < n_clips - 1 else "val", "identity": c,
                                 "sentence_id": f"s{c}", "lang": "en", "text": "x", "fps": fps, "n_frames": n,
                                 "duration": 1.0, "size": size}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def test_token_cache_from_a_corpus_and_mouth_metrics(tmp_path):
    from avatarsync.fkg.data import read_cache_index

    _write_corpus(tmp_path / "corpus")
    tok = FakeTokenizer(levels=4, down=8)
    cfg = FKGConfig(size="tiny")
    cfg.data.corpus = str(tmp_path / "corpus")
    cfg.data.token_cache = str(tmp_path / "cache")
    cfg.data.max_units = 3
    cfg.data.align, cfg.data.crop_size = "none", 32  # the toy corpus has no landmarks: whole frames
    task = FKGTask(cfg, tokenizer=tok)
    train, val = task.train_dataset(), task.val_dataset()
    index = read_cache_index(tmp_path / "cache")
    assert index["grid"] == [4, 4] and index["codebook_size"] == 64 and len(index["clips"]) == 4
    assert index["clips"][0]["key_frames"] == [2, 7, 12, 17, 22]  # centres of the 0.2 s units at 25 fps
    assert len(train) == 3 * 2 and len(val) == 2  # 5 units -> chunks of 3 + 2
    assert set(task.vocab.units) <= {"a", "m", "e", "s"}
    ex = val[0]
    assert ex.key_pixels.shape == (len(ex), 32, 32, 3) and ex.ref_pixels.shape == (32, 32, 3)
    assert ex.key_boxes.shape == (len(ex), 4) and index["crop"]["align"] == "none"
    truth = val.mouth_truth(ex.clip_id)
    assert truth["bank"].shape == (25, 16 * 24) and truth["viseme"][2] == ex.visemes[0]
    model, _ = fit_toy(task, 5)
    metrics = task.evaluate(model, [task.collate([val[i] for i in range(len(val))])])
    for key in ("ce", "acc", "gen_code_acc", "kf_psnr", "still_psnr", "mouth_viseme_acc", "mouth_open_acc",
                "still_mouth_viseme_acc"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert "plan_open_acc" not in metrics
    cfg.aperture_bins = 4  # a plan: its bins are scored against the truth, and the mouth against its plan
    planned = FKGTask(cfg, tokenizer=tok)
    model, _ = fit_toy(planned, 5)
    metrics = planned.evaluate(model, [planned.collate([val[i] for i in range(len(val))])])
    for key in ("plan_open_acc", "mouth_plan_acc"):
        assert 0 <= metrics[key] <= 1, key
    assert -1 <= metrics["mouth_plan_bias"] <= 1


def test_extra_corpora_add_their_training_clips_only(tmp_path):
    _write_corpus(tmp_path / "corpus")
    _write_corpus(tmp_path / "more", n_clips=3)  # 2 train clips + 1 val clip (which must stay out)
    tok = FakeTokenizer(levels=4, down=8)
    cfg = FKGConfig(size="tiny")
    cfg.data.corpus = str(tmp_path / "corpus")
    cfg.data.extra_corpora = [str(tmp_path / "more")]
    cfg.data.max_units = 3
    cfg.data.align, cfg.data.crop_size = "none", 32
    task = FKGTask(cfg, tokenizer=tok)
    train, val = task.train_dataset(), task.val_dataset()
    assert (tmp_path / "more" / "fkg_token_cache" / "index.json").is_file()
    assert len(train) == (3 + 2) * 2 and len(val) == 2  # 5 train clips of 5 units -> chunks of 3 + 2
    batch = task.collate([train[i] for i in range(len(train))])
    assert batch["ids"].shape[0] == 10 and torch.isfinite(task.compute_loss(task.build_model(), batch)[0])


def test_extra_corpus_with_held_out_sentences_or_faces_is_refused(tmp_path):
    from avatarsync.errors import InputError

    _write_corpus(tmp_path / "corpus")  # c3 (identity 3, sentence s3) is its val clip
    _write_corpus(tmp_path / "more", n_clips=5)  # trains on c0..c3: identity 3 and sentence s3 leak
    cfg = FKGConfig(size="tiny")
    cfg.data.corpus = str(tmp_path / "corpus")
    cfg.data.extra_corpora = [str(tmp_path / "more")]
    cfg.data.align, cfg.data.crop_size = "none", 32
    with pytest.raises(InputError, match=r"1 held-out sentence\(s\) \(e.g. s3\) and 1 held-out identity"):
        FKGTask(cfg, tokenizer=FakeTokenizer(levels=4, down=8)).train_dataset()


def test_mouth_weighted_cross_entropy_weights_exactly_the_mouth_cells():
    from avatarsync.fkg.layout import IGNORE
    from avatarsync.fkg.model import code_cross_entropy

    tok = FakeTokenizer()
    exs = toy_examples(4, UNITS, grid=(2, 2), codebook_size=tok.codebook_size, seed=0)
    cfg = FKGConfig(size="tiny")
    cfg.loss.mouth_ce = 3.0  # box rows [1.16, 1.76) x cols [0.6, 1.4) of a 2x2 grid: the bottom row
    task = FKGTask(cfg, train_examples=exs, val_examples=exs[:1], tokenizer=tok)
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    weights = task._cell_weights(batch)
    sel = batch["labels"] != IGNORE
    cell = batch["offset"][sel] - 2
    assert torch.equal(weights == 4.0, cell >= 2) and bool((weights[cell < 2] == 1.0).all())
    logits = torch.randn(int(sel.sum()), sum(task.vocab.factors))
    labels = batch["labels"][sel]
    plain, _ = code_cross_entropy(logits, labels, task.vocab.factors)
    same, _ = code_cross_entropy(logits, labels, task.vocab.factors, torch.ones(len(labels)))
    torch.testing.assert_close(plain, same)


def test_windowed_model_learns_its_cells_keeps_the_reference_elsewhere_and_round_trips(tmp_path):
    from avatarsync.fkg.model import FKGModel

    tok = FakeTokenizer()
    cfg = FKGConfig(size="tiny", frame_window=[0.0, 0.5, 1.0, 1.0])  # the bottom row of a 2x2 grid
    task = FKGTask(cfg, train_examples=_pixel_examples(128, 0, tok), val_examples=_pixel_examples(4, 1, tok),
                   tokenizer=tok)
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    assert batch["grid"].tolist() == [1, 2] and batch["ref_grid"].tolist() == [2, 2]
    model, hist = fit_toy(task, 80)  # half the labels per step of a full-grid model
    assert model.frame_window == (0.0, 0.5, 1.0, 1.0)
    assert hist[-1]["ce"] < 0.1 * hist[0]["ce"]
    val = task.val_dataset()
    vb = task.collate([val[i] for i in range(len(val))])
    m = task.evaluate(model, [vb])
    assert m["gen_code_acc"] >= 0.95  # over the window's cells
    part = task._row(vb, 0)
    from avatarsync.fkg.generate import generate_keyframes

    codes = generate_keyframes(model, part["ref_codes"], part["unit_ids"], part["dur_ids"]).codes
    assert torch.equal(codes[:, 0], part["ref_codes"][None, 0].expand(len(codes), -1))
    model.save_pretrained(tmp_path / "fkg", cfg)
    again = FKGModel.from_pretrained(tmp_path / "fkg")
    assert again.frame_window == model.frame_window
    assert torch.equal(generate_keyframes(again, part["ref_codes"], part["unit_ids"], part["dur_ids"]).codes, codes)
    # stage 2 decodes window logits completed with the reference's codes
    cfg2 = FKGConfig(size="tiny", init_from=str(tmp_path / "fkg"))
    cfg2.loss.stage = 2
    task2 = FKGTask(cfg2, train_examples=_pixel_examples(16, 0, tok), val_examples=[], tokenizer=tok)
    assert task2.frame_window == model.frame_window
    model2 = task2.build_model()
    loss, logs = task2.compute_loss(model2, task2.collate([task2.train_dataset()[i] for i in range(4)]))
    loss.backward()
    assert torch.isfinite(loss) and model2.head.weight.grad.abs().sum() > 0


def test_unit_dropout_replaces_units_in_training_only_and_guided_decoding_still_learns():
    from avatarsync.fkg.layout import KIND_UNIT
    from avatarsync.fkg.vocab import UNK_UNIT

    tok = FakeTokenizer()
    cfg = FKGConfig(size="tiny")
    cfg.loss.unit_dropout = 0.5
    cfg.eval.guidance = 2.0
    task = FKGTask(cfg, train_examples=_pixel_examples(128, 0, tok), val_examples=_pixel_examples(4, 1, tok),
                   tokenizer=tok)
    batch = task.collate([task.train_dataset()[i] for i in range(8)])
    seen = []
    torch.manual_seed(0)
    model = task.build_model()
    model.backbone.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["inputs_embeds"].clone()),
                                             with_kwargs=True)
    model.train()
    task._forward(model, batch)
    model.eval()
    task._forward(model, batch)
    units = batch["kind"] == KIND_UNIT
    unk_embed = model.backbone.embed_tokens.weight[task.vocab.special_id(UNK_UNIT)]
    def is_unk(x):
        return torch.isclose(x[units] - model.slot_embed.weight[1 + model.size.max_frame_tokens + 1],
                             unk_embed.expand(int(units.sum()), -1)).all(-1)
    dropped = is_unk(seen[0])
    assert 0.2 < float(dropped.float().mean()) < 0.8 and not bool(is_unk(seen[1]).any())
    cfg.loss.unit_dropout = 0.1
    model, hist = fit_toy(task, 80)
    val = task.val_dataset()
    m = task.evaluate(model, [task.collate([val[i] for i in range(len(val))])])
    assert m["gen_code_acc"] >= 0.95  # guided (eval.guidance = 2)


def test_code_noise_swaps_keyframe_inputs_in_training_only_and_keeps_labels():
    from avatarsync.fkg.layout import KIND_FRAME

    tok = FakeTokenizer()
    cfg = FKGConfig(size="tiny")
    cfg.loss.code_noise = 0.5
    task = FKGTask(cfg, train_examples=_pixel_examples(32, 0, tok), val_examples=[], tokenizer=tok)
    batch = task.collate([task.train_dataset()[i] for i in range(8)])
    labels = batch["labels"].clone()
    seen = []
    torch.manual_seed(0)
    model = task.build_model()
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    model.train()
    task._forward(model, batch)
    model.eval()
    task._forward(model, batch)
    frames = batch["kind"] == KIND_FRAME
    changed = seen[0] != batch["ids"]
    assert not bool(changed[~frames].any())  # reference, units, durations and [B] untouched
    assert 0.2 < float(changed[frames].float().mean()) < 0.6  # ~half swapped; some draw their own code
    assert set(seen[0][frames].tolist()) <= set(batch["ids"][frames].tolist())  # codes from the batch
    assert torch.equal(seen[1], batch["ids"]) and torch.equal(batch["labels"], labels)


def _context_examples(n, seed, patterns, length=5):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = list(rng.choice(UNITS, length))
        nxt = seq[1:] + ["end"]
        out.append(FKGExample(ref_codes=rng.integers(0, 16, (1, 2)),
                              key_codes=np.stack([patterns[(u, v)] for u, v in zip(seq, nxt)]),
                              units=seq, visemes=seq, durations=[0.1] * length))
    return out


def test_unit_context_lets_keyframes_follow_the_next_unit_and_chunks_keep_their_neighbours():
    rng = np.random.default_rng(0)
    patterns = {(u, v): rng.integers(0, 16, (1, 2)) for u in UNITS for v in [*UNITS, "end"]}
    train, val = _context_examples(256, 1, patterns), _context_examples(6, 2, patterns)
    results = {}
    for context in (False, True):
        cfg = FKGConfig(size="tiny", unit_context=context, codebook_size=16)
        cfg.data.max_units = 3  # chunks cut utterances: their edge units keep their true neighbours
        task = FKGTask(cfg, train_examples=train, val_examples=val)
        model, _ = fit_toy(task, 200)
        vb = task.collate([task.val_dataset()[i] for i in range(len(task.val_dataset()))])
        results[context] = task.evaluate(model, [vb])["gen_code_acc"]
        if context:
            first = task.val_dataset()[0]
            k = len(first)
            assert k < len(val[0]) and first.before is None
            assert first.after == (val[0].units[k], val[0].visemes[k])
            row = task._row(vb, 0)
            assert row["context_ids"][-1, 1] == task.vocab.unit_id(val[0].units[k])  # the next chunk's unit
    assert results[True] >= 0.95 and results[False] < 0.8, results
