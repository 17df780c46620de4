"""espeak-ng voices (the library and data that ``espeakng-loader`` ships): listing and name checks.

Synthesis itself is :func:`avatarsync.phonemes.espeak.synthesize` (exact phoneme timings from its
events). A voice is a file under ``espeak-ng-data/lang/`` (its name, lower case, is what
``--voice`` takes: ``en-us``, ``en-gb-x-rp``, ``cmn-latn-pinyin``); ``+NAME`` adds a variant from
``espeak-ng-data/voices/!v`` (``en-us+f3``, or ``+f3`` alone for the language's default voice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..phonemes.espeak import DEFAULT_VOICES, VOICE_ALIASES

# which espeak language codes speak the units of each supported language: English phones; Mandarin
# tone-digit pinyin (the text is turned into pinyin first, so only the pinyin voice reads it right)
_LANG_PREFIXES = {"en": ("en",), "zh": ("cmn-latn-pinyin",), "fr": ("fr",)}


@dataclass(frozen=True)
class EspeakVoice:
    name: str  # lower-case file name, what espeak_SetVoiceByName takes
    title: str  # the file's "name" line
    languages: tuple[str, ...]


def data_dir() -> Path | None:
    try:
        import espeakng_loader
    except ImportError:
        return None
    return Path(espeakng_loader.get_data_path())


@lru_cache(maxsize=1)
def voices() -> tuple[EspeakVoice, ...]:
    """Every language voice in the installed espeak-ng data."""
    root = data_dir()
    if root is None or not (root / "lang").is_dir():
        return ()
    out = []
    for path in sorted((root / "lang").rglob("*")):
        if not path.is_file():
            continue
        title, langs = path.name, []
        try:
            for line in path.read_text(encoding="utf-8", errors="ignore").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "name":
                    title = " ".join(parts[1:])
                elif len(parts) >= 2 and parts[0] == "language":
                    langs.append(parts[1].lower())
        except OSError:
            continue
        out.append(EspeakVoice(path.name.lower(), title, tuple(langs)))
    return tuple(out)


@lru_cache(maxsize=1)
def variants() -> tuple[str, ...]:
    root = data_dir()
    folder = root / "voices" / "!v" if root else None
    if folder is None or not folder.is_dir():
        return ()
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))


def voice_lang(v: EspeakVoice) -> str | None:
    """The supported language ("en", "zh", "fr") a voice speaks, None for any other."""
    for lang, prefixes in _LANG_PREFIXES.items():
        if any(code.startswith(p) for code in v.languages for p in prefixes):
            return lang
    return None


def for_lang(lang: str) -> list[EspeakVoice]:
    return [v for v in voices() if voice_lang(v) == lang]


def find(name: str) -> EspeakVoice | None:
    """The voice a ``--voice`` base name (no ``+variant``) means, through the aliases espeak.py knows."""
    key = VOICE_ALIASES.get(name.strip().lower(), name.strip().lower())
    return next((v for v in voices() if v.name == key), None)


def default(lang: str) -> str:
    return DEFAULT_VOICES[lang]
