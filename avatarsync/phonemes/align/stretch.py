"""The espeak aligner: a crude offline fallback for any language espeak speaks (Mandarin included).

It synthesizes the transcript with espeak-ng and stretches the synthesized
phone timings linearly onto the speech region of the audio (first to last
frame with speech energy). Pauses inside the utterance keep their relative
place, so timings are only as good as the speaker's rhythm resembles
espeak's: use it when nothing better is installed. A transcript whose
synthesized length differs from the audio's speech by more than the
allowed ratio is rejected as not matching.
"""

from __future__ import annotations

import numpy as np

from ...errors import AlignmentError
from ..audio import speech_region
from ..espeak import synthesize_detailed
from ..track import SILENCE, PhonemeTrack
from .base import Aligner
from .retime import retime

RATIO_RANGE = (0.4, 2.5)  # audio speech length / synthesized speech length


class EspeakAligner(Aligner):
    """Synthesize the transcript and stretch its timings onto the audio's speech region."""

    name = "espeak"
    languages = ("en", "zh", "fr")
    needs_transcript = True

    def __init__(self, voice: str | None = None, rate: int = 160, pitch: int = 50) -> None:
        self.voice, self.rate, self.pitch = voice, rate, pitch

    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        syn, labels, groups = synthesize_detailed(transcript or "", lang, self.voice, self.rate, self.pitch)
        speech = [p for p in syn.track.phones if p.symbol != SILENCE]
        s_start, s_end = speech[0].start, speech[-1].end
        a_start, a_end = speech_region(audio, sample_rate)
        ratio = (a_end - a_start) / max(s_end - s_start, 1e-6)
        if not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1]:
            raise AlignmentError(
                f"the transcript does not match the audio: it takes {s_end - s_start:.2f} s to say "
                f"but the audio holds {a_end - a_start:.2f} s of speech",
                "check that the transcript is exactly what is spoken",
            )
        duration = len(audio) / sample_rate
        return retime(syn, groups, [(s_start, a_start), (s_end, a_end)], duration, lang, self.name, labels)
