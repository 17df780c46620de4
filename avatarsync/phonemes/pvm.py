"""Phoneme-to-Visual Mapping (PVM): IPA phonemes and pinyin syllables -> viseme classes.

The table ships as ``pvm.tsv`` beside this module (columns ``phoneme``,
``viseme``, ``note``; documented in docs/phonemes.md). A user file with the
same columns (or a JSON object ``{phoneme: viseme}``) overrides or extends it:
``load_pvm("my_pvm.tsv")``.

Lookup (:meth:`PhonemeVisemeMap.viseme_of`) is robust to what aligners and
espeak emit: pauses map to ``rest``; pinyin syllables (``"zhuang4"``) map
through their main vowel; stress, length and tone marks and diacritics are
ignored; a diphthong, rhotic vowel or affricate not in the table takes the
viseme of its first vowel, else of its longest known leading segment. An
unknown phoneme raises in strict mode; otherwise it gets a neutral class and
is counted in ``.unknown``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from .track import SILENCE, PhonemeTrack, PhonemeUnit
from .visemes import REST, VISEME_INDEX, VISEME_NAMES

PVM_PATH = Path(__file__).with_name("pvm.tsv")

VOWEL_CHARS = set("aeiouyæɑɐɒɔəɘɚɛɜɝɞɤɨɪɯɵɶʉʊʌʏøœᵻɿʅ")
_IGNORED = set("ˈˌːˑ˥˦˧˨˩0123456789.-‿͡ʰʷʲˠˤ")
_SILENCES = {"", "_", SILENCE, "sp", "spn", "<sil>", "pau", "#", "|"}

_PINYIN_RE = re.compile(r"^[a-zvü]+[1-5]$")
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c", "s")
# y/w spellings -> the final they write
_YW = {
    "yi": "i", "yin": "in", "ying": "ing", "ya": "ia", "ye": "ie", "yao": "iao", "you": "iu", "yan": "ian",
    "yang": "iang", "yong": "iong", "yu": "ü", "yue": "üe", "yuan": "üan", "yun": "ün", "yo": "io",
    "wu": "u", "wa": "ua", "wo": "uo", "wai": "uai", "wei": "ui", "wan": "uan", "wen": "un", "wang": "uang",
    "weng": "ueng",
}
# pinyin final -> IPA of its main vowel (the key looked up in the table)
PINYIN_NUCLEUS: dict[str, str] = {
    "a": "a", "o": "o", "e": "ɤ", "ê": "ɛ", "i": "i", "u": "u", "ü": "y", "ai": "a", "ei": "e", "ao": "a",
    "ou": "o", "an": "a", "en": "ə", "ang": "a", "eng": "ə", "ong": "ʊ", "er": "ɚ", "ia": "a", "ie": "ɛ",
    "iao": "a", "iu": "o", "ian": "ɛ", "in": "i", "iang": "a", "ing": "i", "iong": "ʊ", "io": "o", "ua": "a",
    "uo": "o", "uai": "a", "ui": "e", "uan": "a", "un": "ə", "uang": "a", "ueng": "ə", "üe": "ɛ", "üan": "ɛ",
    "ün": "y", "n": "n", "ng": "ŋ", "m": "m", "hm": "m", "hng": "ŋ",
}


def is_pinyin(symbol: str) -> bool:
    """True for a pinyin syllable with a tone digit (``"ni3"``, ``"lv4"``)."""
    return bool(_PINYIN_RE.match(symbol))


def pinyin_nucleus(syllable: str) -> str:
    """The IPA key of a pinyin syllable's main vowel (``"zhuang4"`` -> ``"a"``, ``"shi4"`` -> ``"ʅ"``)."""
    s = syllable.rstrip("12345").replace("v", "ü")
    if s in ("n", "ng", "m", "hm", "hng", "er", "ê"):
        return PINYIN_NUCLEUS[s]
    if s in _YW:
        return PINYIN_NUCLEUS[_YW[s]]
    initial = next((i for i in _INITIALS if s.startswith(i) and len(s) > len(i)), "")
    final = s[len(initial):]
    if final == "i" and initial in ("zh", "ch", "sh", "r"):
        return "ʅ"
    if final == "i" and initial in ("z", "c", "s"):
        return "ɿ"
    if initial in ("j", "q", "x") and final.startswith("u"):
        final = "ü" + final[1:]
    if final in PINYIN_NUCLEUS:
        return PINYIN_NUCLEUS[final]
    vowel = next((c for c in final if c in "aeiouü"), "")
    return {"ü": "y", "e": "ə"}.get(vowel, vowel) or final


