"""Text to phonemes without synthesis, through phonemizer's espeak-ng backend.

Use this when only the phoneme sequence is needed (preparing transcripts,
checking PVM coverage of a new language); ``espeak.synthesize`` is the path
that also gives timing and audio. Both use the espeak-ng 1.52 library and
data shipped by ``espeakng-loader``, so Mandarin works without system packages.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import InputError
from .lang import normalize_lang

_VOICES = {"en": "en-us", "zh": "cmn"}


@lru_cache(maxsize=None)
def _backend(voice: str):
    import espeakng_loader
    from phonemizer.backend import EspeakBackend
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    return EspeakBackend(voice, with_stress=False, tie=False, language_switch="remove-flags")


def phonemize(text: str, lang: str = "en") -> list[list[str]]:
    """IPA phonemes of each word of ``text`` (Mandarin phones carry espeak's tone marks)."""
    from phonemizer.separator import Separator

    lang = normalize_lang(lang)
    if not text or not text.strip():
        raise InputError("the text is empty", "give a sentence to phonemize")
    out = _backend(_VOICES[lang]).phonemize([text], separator=Separator(phone=" ", word=" | "), strip=True)[0]
    words = [[p for p in w.split() if p] for w in out.split("|")]
    return [w for w in words if w]


def visual_units(text: str, lang: str = "en", pvm=None) -> list[str]:
    """The PVM visual unit (viseme class) of every phoneme of ``text``."""
    from .pvm import load_pvm

    pvm = pvm or load_pvm()
    return [pvm.viseme_of(p) for word in phonemize(text, lang) for p in word]
