"""The FKG token vocabulary: special tokens, units, duration bins and visual codes.

One id space holds everything the keyframe model reads::

    [specials][units][duration bins][visual codes]

Units are the character-level symbols of ``PhonemeTrack.units`` (or their
viseme classes), collected from training data. Durations are quantised into
bins by ``duration_edges`` (seconds). Visual codes are the tokenizer's code
indices. When the codebook is large the model factorises each code into
mixed-radix digits (``code_factors``): it embeds a code as the sum of its
digits' embeddings and predicts one distribution per digit, so neither the
embedding nor the output layer grows with the full codebook size.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from ..errors import InputError

PAD, BOS, BEGIN_FRAME, UNK_UNIT = "<pad>", "<bos>", "[B]", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, BEGIN_FRAME, UNK_UNIT)

# Log-spaced bin edges (seconds) covering phoneme and syllable durations.
DEFAULT_DURATION_EDGES: tuple[float, ...] = tuple(
    round(0.03 * (0.6 / 0.03) ** (i / 14), 4) for i in range(15)
)


class VocabError(InputError):
    """A vocabulary that does not fit the data or the model."""


def code_factors(codebook_size: int, factorize_above: int = 4096) -> tuple[int, ...]:
    """Digit sizes used to represent a code: ``(K,)`` or two digits whose product covers K.

    Power-of-two codebooks split their bits evenly (2^14 -> (128, 128));
    others use ``ceil(sqrt(K))`` for both digits.
    """
    if codebook_size < 2:
        raise VocabError(f"codebook_size must be >= 2, got {codebook_size}", "check the tokenizer")
    if factorize_above <= 0 or codebook_size <= factorize_above:
        return (codebook_size,)
    bits = math.log2(codebook_size)
    if bits.is_integer():
        hi = 2 ** math.ceil(bits / 2)
        return (hi, codebook_size // hi)
    r = math.ceil(math.sqrt(codebook_size))
    return (r, r)


def split_codes(codes: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Codes ``[...]`` -> digits ``[..., len(factors)]`` (most significant first)."""
    digits = []
    rest = codes
    for f in reversed(factors):
        digits.append(rest % f)
        rest = torch.div(rest, f, rounding_mode="floor")
    return torch.stack(digits[::-1], dim=-1)


def merge_codes(digits: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Digits ``[..., len(factors)]`` -> codes ``[...]``."""
    code = torch.zeros_like(digits[..., 0])
    for k, f in enumerate(factors):
        code = code * f + digits[..., k]
    return code


@dataclass
class FKGVocab:
    """Id layout of the keyframe model; saved beside its weights as ``vocab.json``."""

    units: list[str]
    codebook_size: int
    duration_edges: list[float] = field(default_factory=lambda: list(DEFAULT_DURATION_EDGES))
    factorize_above: int = 4096

    def __post_init__(self) -> None:
        if len(set(self.units)) != len(self.units):
            raise VocabError("unit vocabulary has duplicate symbols", "build it with build_unit_list")
        if any(b <= a for a, b in zip(self.duration_edges, self.duration_edges[1:])):
            raise VocabError("duration_edges must increase strictly", "fix fkg.duration_edges in the recipe")
        self._unit_index = {u: i for i, u in enumerate(self.units)}
        self.factors = code_factors(self.codebook_size, self.factorize_above)

    # -- sizes and offsets ----------------------------------------------------------------
    @property
    def unit_offset(self) -> int:
        return len(SPECIAL_TOKENS)

    @property
    def n_duration_bins(self) -> int:
        return len(self.duration_edges) + 1

    @property
    def duration_offset(self) -> int:
        return self.unit_offset + len(self.units)

    @property
    def visual_offset(self) -> int:
        """First visual-code id; every id below it is a 'text' id (special, unit or duration)."""
        return self.duration_offset + self.n_duration_bins

    @property
    def n_text(self) -> int:
        return self.visual_offset

    @property
    def size(self) -> int:
        return self.visual_offset + self.codebook_size

    @property
    def factorized(self) -> bool:
        return len(self.factors) > 1

    def special_id(self, token: str) -> int:
        return SPECIAL_TOKENS.index(token)

    @property
    def pad_id(self) -> int:
        return SPECIAL_TOKENS.index(PAD)

    @property
    def bos_id(self) -> int:
        return SPECIAL_TOKENS.index(BOS)

    @property
    def begin_frame_id(self) -> int:
        return SPECIAL_TOKENS.index(BEGIN_FRAME)

    # -- encoding -------------------------------------------------------------------------
    def unit_id(self, symbol: str) -> int:
        """Id of a unit symbol; unknown symbols map to ``<unk>``."""
        i = self._unit_index.get(symbol)
        return SPECIAL_TOKENS.index(UNK_UNIT) if i is None else self.unit_offset + i

    def unit_symbol(self, token_id: int) -> str:
        i = token_id - self.unit_offset
        if 0 <= i < len(self.units):
            return self.units[i]
        if token_id == SPECIAL_TOKENS.index(UNK_UNIT):
            return UNK_UNIT
        raise VocabError(f"id {token_id} is not a unit id", "pass ids from FKGVocab.unit_id")

    def duration_bin(self, seconds: float) -> int:
        return bisect.bisect_right(self.duration_edges, float(seconds))

    def duration_id(self, seconds: float) -> int:
        return self.duration_offset + self.duration_bin(seconds)

    def visual_ids(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise VocabError(
                f"visual codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]",
                "the token cache was made with a different tokenizer; rebuild it",
            )
        return codes.long() + self.visual_offset

    def codes_of(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.long() - self.visual_offset

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "units": list(self.units),
            "codebook_size": self.codebook_size,
            "duration_edges": list(self.duration_edges),
            "factorize_above": self.factorize_above,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FKGVocab":
        return cls(units=list(d["units"]), codebook_size=int(d["codebook_size"]),
                   duration_edges=[float(x) for x in d["duration_edges"]],
                   factorize_above=int(d.get("factorize_above", 4096)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "FKGVocab":
        path = Path(path)
        if not path.is_file():
            raise VocabError(f"vocabulary file {path} not found", "point at a trained FKG model folder")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def build_unit_list(symbol_lists: Iterable[Iterable[str]]) -> list[str]:
    """Sorted set of unit symbols seen in data (the unit part of the vocabulary)."""
    seen: set[str] = set()
    for symbols in symbol_lists:
        seen.update(symbols)
    seen.discard(UNK_UNIT)
    return sorted(seen)
