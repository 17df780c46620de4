"""Long recordings: split at pauses, align each piece, join the tracks.

Recognition and alignment cost grows with the length of what they see at once (Whisper decodes
30 s windows, pocketsphinx keeps its whole search), so audio longer than ``LONG_AUDIO`` seconds
without a transcript is cut into pieces of at most ``MAX_PIECE`` seconds, each cut at the quietest
``PAUSE_WINDOW`` of its last stretch (a pause between words, not a word), aligned piece by piece
and joined: memory stays that of one piece, and the joined track covers the whole audio exactly.
A piece with no speech (silent, or no words heard) becomes one ``sil`` unit. With a transcript
the recording is aligned whole (forced alignment needs to know which words fall in which piece).
"""

from __future__ import annotations

import sys

import numpy as np

from ...errors import AlignmentError, AudioError
from ..track import SILENCE, PhonemeTrack, PhonemeUnit
from ..visemes import REST

LONG_AUDIO = 30.0  # seconds: longer audio without a transcript is split
MAX_PIECE = 20.0
MIN_PIECE = 8.0
PAUSE_WINDOW = 0.2


def frame_db(audio: np.ndarray, sample_rate: int, hop: float = 0.01, win: float = 0.03) -> np.ndarray:
    """RMS level (dB) of each ``win``-second window, every ``hop`` seconds."""
    h, w = max(1, int(hop * sample_rate)), max(1, int(win * sample_rate))
    n = max(1, (len(audio) - w) // h + 1)
    c = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    s = np.minimum(np.arange(n) * h, max(len(audio) - w, 0))
    return 10 * np.log10((c[np.minimum(s + w, len(audio))] - c[s]) / w + 1e-12)


def split_points(audio: np.ndarray, sample_rate: int, max_piece: float = MAX_PIECE,
                 min_piece: float = MIN_PIECE) -> list[int]:
    """Sample indices where the audio is cut (start 0 and the end included): each piece is at most
    ``max_piece`` seconds, cut in the quietest ``PAUSE_WINDOW`` between ``min_piece`` and ``max_piece``."""
    n = len(audio)
    if n <= max_piece * sample_rate:
        return [0, n]
    db = frame_db(audio, sample_rate)
    hop = int(0.01 * sample_rate)
    k = max(1, int(PAUSE_WINDOW / 0.01))
    smooth = np.convolve(db, np.ones(k) / k, mode="same")
    cuts, start = [0], 0
    while n - start > max_piece * sample_rate:
        lo, hi = (start + int(min_piece * sample_rate)) // hop, (start + int(max_piece * sample_rate)) // hop
        hi = min(hi, len(smooth) - 1)
        if hi <= lo:
            break
        best = lo + int(np.argmin(smooth[lo:hi]))
        cut = min(best * hop + int(0.015 * sample_rate), n)
        cuts.append(cut)
        start = cut
    cuts.append(n)
    return cuts


def join_tracks(pieces: list[PhonemeTrack], offsets: list[float], duration: float, lang: str,
                source: str) -> PhonemeTrack:
    """One track from piece tracks starting at ``offsets``; pauses meeting at a cut merge."""
    def join(level: str) -> list[PhonemeUnit]:
        out: list[PhonemeUnit] = []
        for tr, off in zip(pieces, offsets):
            for u in getattr(tr, level):
                s, e = u.start + off, min(u.end + off, duration)
                if out and s < out[-1].end:
                    s = out[-1].end
                if e <= s:
                    continue
                if out and u.symbol == SILENCE and out[-1].symbol == SILENCE:
                    out[-1] = PhonemeUnit(SILENCE, out[-1].start, e, REST)
                    continue
                if out and s > out[-1].end:  # a hole at a cut: the pause before it stretches
                    last = out[-1]
                    out[-1] = PhonemeUnit(last.symbol, last.start, s, last.viseme)
                out.append(PhonemeUnit(u.symbol, s, e, u.viseme))
        if out and out[-1].end < duration:
            last = out[-1]
            out[-1] = PhonemeUnit(last.symbol, last.start, duration, last.viseme)
        return out

    track = PhonemeTrack(units=join("units"), lang=lang, duration=duration, source=source, phones=join("phones"))
    track.validate()
    return track


def align_audio(aligner, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str,
                progress: bool = False, long_audio: float = LONG_AUDIO) -> PhonemeTrack:
    """``aligner.align``, splitting audio longer than ``long_audio`` seconds (without a transcript) at
    pauses; ``progress``: a bar on stderr, one step per piece. ``aligner.pieces`` holds the cut times."""
    from ..audio import check_audio

    audio = check_audio(audio, sample_rate)
    duration = len(audio) / sample_rate
    if transcript or duration <= long_audio:
        return aligner.align(audio, sample_rate, transcript, lang)
    from tqdm.auto import tqdm

    cuts = split_points(audio, sample_rate)
    pieces, offsets, langs, sources, empty = [], [], [], [], 0
    for a, b in tqdm(list(zip(cuts[:-1], cuts[1:])), desc="align", unit="piece", disable=not progress,
                     file=sys.stderr):
        piece_dur = (b - a) / sample_rate
        try:
            tr = aligner.align(audio[a:b], sample_rate, None, lang)
            langs.append(tr.lang)
            sources.append(tr.source)
        except (AudioError, AlignmentError):  # silence, or no words heard in this piece
            tr = PhonemeTrack([PhonemeUnit(SILENCE, 0.0, piece_dur, REST)], lang, piece_dur, "silence")
            empty += 1
        pieces.append(tr)
        offsets.append(a / sample_rate)
    if empty == len(pieces):
        raise AlignmentError(f"no speech was found in any of the {len(pieces)} pieces of the {duration:.1f} s audio",
                             "check that the audio holds speech")
    main_lang = max(set(langs), key=langs.count)
    source = max(set(sources), key=sources.count)
    setattr(aligner, "pieces", [(round(a / sample_rate, 3), round(b / sample_rate, 3))
                                for a, b in zip(cuts[:-1], cuts[1:])])
    return join_tracks(pieces, offsets, duration, main_lang, source)
