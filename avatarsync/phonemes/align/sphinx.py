"""Offline English forced alignment with pocketsphinx 5 (its bundled en-US model and CMUdict).

Audio is resampled to 16 kHz and padded with 0.3 s of silence; the transcript
is aligned in two passes (words, then phones). Words missing from CMUdict
(names, numbers) get a pronunciation from espeak-ng, mapped to ARPAbet.

Digital silence (exact zeros, as in synthesized speech and the padding) breaks
the search, so a fixed-seed noise floor at about -80 dBFS is added.

A transcript that does not match the audio is detected when the word pass
cannot reach the end of the transcript (too many or wrong words), when a
phone would have to stretch over 0.8 s (too few words: untranscribed speech
absorbed), when more than 0.5 s of speech-level audio (20 dB over the noise
floor) falls in pauses (a word missing), or when the alignment's acoustic score (pocketsphinx normalises
each frame by its best senone) averages below ``MIN_FRAME_SCORE`` per 10 ms
frame. Correct transcripts score -11 to -19 on real GRID speech and -22 to -28
on espeak-ng speech; the bound sits below both, so it catches only gross
mismatches (another GRID sentence, which shares half its words, mostly passes):
telling a wrong transcript from a right one takes recognition (ASR).
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ...errors import AlignmentError, BackendUnavailable
from ..audio import resample
from ..timeline import RawPhone, assemble_track
from ..track import PhonemeTrack
from .arpabet import ARPABET_TO_IPA, ipa_to_arpabet
from .base import Aligner
from .words import AlignedWord

SAMPLE_RATE = 16000
PAD = 0.3  # seconds of silence around the audio
FRAME = 0.01  # pocketsphinx frame shift
NOISE_STD = 1e-4
MAX_PHONE = 0.8  # seconds: a longer aligned phone means untranscribed speech
MAX_LOUD_PAUSE = 0.5  # seconds of speech-level audio allowed inside pauses (a word missing)
MIN_FRAME_SCORE = -30.0  # acoustic score per 10 ms frame of the forced alignment; below: no match
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def transcript_words(text: str) -> list[str]:
    """Lower-case words as CMUdict spells them (punctuation dropped, hyphens split)."""
    return _WORD_RE.findall(text.lower().replace("’", "'"))


def decoder_pcm(audio: np.ndarray, sample_rate: int) -> bytes:
    """16 kHz 16-bit PCM for pocketsphinx: ``PAD`` s of silence each side and a faint fixed noise
    floor (its voice-activity and normalisation misbehave on digital silence)."""
    x = resample(audio, sample_rate, SAMPLE_RATE)
    pad = np.zeros(int(PAD * SAMPLE_RATE), np.float32)
    y = np.concatenate([pad, x, pad])
    y += np.random.default_rng(0).normal(0.0, NOISE_STD, len(y)).astype(np.float32)
    return (np.clip(y, -1, 1) * 32767).astype(np.int16).tobytes()


class PocketsphinxAligner(Aligner):
    """English forced alignment against a known transcript (needs ``transcript``)."""

    name = "pocketsphinx"
    languages = ("en",)
    needs_transcript = True

    def __init__(self, check_match: bool = True) -> None:
        self.check_match = check_match
        self._decoder = None
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls, **opts) -> str | None:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            return "pocketsphinx is not installed (pip install pocketsphinx)"
        return None

    def _decoders(self):
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as e:
                raise BackendUnavailable("pocketsphinx is not installed", "pip install pocketsphinx") from e
            # bestpath=False: the lattice best-path pass can drop the end of a forced alignment;
            # wide beams: default pruning loses the only path on fast speech
            self._decoder = Decoder(
                samprate=SAMPLE_RATE, lm=None, bestpath=False, beam=1e-80, pbeam=1e-80, wbeam=1e-60,
                loglevel="FATAL",
            )
        return self._decoder

    def _ensure_words(self, decoder, words: list[str]) -> None:
        from ..espeak import synthesize

        for w in dict.fromkeys(words):
            if decoder.lookup_word(w) is not None:
                continue
            phones = [p.symbol for p in synthesize(w, "en").track.phones if p.symbol != "sil"]
            arpa = ipa_to_arpabet(phones)
            if not arpa:
                raise AlignmentError(f"cannot find a pronunciation for {w!r}", "spell the word out in the transcript")
            decoder.add_word(w, " ".join(arpa), True)

    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        return self._align_words(audio, sample_rate, transcript)[0]

    def align_words(self, audio: np.ndarray, sample_rate: int, transcript: str | None,
                    lang: str = "en") -> tuple[PhonemeTrack, list[AlignedWord]]:
        """Like ``align``, also returning each transcript word's span and its phones."""
        audio, transcript, _ = self.checked(audio, sample_rate, transcript, lang)
        track, words = self._align_words(audio, int(sample_rate), transcript)
        track.validate()
        return track, words

    def _align_words(self, audio: np.ndarray, sample_rate: int,
                     transcript: str | None) -> tuple[PhonemeTrack, list[AlignedWord]]:
        words = transcript_words(transcript or "")
        if not words:
            raise AlignmentError(f"the transcript {transcript!r} has no words", "give the words spoken in the audio")
        duration = len(audio) / sample_rate
        pcm = decoder_pcm(audio, sample_rate)
        with self._lock:
            d = self._decoders()
            self._ensure_words(d, words)
            try:
                d.set_align_text(" ".join(words))
                d.start_utt()
                d.process_raw(pcm, full_utt=True)
                d.end_utt()
            except RuntimeError as e:
                raise AlignmentError(f"pocketsphinx could not align the transcript: {e}", "check the transcript") from e
            hyp = d.hyp()
            got = [_base_word(w) for w in hyp.hypstr.split()] if hyp is not None else []
            if got != words:
                raise AlignmentError(
                    "the transcript does not match the audio "
                    f"(alignment stopped after {len(got)} of {len(words)} words)",
                    "check that the transcript is exactly what is spoken",
                )
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()  # keep alive while reading phones
            raw, spans, score = [], [], 0.0
            for word in alignment:
                name = _base_word(word.name)
                spoken = name not in _PAUSE_WORDS
                phones = []
                for ph in word:
                    score += ph.score
                    start = ph.start * FRAME - PAD
                    end = (ph.start + ph.duration) * FRAME - PAD
                    ipa = "" if ph.name == "SIL" else ARPABET_TO_IPA.get(ph.name, ph.name.lower())
                    raw.append(RawPhone(ipa, start, end, len(spans) if ipa and spoken else -1))
                    if ipa and spoken:
                        phones.append((ipa, start, end))
                if spoken:
                    spans.append(AlignedWord(name, (word.start * FRAME - PAD), (word.start + word.duration) * FRAME - PAD,
                                             tuple(phones)))
            del alignment
        track, _ = assemble_track(raw, duration, "en", self.name)
        if self.check_match:
            check_plausible(track, audio, sample_rate)
            check_score(score, len(pcm) // 2 / (FRAME * SAMPLE_RATE))
        return track, spans


_PAUSE_WORDS = ("<s>", "</s>", "<sil>", "sil", "[noise]")


def _base_word(name: str) -> str:
    """A dictionary word without its alternative-pronunciation suffix (``with(2)`` -> ``with``)."""
    return re.sub(r"\(\d+\)$", "", name)


def check_plausible(track: PhonemeTrack, audio: np.ndarray, sample_rate: int) -> None:
    """Raise AlignmentError when a phone had to stretch over untranscribed speech, or speech fell in pauses."""
    long = [u for u in track.phones if u.symbol != "sil" and u.duration > MAX_PHONE]
    if long:
        u = long[0]
        raise AlignmentError(
            f"the transcript does not match the audio: phone {u.symbol!r} would last {u.duration:.2f} s "
            f"at {u.start:.2f} s (speech the transcript does not cover?)",
            "check that the transcript has every word spoken",
        )
    loud = loud_mask(audio, sample_rate)
    in_pause = sum(float(loud[int(u.start / 0.01):int(u.end / 0.01)].sum()) * 0.01
                   for u in track.phones if u.symbol == "sil")
    if in_pause > MAX_LOUD_PAUSE:
        raise AlignmentError(
            f"the transcript does not match the audio: {in_pause:.2f} s of speech fall outside the aligned words",
            "check that the transcript has every word spoken",
        )


def loud_mask(audio: np.ndarray, sample_rate: int, below_peak: float = 25.0, above_floor: float = 20.0) -> np.ndarray:
    """Per 10 ms hop: True where the 20 ms RMS is within ``below_peak`` dB of the loudest frame and
    ``above_floor`` dB over the recording's noise floor (its quietest tenth): speech, not room noise or breath."""
    hop, win = int(0.01 * sample_rate), int(0.02 * sample_rate)
    n = max(0, (len(audio) - win) // hop + 1)
    if n == 0:
        return np.zeros(0, bool)
    c = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    starts = np.arange(n) * hop
    db = 10 * np.log10((c[starts + win] - c[starts]) / win + 1e-12)
    return db >= max(db.max() - below_peak, np.percentile(db, 10) + above_floor)


def check_score(align_score: float, frames: float) -> None:
    """Raise AlignmentError when the forced alignment fits the audio too badly (wrong words)."""
    per_frame = align_score / max(frames, 1.0)
    if per_frame < MIN_FRAME_SCORE:
        raise AlignmentError(
            f"the transcript does not match the audio: its forced alignment scores {per_frame:.1f} per 10 ms "
            f"frame, below {MIN_FRAME_SCORE:.0f} (wrong or missing words)",
            "check that the transcript is exactly what is spoken",
        )
