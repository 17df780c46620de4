"""Timestamped unit sequences: the value every front end produces.

Text goes through espeak-ng (:func:`text_to_track`, :func:`espeak.synthesize`),
audio through an aligner (:func:`align.get_aligner`); both give a
:class:`PhonemeTrack` whose units carry viseme classes from the PVM
(:mod:`.pvm`). Nothing heavy is loaded at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError
from .lang import SUPPORTED_LANGS, normalize_lang
from .track import SILENCE, PhonemeTrack, PhonemeUnit

if TYPE_CHECKING:
    from .espeak import Synthesis

_VOICE_OPTS = ("voice", "rate", "pitch")


def text_to_track(text: str, lang: str = "en", **voice_opts) -> "Synthesis":
    """Speak ``text`` with espeak-ng: audio plus its exact timestamped units.

    ``voice_opts``: ``voice`` (espeak voice or ``"+f3"``-style variant), ``rate``
    (words per minute, 80..450), ``pitch`` (0..100). Raises InputError for empty
    text or a bad option, LanguageError for a language other than en / zh.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty", "give a sentence to speak")
    lang = normalize_lang(lang)
    unknown = sorted(set(voice_opts) - set(_VOICE_OPTS))
    if unknown:
        raise InputError(f"unknown voice option(s): {', '.join(unknown)}", f"use {', '.join(_VOICE_OPTS)}")
    from .espeak import synthesize

    return synthesize(text, lang, **voice_opts)


__all__ = ["SILENCE", "SUPPORTED_LANGS", "PhonemeTrack", "PhonemeUnit", "normalize_lang", "text_to_track"]
