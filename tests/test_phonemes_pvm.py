"""The Phoneme-to-Visual Mapping: shipped table, robust lookup, overrides, pool coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avatarsync.errors import InputError
from avatarsync.phonemes.espeak import synthesize
from avatarsync.phonemes.pvm import PVM_PATH, is_pinyin, load_pvm, pinyin_nucleus, read_table
from avatarsync.phonemes.track import SILENCE
from avatarsync.phonemes.visemes import VISEME_NAMES

POOLS = Path(__file__).resolve().parents[1] / "avatarsync" / "data" / "text"


def test_shipped_table_uses_every_class_and_only_known_ones():
    table = read_table(PVM_PATH)
    assert len(table) > 100
    assert set(table.values()) == set(VISEME_NAMES)
    header = PVM_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t") == ["phoneme", "viseme", "note"]


@pytest.mark.parametrize(
    "symbol, viseme",
    [
        ("sil", "rest"), ("", "rest"), ("p", "bilabial"), ("m", "bilabial"), ("f", "labiodental"),
        ("θ", "dental"), ("s", "alveolar"), ("tʃ", "postalveolar"), ("ɹ", "postalveolar"), ("k", "velar"),
        ("ɑː", "open_vowel"), ("ə", "mid_vowel"), ("iː", "spread_vowel"), ("uː", "rounded_vowel"),
        # stress, length, tone marks and diacritics are ignored
        ("ˈaɪ", "open_vowel"), ("ˌoʊ", "rounded_vowel"), ("a˥˩", "open_vowel"), ("ĩ", "spread_vowel"),
        ("e5", "mid_vowel"), ("t͡ʃ", "postalveolar"), ("pʰ", "bilabial"), ("kʷ", "velar"),
        # compounds not in the table: first vowel, else longest leading segment
        ("ɔɪə", "rounded_vowel"), ("aɪʊ", "open_vowel"), ("tsʷ", "alveolar"), ("ʃx", "postalveolar"),
        # pinyin syllables map through their main vowel
        ("ni3", "spread_vowel"), ("hao3", "open_vowel"), ("zhuang4", "open_vowel"), ("guo2", "rounded_vowel"),
        ("shi4", "postalveolar"), ("si4", "alveolar"), ("lv4", "rounded_vowel"), ("yu3", "rounded_vowel"),
        ("jue2", "mid_vowel"), ("xue2", "mid_vowel"), ("er2", "mid_vowel"), ("wu3", "rounded_vowel"),
        ("ma5", "open_vowel"), ("n2", "alveolar"), ("ng4", "velar"),
    ],
)
def test_viseme_of(symbol, viseme):
    assert load_pvm(strict=True).viseme_of(symbol) == viseme


def test_pinyin_helpers():
    assert is_pinyin("ni3") and is_pinyin("lv4") and not is_pinyin("ni") and not is_pinyin("p")
    assert pinyin_nucleus("ju4") == "y" and pinyin_nucleus("zi3") == "ɿ" and pinyin_nucleus("you3") == "o"


def test_unknown_phoneme_strict_and_lenient():
    strict = load_pvm(strict=True)
    with pytest.raises(InputError, match="not in the PVM"):
        strict.viseme_of("ʘ")
    lenient = load_pvm()
    assert lenient.viseme_of("ʘ") in VISEME_NAMES
    assert lenient.viseme_of("ʘ") == "alveolar"  # neutral consonant shape
    assert lenient.unknown["ʘ"] == 2


def test_override_files(tmp_path):
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("phoneme\tviseme\tnote\n# my changes\np\topen_vowel\tjoke\nʘ\tbilabial\tclick\n", encoding="utf-8")
    pvm = load_pvm(tsv, strict=True)
    assert pvm.viseme_of("p") == "open_vowel" and pvm.viseme_of("ʘ") == "bilabial"
    assert pvm.viseme_of("b") == "bilabial"  # the rest of the shipped table stays
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"m": "rest"}), encoding="utf-8")
    assert load_pvm(js).viseme_of("m") == "rest"
    bad = tmp_path / "bad.tsv"
    bad.write_text("p\tbilabial\nk\twide_open\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2.*wide_open"):
        load_pvm(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_pvm(tmp_path / "missing.tsv")


def test_apply_relabels_a_track(tmp_path):
    track = synthesize("Peace and development", "en").track
    f = tmp_path / "o.tsv"
    f.write_text("p\trest\n", encoding="utf-8")
    new = load_pvm(f).apply(track)
    new.validate()
    assert [u.viseme for u in new.units if u.symbol == "p"] == ["rest"] * 2
    assert [u.symbol for u in new.units] == [u.symbol for u in track.units]
    assert [u.viseme for u in new.units if u.symbol != "p"] == [u.viseme for u in track.units if u.symbol != "p"]


@pytest.mark.parametrize("lang", ["en", "zh", "fr"])
def test_every_phoneme_of_the_builtin_pool_maps(lang):
    """Every phone espeak-ng emits for the corpus pool (and every pinyin unit) is in the PVM."""
    pool = POOLS / f"{lang}.txt"
    assert pool.is_file(), f"the packaged sentence pool {pool} is missing"  # a missing file fails, never skips
    lines = [ln.strip() for ln in pool.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert lines
    pvm = load_pvm(strict=True)
    phones, units = set(), set()
    for line in lines:
        track = synthesize(line, lang).track
        phones.update(u.symbol for u in track.phones)
        units.update(u.symbol for u in track.units)
    for p in sorted(phones):
        assert p == SILENCE or pvm.viseme_of(p) in VISEME_NAMES, p
    if lang == "zh":
        assert all(u == SILENCE or is_pinyin(u) for u in units), sorted(u for u in units if not is_pinyin(u))
        for u in units:
            pvm.viseme_of(u)
    assert len(phones) > 25