def read_table(path: str | Path) -> dict[str, str]:
    """Read a PVM file: TSV ``phoneme<TAB>viseme[<TAB>note]`` (``#`` comments, optional
    header) or a JSON object. Raises InputError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read PVM file {path}: {e.strerror or e}", "check the path") from e
    table: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"PVM file {path} is not valid JSON: {e}", 'write {"phoneme": "viseme", ...}') from e
        if not isinstance(data, dict):
            raise InputError(f"PVM file {path} must hold a JSON object", 'write {"phoneme": "viseme", ...}')
        rows = [(str(k), str(v), f"key {k!r}") for k, v in data.items()]
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c.strip() for c in (line.split("\t") if "\t" in line else line.split(None, 2))]
            if n == 1 and cols[:2] == ["phoneme", "viseme"]:
                continue
            if len(cols) < 2:
                raise InputError(f"{path}:{n}: expected 'phoneme<TAB>viseme', got {line!r}", "one mapping per line")
            rows.append((cols[0], cols[1], f"line {n}"))
    for phoneme, vis, where in rows:
        if vis not in VISEME_INDEX:
            raise InputError(
                f"{path} {where}: unknown viseme {vis!r} for {phoneme!r}", f"use one of: {', '.join(VISEME_NAMES)}"
            )
        table[unicodedata.normalize("NFC", phoneme)] = vis
    return table


@dataclass
class PhonemeVisemeMap:
    """A phoneme -> viseme table with robust lookup (see module docstring)."""

    table: dict[str, str]
    strict: bool = False
    unknown: Counter = field(default_factory=Counter)

    def is_vowel(self, phoneme: str) -> bool:
        """True when the phone's first meaningful character is a vowel."""
        core = self._strip(phoneme)
        return bool(core) and core[0] in VOWEL_CHARS

    @staticmethod
    def _strip(phoneme: str) -> str:
        s = unicodedata.normalize("NFD", phoneme)
        s = "".join(c for c in s if c not in _IGNORED and unicodedata.category(c) != "Mn")
        return unicodedata.normalize("NFC", s)

    def viseme_of(self, phoneme: str) -> str:
        """The viseme class name for an IPA phoneme, pinyin syllable or pause."""
        s = unicodedata.normalize("NFC", phoneme.strip())
        if s in self.table:
            return self.table[s]
        if s in _SILENCES:
            return REST
        if is_pinyin(s):
            key = pinyin_nucleus(s)
            if key in self.table:
                return self.table[key]
        core = self._strip(s)
        if core in self.table:
            return self.table[core]
        first_vowel = next((c for c in core if c in VOWEL_CHARS), "")
        if first_vowel and first_vowel in self.table:
            return self.table[first_vowel]
        for k in range(len(core) - 1, 0, -1):  # longest known leading segment
            if core[:k] in self.table:
                return self.table[core[:k]]
        if self.strict:
            raise InputError(f"phoneme {phoneme!r} is not in the PVM", "add it to a PVM override file (see docs/phonemes.md)")
        self.unknown[phoneme] += 1
        return "mid_vowel" if first_vowel else "alveolar"

    def merged(self, overrides: dict[str, str]) -> "PhonemeVisemeMap":
        """A new map with ``overrides`` taking precedence."""
        return PhonemeVisemeMap({**self.table, **overrides}, strict=self.strict)

    def apply(self, track: PhonemeTrack) -> PhonemeTrack:
        """A copy of ``track`` with every viseme recomputed by this map."""
        def relabel(units: list[PhonemeUnit]) -> list[PhonemeUnit]:
            return [replace(u, viseme=REST if u.symbol == SILENCE else self.viseme_of(u.symbol)) for u in units]

        return PhonemeTrack(relabel(track.units), track.lang, track.duration, track.source, relabel(track.phones))


@lru_cache(maxsize=1)
def _shipped_table() -> tuple[tuple[str, str], ...]:
    return tuple(read_table(PVM_PATH).items())


def load_pvm(path: str | Path | None = None, strict: bool = False) -> PhonemeVisemeMap:
    """The shipped PVM, with the mappings in the user file ``path`` (TSV or JSON) merged over it."""
    pvm = PhonemeVisemeMap(dict(_shipped_table()), strict=strict)
    return pvm.merged(read_table(path)) if path else pvm


def default_pvm() -> PhonemeVisemeMap:
    """A fresh non-strict map with the shipped table (unknowns are counted on it)."""
    return load_pvm()
