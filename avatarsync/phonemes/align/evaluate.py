"""Compare an aligned track with reference timings (e.g. espeak's own) phone by phone.

The two phone sequences may differ (espeak's pronunciation vs CMUdict's), so
both are spelled in ARPAbet and matched by edit distance; only phones whose
symbols agree (up to a few near-identical pairs: reduced vowels, t/d flaps,
the cot/caught merger, s/z) count, and for each the start times are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..track import SILENCE, PhonemeTrack
from .arpabet import IPA_TO_ARPABET

_EQUIV = [{"AH", "IH", "ER"}, {"T", "D"}, {"AA", "AO"}, {"S", "Z"}]


def _same(a: str, b: str) -> bool:
    return a == b or any(a in g and b in g for g in _EQUIV)


def _tokens(track: PhonemeTrack) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    for u in track.phones:
        if u.symbol == SILENCE:
            continue
        arpa = IPA_TO_ARPABET.get(u.symbol, (u.symbol,))
        out.extend((tok, u.start if k == 0 else None) for k, tok in enumerate(arpa))
    return out


def matched_starts(reference: PhonemeTrack, aligned: PhonemeTrack) -> list[tuple[float, float]]:
    """(reference start, aligned start) for every phone matched between the two tracks."""
    ref, hyp = _tokens(reference), _tokens(aligned)
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (0 if _same(ref[i - 1][0], hyp[j - 1][0]) else 1)
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        same = _same(ref[i - 1][0], hyp[j - 1][0])
        if cost[i, j] == cost[i - 1, j - 1] + (0 if same else 1):
            if same and ref[i - 1][1] is not None and hyp[j - 1][1] is not None:
                pairs.append((ref[i - 1][1], hyp[j - 1][1]))
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


@dataclass
class StartErrors:
    """Start-time errors (seconds) of the matched phones."""

    errors: np.ndarray
    n_reference: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors)) if len(self.errors) else float("nan")

    @property
    def matched(self) -> float:
        """Fraction of reference phones that were matched."""
        return len(self.errors) / max(1, self.n_reference)


def start_errors(reference: PhonemeTrack, aligned: PhonemeTrack) -> StartErrors:
    """Absolute start-time errors of the phones matched between ``reference`` and ``aligned``."""
    pairs = matched_starts(reference, aligned)
    errs = np.array([abs(a - b) for a, b in pairs], dtype=np.float64)
    n_ref = sum(1 for u in reference.phones if u.symbol != SILENCE)
    return StartErrors(errs, n_ref)
