"""The ``whisper`` aligner: offline ASR (faster-whisper, :mod:`.asr`) turned into a timed phoneme track.

Without a transcript the recognizer's words are the transcript (the language is detected; en and zh
are supported, anything else is a LanguageError):

- English: the recognized words are force-aligned with pocketsphinx (:class:`PocketsphinxAligner`),
  which times the words and the phones inside them. Should pocketsphinx refuse them (a misheard
  word it cannot fit), Whisper's own word times are kept and pocketsphinx's (else espeak-ng's)
  phones are placed inside each word (:mod:`.words`).
- Mandarin: Whisper writes Traditional characters; they become Simplified (OpenCC t2s), then
  pinyin (pypinyin, read in context); each character takes an even share of its Whisper word's
  time span and its initial and final (nasal coda as its own phone) are timed inside it.

With a transcript the recognizer runs in the given language and the transcript is checked against
what it heard (:mod:`.fit`: a transcript that does not fit is an AlignmentError naming the words);
then English is force-aligned with pocketsphinx, and Mandarin characters take the times of the
recognized characters they match by sound (the others are spread between their neighbours).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import AlignmentError, LanguageError
from ..audio import speech_region
from ..timeline import RawPhone, assemble_track
from ..track import PhonemeTrack, WordSpan
from .asr import Recognition, WhisperRecognizer
from .base import Aligner
from .fit import Fit, english_words, fit_error, matched_keys, transcript_fit, word_keys

LANG_NAMES = {"en": "English", "zh": "Mandarin Chinese"}
# the share of a syllable's time its initial, vowel and nasal coda take
_PART_WEIGHTS = (0.3, 0.55, 0.15)


class WhisperAligner(Aligner):
    """Offline ASR + alignment: any audio in English or Mandarin, with or without a transcript.

    ``asr_model_dir``: a CTranslate2 Whisper folder (default ``$AVATARSYNC_ASR_MODEL``, else the
    installed Whisper base). ``check_transcript``: refuse a transcript that does not fit what was
    heard. ``recognizer``: anything with ``recognize(audio, sample_rate, language)`` -> Recognition
    (tests pass a fake). After a call, ``recognition`` holds what was heard, ``words`` the final
    word spans, ``fit`` the transcript check and ``method`` how the phones were timed.
    """

    name = "whisper"
    languages = ("en", "zh")
    needs_transcript = False

    def __init__(self, asr_model_dir: str | None = None, device: str = "cpu", beam_size: int = 5,
                 check_transcript: bool = True, recognizer=None) -> None:
        self.recognizer = recognizer or WhisperRecognizer(asr_model_dir, device=device, beam_size=beam_size)
        self.check_transcript = check_transcript
        self._sphinx: dict[bool, object] = {}
        self.recognition: Recognition | None = None
        self.words: list[WordSpan] = []
        self.fit: Fit | None = None
        self.method = ""

    @classmethod
    def unavailable_reason(cls, asr_model_dir: str | None = None, recognizer=None, **_) -> str | None:
        if recognizer is not None:
            return None
        return WhisperRecognizer.unavailable_reason(asr_model_dir)

    def sphinx(self, check_match: bool):
        if check_match not in self._sphinx:
            from .sphinx import PocketsphinxAligner

            self._sphinx[check_match] = PocketsphinxAligner(check_match=check_match)
        return self._sphinx[check_match]

    # -- recognition and the transcript check ----------------------------------------------------
    def recognize(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Recognition:
        self.recognition = self.recognizer.recognize(audio, sample_rate, language)
        return self.recognition

    def verify_transcript(self, audio: np.ndarray, sample_rate: int, transcript: str, lang: str) -> Fit | None:
        """Recognize the audio in ``lang`` and check the transcript against it (AlignmentError when it
        does not fit); None when nothing was recognized to check against."""
        audio, transcript, lang = self.checked(audio, sample_rate, transcript, lang)
        return self._verify(audio, int(sample_rate), transcript, lang, self.recognize(audio, int(sample_rate), lang))

    def _verify(self, audio: np.ndarray, sample_rate: int, transcript: str, lang: str,
                rec: Recognition) -> Fit | None:
        """The fit of the transcript to ``rec``; one that does not fit gets a second recognition with the
        transcript as Whisper's prompt (Whisper base mishears unusual sentences, and a correct transcript
        must not be refused), and is refused (AlignmentError naming the words) only if that fails too."""
        first = transcript_fit(transcript, rec.text, lang)
        if not first.words:
            raise AlignmentError(f"the transcript {transcript!r} has no words", "give the words spoken in the audio")
        if first.fits:
            self.fit = first
            return first
        again = self.recognizer.recognize(audio, sample_rate, lang, prompt=transcript)
        second = transcript_fit(transcript, again.text, lang)
        if second.fits:
            self.recognition, self.fit = again, second
            return second
        if not rec.words and not again.words:
            self.fit = None
            return None  # nothing heard to check against: pocketsphinx's own checks still apply
        raise fit_error(max((first, second), key=lambda f: f.heard_share), lang)

    # -- the backend -----------------------------------------------------------------------------
    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        self.fit, self.words, self.method = None, [], ""
        duration = len(audio) / sample_rate
        if transcript is not None:
            rec = self.recognize(audio, sample_rate, lang)
            if self.check_transcript:
                self._verify(audio, sample_rate, transcript, lang, rec)
                rec = self.recognition
            if lang == "en":
                track, aligned = self.sphinx(True).align_words(audio, sample_rate, transcript)
                self.words = [_span(a.word, a.start, a.end, duration) for a in aligned]
                self.method = "pocketsphinx forced alignment of the transcript"
                track.source = self.name
                return track
            return self._mandarin_transcript(audio, sample_rate, transcript, rec)
        rec = self.recognize(audio, sample_rate, None)
        detected = rec.language.lower()
        if detected not in self.languages:
            raise LanguageError(
                f"the speech was recognized as language {detected!r} (probability {rec.language_probability:.2f}); "
                f"the whisper aligner supports {', '.join(f'{c} ({n})' for c, n in LANG_NAMES.items())}",
                "give English or Mandarin speech, give --transcript and --lang to align a known text, or use "
                "--lang any (phone recognition: the mouth follows the sounds of any language)")
        if not rec.words:
            raise AlignmentError("the speech recognizer heard no words in the audio",
                                 "check that the audio holds speech, or give --transcript")
        if detected == "en":
            return self._english(audio, sample_rate, rec)
        return self._mandarin(rec, duration)

    def _english(self, audio: np.ndarray, sample_rate: int, rec: Recognition) -> PhonemeTrack:
        duration = len(audio) / sample_rate
        spans = english_spans(rec)
        if not spans:
            raise AlignmentError(f"the speech recognizer heard no English words (it heard {rec.text!r})",
                                 "check the audio, or give --transcript")
        text = " ".join(s.word for s in spans)
        try:
            track, aligned = self.sphinx(True).align_words(audio, sample_rate, text)
            self.words = [_span(a.word, a.start, a.end, duration) for a in aligned]
            self.method = "pocketsphinx forced alignment of the recognized words"
        except AlignmentError:
            from .words import espeak_into_words, phones_into_words

            self.words = spans
            try:
                _, aligned = self.sphinx(False).align_words(audio, sample_rate, text)
                track = phones_into_words(spans, aligned, duration, "en", self.name)
                self.method = "Whisper's word times, pocketsphinx's phones inside them"
            except AlignmentError:
                track = espeak_into_words([(s.word, s.start, s.end) for s in spans], duration, "en", self.name)
                self.method = "Whisper's word times, espeak-ng's phones inside them"
        track.source = self.name
        return track

    def _mandarin(self, rec: Recognition, duration: float) -> PhonemeTrack:
        spans = mandarin_spans(rec)
        if not spans:
            raise AlignmentError(f"the speech recognizer heard no Mandarin characters (it heard {rec.text!r})",
                                 "check the audio, or give --transcript")
        self.words = spans
        self.method = "Whisper's character times, pypinyin initials and finals inside them"
        return mandarin_track(spans, duration, self.name)

    def _mandarin_transcript(self, audio: np.ndarray, sample_rate: int, transcript: str,
                             rec: Recognition) -> PhonemeTrack:
        from .fit import mandarin_tokens

        duration = len(audio) / sample_rate
        tokens, keys = mandarin_tokens(transcript)
        if not tokens:
            raise AlignmentError(f"the transcript {transcript!r} has nothing to speak", "give Mandarin text")
        heard = mandarin_spans(rec)
        times = transfer_times(keys, word_keys([s.word for s in heard], "zh"), heard,
                               speech_region(audio, sample_rate))
        self.words = [_span(t, s, e, duration) for t, (s, e) in zip(tokens, times)]
        self.method = "the transcript's characters at the times of the recognized characters they match"
        return mandarin_track(self.words, duration, self.name)


# -- words -> spans -> phones ---------------------------------------------------------------------
def _span(word: str, start: float, end: float, duration: float) -> WordSpan:
    s = min(max(float(start), 0.0), duration)
    return WordSpan(word, s, min(max(float(end), s), duration))


def _split(start: float, end: float, n: int) -> list[tuple[float, float]]:
    step = (end - start) / n
    return [(start + k * step, start + (k + 1) * step) for k in range(n)]


def english_spans(rec: Recognition) -> list[WordSpan]:
    """The recognized words as pocketsphinx spells them (``"L7."`` -> ``l``, ``seven``), each with an
    even share of its Whisper word's span."""
    out = []
    for w in rec.words:
        parts = english_words(w.text)
        out += [_span(p, s, e, rec.duration) for p, (s, e) in zip(parts, _split(w.start, w.end, max(len(parts), 1)))]
    return out


