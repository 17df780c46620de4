import pytest

from avatarsync.errors import InputError, LanguageError
from avatarsync.phonemes.g2p import phonemize, visual_units
from avatarsync.phonemes.pvm import load_pvm


def test_english_words_and_phones():
    words = phonemize("Peace and development", "en")
    assert len(words) == 3
    assert words[0][0] == "p" and words[2][0] == "d"


def test_visual_units_follow_the_pvm():
    units = visual_units("Bob met five", "en")
    assert units[0] == "bilabial"  # b
    assert "labiodental" in units  # f, v


def test_mandarin_phones_all_map_strictly():
    strict = load_pvm(strict=True)
    for sentence in ("和平与发展是时代的主题", "我们明天去北京", "你好"):
        phones = [p for w in phonemize(sentence, "zh") for p in w]
        assert phones
        for p in phones:
            strict.viseme_of(p)


def test_bad_input():
    with pytest.raises(InputError):
        phonemize("  ", "en")
    with pytest.raises(LanguageError):
        phonemize("bonjour", "fr")
