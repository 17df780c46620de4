"""The built-in sentence pools (English, Mandarin and French) written for this project."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..errors import LanguageError

POOL_LANGS = ("en", "zh", "fr")


@lru_cache(maxsize=None)
def sentence_pool(lang: str) -> tuple[str, ...]:
    """All sentences of the built-in pool for ``lang`` (file order)."""
    if lang not in POOL_LANGS:
        raise LanguageError(f"no built-in sentence pool for language {lang!r}", f"use one of {', '.join(POOL_LANGS)}")
    text = resources.files("avatarsync.data").joinpath("text", f"{lang}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
