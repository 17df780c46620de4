"""Timestamped unit sequences: the value every front end produces.

Text goes through a voice (:func:`text_to_track`: Piper or espeak-ng, :mod:`avatarsync.voices`),
audio through an aligner (:func:`align.get_aligner`); both give a
:class:`PhonemeTrack` whose units carry viseme classes from the PVM
(:mod:`.pvm`). Nothing heavy is loaded at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError, LanguageError
from .lang import SUPPORTED_LANGS, normalize_lang
from .track import SILENCE, PhonemeTrack, PhonemeUnit

if TYPE_CHECKING:
    from .espeak import Synthesis

_VOICE_OPTS = ("voice", "rate", "pitch")


def text_to_track(text: str, lang: str = "en", **voice_opts) -> "Synthesis":
    """Speak ``text``: audio plus its timestamped units, timed by the synthesizer itself.

    ``voice_opts``: ``voice`` (a voice of :mod:`avatarsync.voices`: a Piper voice such as
    ``en_US-joe-medium``, an espeak-ng voice such as ``en-gb+f3``, or a ``"+f3"``-style espeak
    variant; None: the language's default, its Piper voice when installed), ``rate`` (words per
    minute, 80..450), ``pitch`` (0..100, espeak-ng only). Raises InputError for empty text, a bad
    option or an unknown voice, LanguageError for a language other than en / zh.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty", "give a sentence to speak")
    if isinstance(lang, str) and lang.strip().lower() == "any":
        raise LanguageError("--lang any is for recorded speech (--audio): it recognizes phones, it cannot speak",
                            f"give the text's language: {', '.join(SUPPORTED_LANGS)}")
    lang = normalize_lang(lang)
    unknown = sorted(set(voice_opts) - set(_VOICE_OPTS))
    if unknown:
        raise InputError(f"unknown voice option(s): {', '.join(unknown)}", f"use {', '.join(_VOICE_OPTS)}")
    from ..voices import synthesize

    return synthesize(text, lang, **voice_opts)


__all__ = ["SILENCE", "SUPPORTED_LANGS", "PhonemeTrack", "PhonemeUnit", "normalize_lang", "text_to_track"]
