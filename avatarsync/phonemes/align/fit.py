"""Does a transcript fit the words a recognizer heard? (and the word-level scores of the ASR bench)

Whisper base mishears some words of unusual sentences (GRID's "bin blue" comes out as "been blew"),
so words are compared by sound, not spelling: every word becomes a short sequence of phone keys
(English: espeak-ng's phones, vowels reduced to their lip shape, so "bin" ~ "been", "blue" = "blew";
Mandarin: the initial and final of each character's pinyin, tones dropped, so homophones match),
the two key sequences are aligned by edit distance, and a word counts as *heard* when more than
half of its keys are matched in that alignment. A transcript does not fit when fewer than
``MIN_HEARD`` of its words were heard, or when fewer than ``MIN_COVERED`` of the recognized
words are in it and at least ``MIN_EXTRA`` are not (the transcript leaves out speech).
The aligner refuses a transcript only when it also fails a second recognition that is given
the transcript as Whisper's prompt (``asr_align``); the bench and the bounds are in
docs/phonemes.md, "Offline ASR".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from ...errors import AlignmentError
from .sphinx import transcript_words

WORD_HEARD = 0.5  # a word counts as heard when more than this share of its phone keys is matched
MIN_HEARD = 0.5  # share of the transcript's words that must be heard
MIN_COVERED = 0.4  # share of the recognized words that must be in the transcript ...
MIN_EXTRA = 3  # ... once at least this many recognized words are outside it

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def english_words(text: str) -> list[str]:
    """Lower-case words as pocketsphinx takes them, with single digits (and digit strings with a leading
    zero) spelled out and letters split from digits (Whisper's ``"L7."`` -> ``["l", "seven"]``); other
    numbers stay digits (pocketsphinx takes espeak-ng's reading of them)."""
    t = unicodedata.normalize("NFKD", text.lower().replace("’", "'").replace("-", " "))
    t = "".join(c for c in t if not unicodedata.combining(c))  # "blüber" -> "bluber"
    t = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", t)
    out: list[str] = []
    for w in transcript_words(t):
        if w.isdigit() and (len(w) == 1 or w[0] == "0"):  # "7", and codes such as "04", digit by digit
            out += [_DIGIT_WORDS[int(c)] for c in w]
        else:
            out.append(w)
    return out


def edit_alignment(a: Sequence, b: Sequence) -> list[tuple[int | None, int | None]]:
    """A minimum edit-distance alignment of ``a`` and ``b``: pairs (i, j), (i, None) deletions,
    (None, j) insertions, in order."""
    n, m = len(a), len(b)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    out: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            out.append((i - 1, None))
            i -= 1
        else:
            out.append((None, j - 1))
            j -= 1
    return out[::-1]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions between two word lists (WER numerator)."""
    return sum(1 for i, j in edit_alignment(reference, hypothesis)
               if i is None or j is None or reference[i] != hypothesis[j])


@lru_cache(maxsize=4096)
def _english_keys(word: str) -> tuple[str, ...]:
    from ...errors import InputError
    from ..espeak import synthesize
    from ..pvm import default_pvm

    pvm = default_pvm()
    try:
        phones = [p.symbol for p in synthesize(word, "en").track.phones if p.symbol != "sil"]
    except InputError:
        return tuple(word)
    return tuple(("V" + pvm.viseme_of(p)) if pvm.is_vowel(p) else p.replace("ʰ", "").replace("ː", "")
                 for p in phones)


def mandarin_tokens(text: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """The spoken tokens of Mandarin text (each Han character, number or Latin word) and their keys:
    the initial and final of each syllable, tone dropped."""
    from ..mandarin import _TOKEN_RE, initial_final, syllables_by_token, to_simplified

    tokens = []
    for m in _TOKEN_RE.finditer(to_simplified(text)):
        if m.lastgroup == "han":
            tokens.extend(m.group())
        elif m.lastgroup in ("num", "latin"):
            tokens.append(m.group())
    keys = []
    for sylls in syllables_by_token(tokens):
        k: list[str] = []
        for s in sylls:
            ini, fin = initial_final(s)
            k += ([f"i:{ini}"] if ini else []) + [f"f:{fin}"]
        keys.append(tuple(k))
    return tokens, keys


def word_keys(words: Sequence[str], lang: str) -> list[tuple[str, ...]]:
    """Phone keys of each word (English words as :func:`english_words` gives them)."""
    return [_english_keys(w) for w in words] if lang == "en" else mandarin_tokens("".join(words))[1]


@dataclass
class Fit:
    """How transcript words and recognized words match: per word, the share of its keys matched."""

    words: list[str]
    heard: list[float]
    recognized: list[str]
    covered: list[float]

    @property
    def heard_share(self) -> float:
        return sum(h > WORD_HEARD for h in self.heard) / max(len(self.words), 1)

    @property
    def covered_share(self) -> float:
        return sum(c > WORD_HEARD for c in self.covered) / max(len(self.recognized), 1)

    @property
    def not_heard(self) -> list[str]:
        return [w for w, h in zip(self.words, self.heard) if h <= WORD_HEARD]

    @property
    def extra(self) -> list[str]:
        return [w for w, c in zip(self.recognized, self.covered) if c <= WORD_HEARD]

    @property
    def fits(self) -> bool:
        if self.heard_share < MIN_HEARD:
            return False
        return not (len(self.extra) >= MIN_EXTRA and self.covered_share < MIN_COVERED)


def tokens_of(text: str, lang: str) -> list[str]:
    """The words (en) or characters / numbers / Latin words (zh) of a text."""
    return english_words(text) if lang == "en" else mandarin_tokens(text)[0]


def matched_keys(a_keys: Sequence[Sequence[str]], b_keys: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """(word of a, word of b) for every phone key matched when the two key sequences are aligned."""
    a = [(k, i) for i, ks in enumerate(a_keys) for k in ks]
    b = [(k, j) for j, ks in enumerate(b_keys) for k in ks]
    return [(a[i][1], b[j][1]) for i, j in edit_alignment([k for k, _ in a], [k for k, _ in b])
            if i is not None and j is not None and a[i][0] == b[j][0]]


def transcript_fit(transcript: str, recognized: str, lang: str) -> Fit:
    """Match the transcript's words against the recognized text's words by sound."""
    words, heard_words = tokens_of(transcript, lang), tokens_of(recognized, lang)
    a_keys, b_keys = word_keys(words, lang), word_keys(heard_words, lang)
    hit_a, hit_b = [0] * len(words), [0] * len(heard_words)
    for i, j in matched_keys(a_keys, b_keys):
        hit_a[i] += 1
        hit_b[j] += 1
    heard = [h / len(k) if k else 1.0 for h, k in zip(hit_a, a_keys)]
    covered = [h / len(k) if k else 1.0 for h, k in zip(hit_b, b_keys)]
    return Fit(words, heard, heard_words, covered)


def _quoted(words: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(w) for w in words[:limit])
    return shown + (f" and {len(words) - limit} more" if len(words) > limit else "")


def fit_error(fit: Fit, lang: str) -> AlignmentError:
    """The error for a transcript that does not fit: it names the words not heard (or those it lacks)."""
    sep = "" if lang == "zh" else " "
    heard = sep.join(fit.recognized) or "nothing"
    if fit.heard_share < MIN_HEARD:
        return AlignmentError(
            f"the transcript does not match the audio: {len(fit.not_heard)} of {len(fit.words)} words were not "
            f"heard ({_quoted(fit.not_heard)}); the speech recognizer heard {heard!r}",
            "check that the transcript is what is spoken, or leave --transcript out to use the recognized words")
    return AlignmentError(
        f"the transcript does not match the audio: it lacks {len(fit.extra)} of the {len(fit.recognized)} words "
        f"heard ({_quoted(fit.extra)}); the speech recognizer heard {heard!r}",
        "give the whole transcript, or leave --transcript out to use the recognized words")


def check_fit(transcript: str, recognized: str, lang: str) -> Fit:
    """The fit, or an AlignmentError naming the transcript words that were not heard (or the heard words
    the transcript lacks)."""
    fit = transcript_fit(transcript, recognized, lang)
    if not fit.words:
        raise AlignmentError(f"the transcript {transcript!r} has no words", "give the words spoken in the audio")
    if not fit.fits:
        raise fit_error(fit, lang)
    return fit
