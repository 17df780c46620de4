"""Checks on the built-in sentence pools used by the procedural corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEXT_DIR = Path(__file__).resolve().parents[1] / "avatarsync" / "data" / "text"
EN_PATH = TEXT_DIR / "en.txt"
ZH_PATH = TEXT_DIR / "zh.txt"

EN_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.?!']*[.?!]$")
HAN = r"\u4e00-\u9fff"
ZH_PUNCT = "，。？！"
ZH_ALLOWED = re.compile(rf"^[{HAN}][{HAN}{ZH_PUNCT}]*$")
DIGITS = re.compile(r"[0-9\uff10-\uff19]")


def _read_raw(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _lines(path: Path) -> list[str]:
    return _read_raw(path).splitlines()


@pytest.mark.parametrize("path,minimum", [(EN_PATH, 200), (ZH_PATH, 150)])
def test_pool_size(path: Path, minimum: int) -> None:
    assert len(_lines(path)) >= minimum


@pytest.mark.parametrize("path", [EN_PATH, ZH_PATH])
def test_no_empty_or_padded_lines(path: Path) -> None:
    for i, line in enumerate(_lines(path), 1):
        assert line.strip(), f"{path.name}:{i} is empty"
        assert line == line.strip(), f"{path.name}:{i} has surrounding whitespace"
        assert "\r" not in line and "\t" not in line, f"{path.name}:{i} has control chars"


@pytest.mark.parametrize("path", [EN_PATH, ZH_PATH])
def test_no_duplicates(path: Path) -> None:
    lines = _lines(path)
    seen: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        key = line.lower()
        assert key not in seen, f"{path.name}:{i} duplicates line {seen[key]}"
        seen[key] = i


@pytest.mark.parametrize("path", [EN_PATH, ZH_PATH])
def test_no_digits(path: Path) -> None:
    for i, line in enumerate(_lines(path), 1):
        assert not DIGITS.search(line), f"{path.name}:{i} contains a digit: {line!r}"


def test_en_charset_and_word_count() -> None:
    for i, line in enumerate(_lines(EN_PATH), 1):
        assert line.isascii(), f"en.txt:{i} is not ASCII"
        assert EN_ALLOWED.match(line), f"en.txt:{i} has disallowed characters: {line!r}"
        n_words = len(line.split())
        assert 5 <= n_words <= 14, f"en.txt:{i} has {n_words} words"


def test_zh_charset_and_length() -> None:
    for i, line in enumerate(_lines(ZH_PATH), 1):
        assert ZH_ALLOWED.match(line), f"zh.txt:{i} is not CJK + ，。？！ only: {line!r}"
        n_han = len(re.findall(f"[{HAN}]", line))
        assert n_han >= 6, f"zh.txt:{i} has only {n_han} characters"
        assert len(line) <= 16, f"zh.txt:{i} is {len(line)} characters long"


def test_en_covers_hard_letter_patterns() -> None:
    """Cheap orthographic proxy for phoneme coverage (th, sh, ch, ng, zh-like s)."""
    words = re.findall(r"[a-z']+", _read_raw(EN_PATH).lower())
    text = " ".join(words)
    for pattern, minimum in [("th", 50), ("sh", 20), ("ch", 20), ("ng", 30), ("v", 30), ("j", 5)]:
        assert text.count(pattern) >= minimum, f"en.txt: too few {pattern!r}"
    zh_words = {"measure", "usual", "usually", "vision", "garage", "treasure", "pleasure"}
    assert len(zh_words & set(words)) >= 3
