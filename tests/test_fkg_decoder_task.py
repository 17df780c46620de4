"""Decoder adaptation (``avatarsync train decoder``): soft keyframe codes from a keyframe model, a decoder
that learns to draw them while the tokens stay fixed, the stored set reused, an exported tokenizer."""

import numpy as np
import pytest
import torch

from avatarsync.errors import InputError
from avatarsync.fkg import soft_codes
from avatarsync.fkg.decoder_task import DecoderTask, DecoderTaskConfig
from avatarsync.fkg.fakes import fit_toy
from avatarsync.fkg.task import FKGConfig, FKGTask
from avatarsync.tokenizers import VisualTokenizer, save_tokenizer, token_fingerprint
from avatarsync.tokenizers.config import TokenizerConfig
from test_fkg_task import _write_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy corpus, its token cache, a tiny reference tokenizer and a keyframe model trained on it."""
    root = tmp_path_factory.mktemp("adapt")
    _write_corpus(root / "corpus", n_clips=5)
    torch.manual_seed(0)
    tok = VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=10, reference=True)).eval()
    save_tokenizer(tok, tok.config, root / "tok")
    cfg = FKGConfig(size="tiny")
    cfg.data.corpus, cfg.data.token_cache = str(root / "corpus"), str(root / "cache")
    cfg.data.max_units, cfg.data.align, cfg.data.crop_size = 3, "none", 32
    fkg_task = FKGTask(cfg, tokenizer=tok)
    model, _ = fit_toy(fkg_task, 5)
    model.save_pretrained(root / "fkg", cfg)
    return root


def _task(root, **kw) -> DecoderTask:
    cfg = DecoderTaskConfig(tokenizer=str(root / "tok"), fkg=str(root / "fkg"), guidance=1.0, **kw)
    cfg.data.token_cache = cfg.data.val_token_cache = str(root / "cache")
    cfg.data.max_keyframes, cfg.data.val_max_keyframes = 0, 0
    return DecoderTask(cfg)


def test_soft_codes_cover_the_split_and_decode_as_the_keyframe_model_speaks(trained):
    task = _task(trained)
    train, val = task.train_dataset(), task.val_dataset()
    assert len(train) == 4 * 5 and len(val) == 5  # 4 training clips and 1 validation clip of 5 units each
    soft, hard, key, ref = train[0]
    assert soft.shape == (10, 4, 4) and soft.dtype == np.float16  # 10 LFQ bits on the 4x4 grid of a 32 px crop
    assert hard.shape == (4, 4) and key.shape == ref.shape == (32, 32, 3)
    from avatarsync.fkg.data import CacheDataset

    first = CacheDataset(trained / "cache", "train", 3)[0]
    assert np.array_equal(hard, first.key_codes[0]) and np.array_equal(key, first.key_pixels[0])
    assert np.abs(soft).max() <= 1.0 + 1e-3  # expected LFQ bits lie in [-1, 1]
    assert (trained / "cache" / "soft_codes_train.npz").is_file()


def test_adaptation_trains_decoding_only_and_its_keyframes_get_closer(trained):
    task = _task(trained, soft_fraction=1.0)
    tok = VisualTokenizer.from_pretrained(trained / "tok")
    before = token_fingerprint(tok)
    batches = [task.collate([task.train_dataset()[i] for i in range(8)])]
    first = task.evaluate(task.build_model(), batches)
    model, history = fit_toy(task, 40, lr=2e-3)
    after = task.evaluate(model, batches)
    assert after["soft_psnr"] > first["soft_psnr"] + 0.5, (first, after)
    assert history[-1]["loss"] < history[0]["loss"]
    assert token_fingerprint(model.tokenizer) == before  # encoder and codebook untouched: the tokens stay
    changed = {n for n, p in model.tokenizer.named_parameters()
               if not torch.equal(p, dict(tok.named_parameters())[n])}
    assert changed and all(n.startswith(("decoder", "reference_encoder")) for n in changed)
    task.export(model, trained / "adapted")
    loaded = VisualTokenizer.from_pretrained(trained / "adapted")
    b = batches[0]
    vectors = b["soft"]
    with torch.no_grad():
        assert torch.allclose(loaded.decode_codes(vectors, b["reference"]),
                              model.tokenizer.decode_codes(vectors, b["reference"]), atol=1e-5)
    assert (trained / "adapted" / "recipe.yaml").is_file()


def test_a_stored_set_is_reused_and_remade_when_its_settings_change(trained, monkeypatch):
    _task(trained).train_dataset()  # built (or already there)
    calls = []
    real = soft_codes.build_soft_codes

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(soft_codes, "build_soft_codes", counting)
    _task(trained).train_dataset()
    assert calls == []
    task = _task(trained)
    task.cfg.guidance = 1.5
    task.train_dataset()
    assert len(calls) == 1


def test_a_corpus_without_a_cache_is_tokenized_as_the_keyframe_model_was_trained(trained):
    task = _task(trained)
    task.cfg.data.token_cache, task.cfg.data.corpus = "", str(trained / "corpus")
    (trained / "corpus" / "fkg_token_cache").exists() and pytest.fail("the corpus had a cache already")
    fresh = task.train_dataset()
    assert (trained / "corpus" / "fkg_token_cache" / "index.json").is_file()
    stored = _task(trained).train_dataset()  # the fixture's cache, made by the keyframe task itself
    assert len(fresh) == len(stored)
    assert np.array_equal(fresh.codes.hard, stored.codes.hard) and np.array_equal(fresh.codes.soft, stored.codes.soft)


def test_missing_settings_name_the_fix(trained):
    task = _task(trained)
    task.cfg.data.token_cache = ""
    with pytest.raises(InputError, match="data.corpus"):
        task.train_dataset()
    task = _task(trained)
    task.cfg.data.token_cache = str(trained / "no_cache")
    task.cfg.data.corpus = str(trained / "no_corpus")
    with pytest.raises(InputError, match="no corpus to build it from"):
        task.train_dataset()
    task = _task(trained)
    task.cfg.fkg = str(trained / "nowhere")
    with pytest.raises(InputError, match="keyframe model folder"):
        task.train_dataset()


def test_the_bundled_recipe_loads_and_reads_clips_the_keyframe_model_never_trained_on():
    from pathlib import Path

    from avatarsync.config import read_yaml
    from avatarsync.train.registry import load_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    cfg, train = load_recipe("decoder", recipes / "decoder_default.yaml")
    assert isinstance(DecoderTask(cfg), DecoderTask) and 0 < cfg.soft_fraction < 1 and train.steps > 0
    fkg_corpora = read_yaml(recipes / "fkg_default_finetune.yaml")["data"]
    assert cfg.data.corpus not in [fkg_corpora["corpus"], *fkg_corpora["extra_corpora"]]
    assert cfg.data.val_corpus == fkg_corpora["corpus"] and cfg.data.val_split == "val"
