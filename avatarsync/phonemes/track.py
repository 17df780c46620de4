"""Timestamped unit sequences: the value every front end produces."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .visemes import VISEME_INDEX

SILENCE = "sil"


@dataclass(frozen=True)
class WordSpan:
    """A spoken word (or Mandarin character) and its time span in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class PhonemeUnit:
    """One unit with its time span in seconds.

    ``symbol`` is the character-level unit: an IPA phoneme for English, a
    pinyin syllable with tone digit for Mandarin (``"ni3"``), or ``"sil"``.
    ``viseme`` is its visual class (a name from ``visemes.VISEME_NAMES``).
    """

    symbol: str
    start: float
    end: float
    viseme: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class PhonemeTrack:
    """A sequence of units covering ``duration`` seconds of speech.

    ``units`` are the character-level units the keyframe model reads;
    ``phones`` is the finer phone-level sequence (identical to ``units`` for
    English; the initials and finals inside each syllable for Mandarin), used
    where mouth shapes change inside a unit (the procedural renderer).
    """

    units: list[PhonemeUnit]
    lang: str
    duration: float
    source: str = "unknown"
    phones: list[PhonemeUnit] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.phones:
            self.phones = list(self.units)

    def validate(self, tol: float = 1e-6) -> None:
        """Raise ValueError unless units are monotonic, non-overlapping and within [0, duration]."""
        for seq_name, seq in (("units", self.units), ("phones", self.phones)):
            prev_end = 0.0
            for i, u in enumerate(seq):
                if u.viseme not in VISEME_INDEX:
                    raise ValueError(f"{seq_name}[{i}] {u.symbol!r} has unknown viseme {u.viseme!r}")
                if u.end < u.start - tol:
                    raise ValueError(f"{seq_name}[{i}] {u.symbol!r} ends before it starts")
                if u.start < prev_end - tol:
                    raise ValueError(f"{seq_name}[{i}] {u.symbol!r} overlaps the previous unit")
                prev_end = u.end
            if seq and seq[-1].end > self.duration + tol:
                raise ValueError(f"{seq_name} run past the track duration {self.duration:.3f}s")

    def to_dict(self) -> dict:
        return {
            "lang": self.lang,
            "duration": self.duration,
            "source": self.source,
            "units": [asdict(u) for u in self.units],
            "phones": [asdict(u) for u in self.phones],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PhonemeTrack":
        return cls(
            units=[PhonemeUnit(**u) for u in d["units"]],
            lang=d["lang"],
            duration=float(d["duration"]),
            source=d.get("source", "unknown"),
            phones=[PhonemeUnit(**u) for u in d.get("phones", [])],
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "PhonemeTrack":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def slice(self, start: float, end: float) -> "PhonemeTrack":
        """The part of the track inside [start, end), times shifted to start at 0 (units cut at the edges)."""
        def cut(seq: list[PhonemeUnit]) -> list[PhonemeUnit]:
            out = []
            for u in seq:
                s, e = max(u.start, start), min(u.end, end)
                if e > s:
                    out.append(PhonemeUnit(u.symbol, s - start, e - start, u.viseme))
            return out

        return PhonemeTrack(units=cut(self.units), lang=self.lang, duration=end - start, source=self.source,
                            phones=cut(self.phones))

    def unit_at(self, t: float, level: str = "units") -> PhonemeUnit | None:
        """The unit covering time ``t`` (None in a gap or outside the track)."""
        for u in getattr(self, level):
            if u.start <= t < u.end:
                return u
        return None
