"""Audio -> timestamped phonemes through one interface with several backends.

``get_aligner("auto" | "whisperx" | "pocketsphinx" | "whisper" | "espeak", **opts).align(audio, sr, transcript, lang)``

- ``whisperx``: ASR + alignment, English and Mandarin, local models only.
- ``pocketsphinx``: offline English forced alignment (needs a transcript).
- ``whisper``: offline ASR (faster-whisper, the installed Whisper base or ``asr_model_dir``), then
  pocketsphinx (English) or pypinyin (Mandarin) timing; with a transcript, checks it against the
  recognized words first.
- ``espeak``: synthesize the transcript and stretch it onto the audio's speech
  region (crude, any language; the last fallback).
- ``phoneloop``: ``lang="any"``: pocketsphinx phone recognition without words, for speech in a
  language avatarsync has no model for (the mouth follows the sounds; no transcript).
- ``auto``: per call, the first of the above that can handle the input;
  ``.used`` names the one that ran (also ``track.source``). With a transcript and
  the ``whisper`` backend available, the transcript is first checked against the
  recognized words whichever backend then aligns it (``check_transcript=False``: not).
"""

from __future__ import annotations

import inspect

import numpy as np

from ...errors import BackendUnavailable, InputError
from ..track import PhonemeTrack
from .base import Aligner
from .sphinx import PocketsphinxAligner
from .asr_align import WhisperAligner
from .phoneloop import PhoneLoopAligner
from .stretch import EspeakAligner
from .whisper import WhisperXAligner

BACKENDS: dict[str, type[Aligner]] = {
    "whisperx": WhisperXAligner,
    "pocketsphinx": PocketsphinxAligner,
    "whisper": WhisperAligner,
    "espeak": EspeakAligner,
    "phoneloop": PhoneLoopAligner,
}
ALIGNER_NAMES: tuple[str, ...] = ("auto", *BACKENDS)


def _accepted(cls: type[Aligner]) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}


def _opts_for(cls: type[Aligner], opts: dict) -> dict:
    names = _accepted(cls)
    return {k: v for k, v in opts.items() if k in names}


def _check_opts(opts: dict) -> None:
    known = set().union(*(_accepted(c) for c in BACKENDS.values()))
    unknown = sorted(set(opts) - known)
    if unknown:
        raise InputError(f"unknown aligner option(s): {', '.join(unknown)}", f"known options: {', '.join(sorted(known))}")


class AutoAligner(Aligner):
    """Picks, per call, WhisperX (if usable), else pocketsphinx (English + transcript),
    else whisper (offline ASR), else espeak (any transcript). ``used`` names the backend
    that ran; ``notes`` says why earlier choices were skipped and how the transcript was
    checked; ``recognition`` is what the whisper backend heard in this call (or None)."""

    name = "auto"
    languages = ("en", "zh", "fr", "any")  # fr: the espeak backend alone (a transcript is needed)
    needs_transcript = False

    def __init__(self, **opts) -> None:
        _check_opts(opts)
        self.opts = opts
        self.used: str | None = None
        self.notes: list[str] = []
        self.recognition = None
        self._instances: dict[str, Aligner] = {}

    def candidates(self, transcript: str | None, lang: str) -> list[str]:
        """Backend names to try, best first, for this input."""
        self.notes = []
        names = []
        for name, cls in BACKENDS.items():
            if (lang == "any") != ("any" in cls.languages):
                continue  # --lang any goes to phone recognition alone; en / zh never do
            reason = cls.unavailable_reason(**_opts_for(cls, self.opts))
            if reason:
                self.notes.append(f"{name}: {reason}")
            elif lang not in cls.languages:
                self.notes.append(f"{name}: no {lang} support")
            elif cls.needs_transcript and not transcript:
                self.notes.append(f"{name}: needs a transcript")
            else:
                names.append(name)
        return names

    def _backend(self, name: str) -> Aligner:
        if name not in self._instances:
            cls = BACKENDS[name]
            self._instances[name] = cls(**_opts_for(cls, self.opts))
        return self._instances[name]

    def _check_transcript(self, audio: np.ndarray, sample_rate: int, transcript: str, lang: str) -> None:
        """Check the transcript against what the whisper backend hears (AlignmentError if it does not fit)."""
        try:
            fit = self._backend("whisper").verify_transcript(audio, sample_rate, transcript, lang)
        except BackendUnavailable as e:
            self.notes.append(f"whisper: transcript not checked ({e})")
            return
        self.recognition = self._backend("whisper").recognition
        self.notes.append("whisper: transcript not checked (no words recognized)" if fit is None else
                          f"whisper: transcript checked ({len(fit.words) - len(fit.not_heard)} of "
                          f"{len(fit.words)} words heard)")

    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        self.used, self.recognition = None, None
        names = self.candidates(transcript, lang)
        checked = False
        for name in names:
            if (transcript and not checked and name in ("pocketsphinx", "espeak") and "whisper" in names
                    and self.opts.get("check_transcript", True)):
                self._check_transcript(audio, sample_rate, transcript, lang)
                checked = True
            try:
                track = self._backend(name)._align(audio, sample_rate, transcript, lang)
            except BackendUnavailable as e:
                self.notes.append(f"{name}: {e}")
                continue
            self.used = name
            if name == "whisper":
                self.recognition = self._backend(name).recognition
            return track
        raise BackendUnavailable(
            f"no aligner can handle this input ({'; '.join(self.notes)})",
            "give --transcript, or install the offline Whisper model (scripts/setup.sh; docs/phonemes.md)",
        )


def get_aligner(name: str = "auto", **opts) -> Aligner:
    """An aligner by name; options go to the backends that take them.

    Raises InputError for an unknown name or option, BackendUnavailable when the
    named backend cannot run here.
    """
    key = (name or "auto").strip().lower()
    if key == "auto":
        return AutoAligner(**opts)
    if key not in BACKENDS:
        raise InputError(f"unknown aligner {name!r}", f"choose one of: {', '.join(ALIGNER_NAMES)}")
    _check_opts(opts)
    cls = BACKENDS[key]
    reason = cls.unavailable_reason(**_opts_for(cls, opts))
    if reason:
        raise BackendUnavailable(f"the {key} aligner is unavailable: {reason}", "try --aligner auto")
    return cls(**_opts_for(cls, opts))


def available_aligners(**opts) -> list[str]:
    """Names of the backends that can run here with these options (best first)."""
    return [n for n, cls in BACKENDS.items() if cls.unavailable_reason(**_opts_for(cls, opts)) is None]


__all__ = [
    "ALIGNER_NAMES", "Aligner", "AutoAligner", "EspeakAligner", "PhoneLoopAligner", "PocketsphinxAligner",
    "WhisperAligner",
    "WhisperXAligner",
    "available_aligners", "get_aligner",
]
