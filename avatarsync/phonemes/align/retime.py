"""Move a synthesized utterance's phones onto real audio through time anchors.

The espeak backend anchors the synthesized speech to the audio's speech
region; the WhisperX backend anchors every word (or Mandarin character) to
the times WhisperX found. Between anchors time is mapped linearly; outside
them it runs at synthesis speed.
"""

from __future__ import annotations

import numpy as np

from ..espeak import Synthesis
from ..timeline import RawPhone, assemble_track
from ..track import SILENCE, PhonemeTrack


def group_spans(syn: Synthesis, groups: list[int]) -> dict[int, tuple[float, float]]:
    """Synthesized (start, end) of every word/syllable group."""
    spans: dict[int, tuple[float, float]] = {}
    for p, g in zip(syn.track.phones, groups):
        if g < 0 or p.symbol == SILENCE:
            continue
        s, e = spans.get(g, (p.start, p.end))
        spans[g] = (min(s, p.start), max(e, p.end))
    return spans


def _mapper(anchors: list[tuple[float, float]]):
    pts = sorted(anchors)
    src = [pts[0][0]]
    dst = [pts[0][1]]
    for s, d in pts[1:]:
        if s > src[-1] + 1e-9:
            src.append(s)
            dst.append(max(d, dst[-1]))
    src_a, dst_a = np.asarray(src), np.asarray(dst)

    def f(t: float) -> float:
        if t <= src_a[0]:
            return float(dst_a[0] - (src_a[0] - t))
        if t >= src_a[-1]:
            return float(dst_a[-1] + (t - src_a[-1]))
        return float(np.interp(t, src_a, dst_a))

    return f


def retime(
    syn: Synthesis,
    groups: list[int],
    anchors: list[tuple[float, float]],
    duration: float,
    lang: str,
    source: str,
    labels: list[str] | None = None,
) -> PhonemeTrack:
    """Map the synthesized phones through ``anchors`` ((synth_time, audio_time) pairs)
    onto an audio of ``duration`` seconds; pauses are re-derived from the gaps."""
    if not anchors:
        raise ValueError("retime needs at least one anchor")
    f = _mapper(anchors)
    raw = [
        RawPhone(p.symbol, f(p.start), f(p.end), g)
        for p, g in zip(syn.track.phones, groups)
        if p.symbol != SILENCE and g >= 0
    ]
    track, _ = assemble_track(raw, duration, lang, source, labels if lang == "zh" else None)
    return track