def mandarin_spans(rec: Recognition) -> list[WordSpan]:
    """The recognized Mandarin tokens (Simplified characters, numbers, Latin words), each with an even
    share of its Whisper word's span (Whisper times Chinese by token, often several characters)."""
    from ..mandarin import to_simplified
    from .fit import mandarin_tokens

    texts = [w.text for w in rec.words]
    whole = to_simplified("".join(texts))  # in context: phrase conversions that span Whisper's tokens
    if len(whole) == sum(map(len, texts)):
        cuts = np.cumsum([0] + [len(t) for t in texts])
        texts = [whole[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    out = []
    for w, text in zip(rec.words, texts):
        toks = mandarin_tokens(text)[0]
        out += [_span(t, s, e, rec.duration) for t, (s, e) in zip(toks, _split(w.start, w.end, max(len(toks), 1)))]
    return out


def transfer_times(keys: Sequence[Sequence[str]], heard_keys: Sequence[Sequence[str]], heard: Sequence[WordSpan],
                   region: tuple[float, float]) -> list[tuple[float, float]]:
    """Times for the transcript tokens with phone ``keys``: the span of the heard tokens they match by
    sound; unmatched tokens share the time between their matched neighbours (the speech ``region``
    bounds the ends, and holds everything when nothing matched)."""
    n = len(keys)
    got: list[tuple[float, float] | None] = [None] * n
    for i, j in matched_keys(keys, heard_keys):
        s, e = heard[j].start, heard[j].end
        got[i] = (s, e) if got[i] is None else (min(got[i][0], s), max(got[i][1], e))
    prev_end = region[0]
    for i in range(n):  # keep matched spans in order
        if got[i] is not None:
            s, e = max(got[i][0], prev_end), max(got[i][1], prev_end)
            got[i] = (s, e)
            prev_end = e
    out: list[tuple[float, float]] = []
    i = 0
    while i < n:
        if got[i] is not None:
            out.append(got[i])
            i += 1
            continue
        j = i
        while j < n and got[j] is None:
            j += 1
        start = out[-1][1] if out else min(region[0], got[j][0] if j < n else region[0])
        end = got[j][0] if j < n else max(region[1], start)
        out += _split(start, max(end, start), j - i)
        i = j
    return out


def mandarin_track(spans: Sequence[WordSpan], duration: float, source: str) -> PhonemeTrack:
    """Units = each token's pinyin syllables (an even share of its span each); phones = each syllable's
    initial, vowel and nasal coda, timed inside it by ``_PART_WEIGHTS``."""
    from ..mandarin import syllable_parts, syllables_by_token

    raw, labels = [], []
    for span, sylls in zip(spans, syllables_by_token([s.word for s in spans])):
        for syl, (s, e) in zip(sylls, _split(span.start, span.end, max(len(sylls), 1))):
            parts = syllable_parts(syl)
            total = sum(w for p, w in zip(parts, _PART_WEIGHTS) if p)
            t = s
            for p, w in zip(parts, _PART_WEIGHTS):
                if p:
                    t2 = t + (e - s) * w / total
                    raw.append(RawPhone(p, t, t2, len(labels)))
                    t = t2
            labels.append(syl)
    if not labels:
        raise AlignmentError("the recognized text holds nothing to speak", "check the audio, or give --transcript")
    track, _ = assemble_track(raw, duration, "zh", source, syllables=labels)
    return track
