"""A new language (French): G2P through espeak-ng -> PVM visemes, its sentence pool and corpus, the
`--lang` check against the languages a bundle was trained for, and the recipe at tiny size."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarsync.errors import InputError, LanguageError
from avatarsync.phonemes.espeak import synthesize
from avatarsync.phonemes.lang import (DEFAULT_BUNDLE_LANGS, bundle_languages, check_bundle_lang,
                                      normalize_lang)
from avatarsync.phonemes.pvm import load_pvm
from avatarsync.phonemes.track import SILENCE
from avatarsync.phonemes.visemes import VISEME_NAMES

ROOT = Path(__file__).resolve().parents[1]
FR_POOL = ROOT / "avatarsync" / "data" / "text" / "fr.txt"


# -- --lang against a bundle's languages ---------------------------------------------------------
def test_lang_refusal_names_the_bundle_languages_and_the_recipe():
    with pytest.raises(InputError) as e:
        check_bundle_lang("fr", ["en", "zh"], "the model bundle X")
    err = e.value
    assert "the model bundle X was not trained for language 'fr' (French)" in err.problem
    assert "en (English), zh (Mandarin Chinese)" in err.problem
    assert "--lang en or --lang zh" in err.hint and "recipes/new_language/run.sh" in err.hint
    assert "docs/new_language.md" in err.hint


def test_bundle_languages_default_and_aliases():
    assert bundle_languages(None) == bundle_languages([]) == DEFAULT_BUNDLE_LANGS == ("en", "zh")
    assert bundle_languages(["en", "zh", "French"]) == ("en", "zh", "fr")
    assert check_bundle_lang("français", ["en", "zh", "fr"]) == "fr"
    assert check_bundle_lang("en-us", None) == "en" and check_bundle_lang("cmn", None) == "zh"
    assert check_bundle_lang("any", ["en"]) == "any"  # phone recognition needs no language model
    with pytest.raises(LanguageError, match="unsupported language code 'de'"):
        check_bundle_lang("de", ["en", "zh"])
    assert normalize_lang("FR-fr") == "fr"


def test_shipped_bundle_declares_en_and_zh():
    from avatarsync.config import from_dict, read_yaml
    from avatarsync.pipeline import DEFAULT_BUNDLE, BundleInfo

    info = from_dict(BundleInfo, read_yaml(DEFAULT_BUNDLE / "pipeline.yaml"), "pipeline.yaml")
    assert info.languages == ["en", "zh"]
    assert BundleInfo().languages == []  # an old bundle without the key: en and zh


def _pipeline(languages):
    from avatarsync.pipeline import BundleInfo, Pipeline

    return Pipeline(ROOT / "no-such-bundle", None, None, None, BundleInfo(languages=languages), torch.device("cpu"))


def test_pipeline_refuses_a_language_the_bundle_was_not_trained_for():
    pipe = _pipeline([])
    with pytest.raises(InputError, match=r"not trained for language 'fr'.*it speaks en \(English\), zh"):
        pipe.phonemes("Bonjour à tous.", None, None, "fr")
    with pytest.raises(InputError, match="not trained for language 'fr'"):
        pipe.phonemes(None, "speech.wav", "Bonjour", "French")  # refused before the audio is read
    track, samples, sr = _pipeline(["en", "zh", "fr"]).phonemes("Bonjour à tous.", None, None, "fr")
    assert track.lang == "fr" and len(samples) == round(track.duration * sr)


def test_speak_cli_refuses_french_with_the_shipped_bundle(capsys):
    from avatarsync.cli import main

    assert main(["speak", "--text", "Bonjour à tous.", "--lang", "fr", "-o", "never.mp4"]) == 2
    err = capsys.readouterr().err
    assert "not trained for language 'fr'" in err and "en (English), zh (Mandarin Chinese)" in err
    assert "recipes/new_language/run.sh" in err
    assert not Path("never.mp4").exists()


# -- French G2P -> PVM ---------------------------------------------------------------------------
@pytest.mark.parametrize("symbol, viseme", [
    ("ʁ", "velar"), ("ɲ", "alveolar"), ("ɑ̃", "open_vowel"), ("ɛ̃", "mid_vowel"), ("ɔ̃", "rounded_vowel"),
    ("œ̃", "rounded_vowel"), ("y", "rounded_vowel"), ("ø", "rounded_vowel"), ("œ", "rounded_vowel"),
    ("ɥ", "rounded_vowel"), ("ə-", "mid_vowel"), ("a-", "open_vowel"), ("y-", "rounded_vowel"),
])
def test_french_phones_map_by_articulation(symbol, viseme):
    assert load_pvm(strict=True).viseme_of(symbol) == viseme


def test_french_text_to_visemes():
    syn = synthesize("Un bon vin blanc, une rue, deux bœufs.", "fr")
    track = syn.track
    assert track.lang == "fr" and syn.voice == "espeak:fr"
    assert [u.symbol for u in track.units] == [u.symbol for u in track.phones]  # units are phones, as English
    symbols = [u.symbol for u in track.units if u.symbol != SILENCE]
    for nasal in ("œ̃", "ɔ̃", "ɛ̃", "ɑ̃"):
        assert nasal in symbols
    assert "ʁ" in symbols and "y" in symbols and "ø" in symbols
    pvm = load_pvm(strict=True)
    assert all(pvm.viseme_of(u.symbol) == u.viseme for u in track.units if u.symbol != SILENCE)
    assert {u.viseme for u in track.units} <= set(VISEME_NAMES)


def test_french_voice_is_listed_and_default():
    from avatarsync.voices import default_voice, list_voices, resolve

    assert default_voice("fr") == "espeak:fr"
    assert {"fr", "fr-be", "fr-ch"} <= {v.name for v in list_voices("fr")}
    assert resolve("fr-be+f3", "fr") == ("espeak", "fr-be+f3")
    with pytest.raises(InputError, match="not fr"):
        resolve("en-us", "fr")


def test_french_transcript_aligns_with_the_espeak_backend():
    from avatarsync.phonemes.align import get_aligner

    syn = synthesize("Le chat dort sur la chaise.", "fr", rate=140)
    aligner = get_aligner("auto")
    track = aligner.align(syn.audio, syn.sample_rate, "Le chat dort sur la chaise.", "fr")
    assert aligner.used == "espeak" and track.lang == "fr"
    assert [u.symbol for u in track.units] == [u.symbol for u in synthesize("Le chat dort sur la chaise.", "fr").track.units]


# -- the French sentence pool and corpus ---------------------------------------------------------
def test_french_pool():
    lines = FR_POOL.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 300
    assert len({ln.lower() for ln in lines}) == len(lines)
    for i, ln in enumerate(lines, 1):
        assert ln == ln.strip() and ln, f"fr.txt:{i}"
        assert not re.search(r"[0-9]", ln), f"fr.txt:{i} has a digit"
        assert re.match(r"^[A-ZÀ-Ý][\w' ,.?!\-]*[.?!]$", ln), f"fr.txt:{i}: {ln!r}"
        assert 4 <= len(ln.split()) <= 14, f"fr.txt:{i}"
    from avatarsync.data.pools import sentence_pool

    assert sentence_pool("fr") == tuple(lines)


def test_french_pool_is_regenerated_by_its_script(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes" / "new_language"))
    try:
        from fr_pool import make_pool
    finally:
        sys.path.pop(0)
    assert "\n".join(make_pool()) + "\n" == FR_POOL.read_text(encoding="utf-8")


def test_french_corpus_clip(tmp_path):
    from avatarsync.data.synth import SynthConfig, make_clip, plan_clips

    cfg = SynthConfig(out=str(tmp_path), clips=30, seed=0, lang="fr", size=64, identities=9, video=False)
    plans = plan_clips(cfg)
    assert {p.lang for p in plans} == {"fr"} and all(p.clip_id.startswith("fr-") for p in plans)
    by = {s: {p.sentence_id for p in plans if p.split == s} for s in ("train", "val", "test")}
    assert not by["train"] & by["test"] and not by["train"] & by["val"]
    entry = make_clip(plans[0], cfg, tmp_path)
    assert entry["lang"] == "fr"
    clip = tmp_path / "clips" / plans[0].clip_id
    track = json.loads((clip / "track.json").read_text(encoding="utf-8"))
    assert track["lang"] == "fr"
    with np.load(clip / "truth.npz") as z:
        assert z["openness"].shape == (entry["n_frames"],) and z["openness"].max() > 0.3


# -- the recipe at tiny size ---------------------------------------------------------------------
def test_recipe_files_agree():
    from avatarsync.train.registry import load_recipe

    cfg, train = load_recipe("fkg", ROOT / "recipes" / "new_language" / "fkg_fr_finetune.yaml")
    assert cfg.init_from == "avatarsync/assets/default/fkg" and cfg.data.unit_key == "viseme"
    assert cfg.data.corpus.endswith("corpus_fr") and len(cfg.data.extra_corpora) == 2
    assert train.steps * train.batch_size <= 20000 and train.max_minutes <= 20
    script = (ROOT / "recipes" / "new_language" / "run.sh").read_text()
    assert "--lang fr" in script and 'languages"] = ["en", "zh", "fr"]' in script


@pytest.mark.slow
def test_recipe_runs_at_tiny_size(tmp_path):
    """run.sh end to end with TINY=1: a few clips, a few steps, a bundle that speaks French."""
    env = {**os.environ, "TINY": "1", "OUT": str(tmp_path / "nl"), "PY": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "recipes" / "new_language" / "run.sh")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = (tmp_path / "nl" / "m" / "table.md").read_text()
    for lang in ("fr", "en", "zh"):
        assert f"| {lang} | bundle |" in table and f"| {lang} | fr-finetune |" in table
    from avatarsync.config import from_dict, read_yaml
    from avatarsync.pipeline import BundleInfo

    info = from_dict(BundleInfo, read_yaml(tmp_path / "nl" / "bundle" / "pipeline.yaml"), "pipeline.yaml")
    assert info.languages == ["en", "zh", "fr"] and info.unit_key == "viseme" and info.guidance == 2.0
