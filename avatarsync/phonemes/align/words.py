"""Phones placed inside known word times.

Word times come from an alignment file (GRID ``.align``), from ASR (WhisperX) or from a forced
aligner. Two ways to fill the words with phones:

- ``phones_into_words``: the phones a forced aligner found inside each word, moved linearly from
  the aligner's word span onto the given one (every phone lies inside its word, and the gaps
  between words stay pauses, however short);
- ``espeak_into_words``: the word's phones as espeak-ng says them, each word's synthesized span
  anchored to its time (any language espeak speaks; words without a time are interpolated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...errors import AlignmentError
from ..timeline import RawPhone, assemble_track
from ..track import PhonemeTrack, WordSpan


@dataclass(frozen=True)
class AlignedWord:
    """A word as a forced aligner timed it, with its phones ``(ipa, start, end)``."""

    word: str
    start: float
    end: float
    phones: tuple[tuple[str, float, float], ...] = ()


def phones_into_words(words: Sequence[WordSpan], aligned: Sequence[AlignedWord], duration: float,
                      lang: str, source: str) -> PhonemeTrack:
    """The track whose word ``i`` spans ``words[i]`` and holds ``aligned[i]``'s phones, rescaled into it."""
    if len(words) != len(aligned) or any(w.word != a.word for w, a in zip(words, aligned)):
        raise AlignmentError(
            f"the aligned words ({' '.join(a.word for a in aligned)}) are not the timed words "
            f"({' '.join(w.word for w in words)})", "check that the transcript is the words of the alignment file")
    raw = []
    for g, (w, a) in enumerate(zip(words, aligned)):
        if not a.phones:
            raise AlignmentError(f"the aligner found no phones in {a.word!r}", "check the transcript")
        span = max(a.end - a.start, 1e-6)

        def place(t: float) -> float:
            return w.start + (min(max(t, a.start), a.end) - a.start) / span * (w.end - w.start)

        raw += [RawPhone(name, place(s), place(e), g) for name, s, e in a.phones]
    track, _ = assemble_track(raw, duration, lang, source, min_pause=0.0)  # the words' own gaps stay
    return track


def espeak_into_words(words: Sequence[tuple[str, float | None, float | None]], duration: float, lang: str,
                      source: str) -> PhonemeTrack:
    """Synthesize the words with espeak-ng and map each word's phones onto its (start, end);
    a word whose times are None is placed between its neighbours."""
    from ..espeak import synthesize_detailed
    from .retime import group_spans, retime

    tokens = [str(w).strip() for w, _, _ in words]
    if lang == "zh":
        from ..mandarin import syllables_by_token

        per_token = syllables_by_token(tokens)
        sylls = [s for ss in per_token for s in ss]
        if not sylls:
            raise AlignmentError("the words hold nothing to speak", "check the transcript")
        syn, labels, groups = synthesize_detailed(" ".join(sylls), "zh")
        owners = [i for i, ss in enumerate(per_token) for _ in ss]
    else:
        syn, labels, groups = synthesize_detailed(" ".join(tokens), "en")
        owners = list(range(len(tokens)))
    token_span: dict[int, tuple[float, float]] = {}
    for g, (s, e) in group_spans(syn, groups).items():
        if g < len(owners):
            t = owners[g]
            s0, e0 = token_span.get(t, (s, e))
            token_span[t] = (min(s0, s), max(e0, e))
    anchors = []
    for t, (s, e) in token_span.items():
        _, ws, we = words[t]
        if ws is None or we is None:
            continue
        anchors += [(s, float(ws)), (e, max(float(we), float(ws)))]
    if not anchors:
        raise AlignmentError("no word of the transcript has a time", "check the transcript")
    return retime(syn, groups, anchors, duration, lang, source, labels)
