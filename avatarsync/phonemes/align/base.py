"""The aligner interface: audio (+ optional transcript) -> timestamped PhonemeTrack."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ...errors import AlignmentError, LanguageError
from ..audio import check_audio
from ..lang import normalize_lang
from ..track import PhonemeTrack


class Aligner(ABC):
    """One alignment backend. Subclasses implement :meth:`_align` and :meth:`unavailable_reason`."""

    name: ClassVar[str] = "base"
    languages: ClassVar[tuple[str, ...]] = ("en", "zh")
    needs_transcript: ClassVar[bool] = True

    @classmethod
    def unavailable_reason(cls, **opts) -> str | None:
        """Why this backend cannot run here (None when it can)."""
        return None

    def align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        """Timestamped units for ``audio``; ``track.source`` names the backend.

        Raises AudioError (bad audio), LanguageError, AlignmentError (missing or
        mismatching transcript), BackendUnavailable (backend or model missing).
        """
        audio, transcript, lang = self.checked(audio, sample_rate, transcript, lang)
        track = self._align(audio, int(sample_rate), transcript, lang)
        track.validate()
        return track

    def checked(self, audio: np.ndarray, sample_rate: int, transcript: str | None,
                lang: str) -> tuple[np.ndarray, str | None, str]:
        """The input as backends take it (mono float32 audio, stripped transcript, normalised language),
        or the error that names what is wrong with it."""
        lang = "any" if (lang or "").strip().lower() == "any" else normalize_lang(lang)
        if lang not in self.languages:
            raise LanguageError(
                f"the {self.name} aligner does not support language {lang!r}",
                f"it supports {', '.join(self.languages)}; try --aligner auto"
                + (" (--lang any: phone recognition for any language)" if lang == "any" else ""),
            )
        audio = check_audio(audio, sample_rate)
        transcript = (transcript or "").strip() or None
        if self.needs_transcript and transcript is None:
            raise AlignmentError(
                f"the {self.name} aligner needs a transcript of the audio",
                "pass --transcript \"...\", or use --aligner whisperx with local models",
            )
        return audio, transcript, lang

    @abstractmethod
    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        """Backend work on validated input."""
