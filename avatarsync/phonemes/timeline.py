"""Turn raw timed phones (from espeak events or an aligner) into a PhonemeTrack.

Shared rules, so every front end gives the same kind of sequence:
- phone names are normalised IPA (stress marks dropped, espeak's ASCII
  fallbacks for Mandarin replaced by IPA);
- pauses become ``sil`` units (viseme ``rest``); adjacent pauses merge;
  pauses shorter than ``MIN_PAUSE`` between phones (word-boundary gaps,
  stop closures) are given to the following phone, leading and trailing
  silence is always kept;
- English units are the phones; Mandarin units are pinyin syllables, each
  spanning its phones.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pvm import PhonemeVisemeMap, default_pvm
from .track import SILENCE, PhonemeTrack, PhonemeUnit
from .visemes import REST

MIN_PAUSE = 0.05  # seconds

# espeak-ng's Mandarin phoneme table has no IPA for some phonemes and prints
# its ASCII mnemonics instead; these are the IPA they stand for.
ESPEAK_IPA_FIXES: dict[str, str] = {
    "ts.h": "tʂʰ", "ts.": "tʂ", "s.": "ʂ", "z.": "ʐ", "i.": "ʅ", "i[": "ɿ",
    "tsh": "tsʰ", "tɕh": "tɕʰ", "ph": "pʰ", "th": "tʰ", "kh": "kʰ", "o-": "ɤ",
    "i̪": "ɿ", "onɡ": "ʊŋ", "ŋ-": "ŋ̍",
}
ZERO_SHARE = (0.03, 1 / 3)  # a zero-length phone takes min(30 ms, 1/3) of its neighbour
_STRESS = "ˈˌ"


def normalize_phone(name: str) -> str:
    """Normalised IPA for a phone name ("" and pause names -> ``sil``)."""
    s = name.strip()
    for c in _STRESS:
        s = s.replace(c, "")
    if s in ("", "_", "sil", "SIL", "sp", "spn", "<sil>"):
        return SILENCE
    return ESPEAK_IPA_FIXES.get(s, s)


@dataclass
class RawPhone:
    """A phone name with its span in seconds and the index of its word/syllable (-1: pause)."""

    name: str
    start: float
    end: float
    group: int = -1


def _clean(raw: list[RawPhone], duration: float, min_pause: float = MIN_PAUSE) -> list[RawPhone]:
    """Normalise names, clamp to [0, duration], merge pauses, absorb short inner pauses."""
    out: list[RawPhone] = []
    for r in raw:
        name = normalize_phone(r.name)
        start = min(max(r.start, 0.0), duration)
        end = min(max(r.end, start), duration)
        if out:
            start = max(start, out[-1].end)
            end = max(end, start)
        is_sil = name == SILENCE
        if is_sil and end - start <= 0:
            continue
        if is_sil and out and out[-1].name == SILENCE:
            out[-1].end = end
            continue
        out.append(RawPhone(name, start, end, -1 if is_sil else r.group))
    filled: list[RawPhone] = []
    for r in out:  # a gap between phones is silence
        if filled and r.start > filled[-1].end:
            prev = filled[-1]
            if prev.name == SILENCE:
                prev.end = r.start
            elif r.name == SILENCE:
                r.start = prev.end
            else:
                filled.append(RawPhone(SILENCE, prev.end, r.start, -1))
        filled.append(r)
    out = filled
    if out and out[0].start > 0:  # leading gap is silence
        if out[0].name == SILENCE:
            out[0].start = 0.0
        else:
            out.insert(0, RawPhone(SILENCE, 0.0, out[0].start, -1))
    if out and out[-1].end < duration:  # trailing gap is silence
        if out[-1].name == SILENCE:
            out[-1].end = duration
        else:
            out.append(RawPhone(SILENCE, out[-1].end, duration, -1))
    for i, r in enumerate(out):  # espeak gives some phones (post-vowel l) no time of their own
        if r.name == SILENCE or r.end > r.start:
            continue
        prev = out[i - 1] if i > 0 and out[i - 1].name != SILENCE else None
        nxt = out[i + 1] if i + 1 < len(out) and out[i + 1].name != SILENCE else None
        donor = prev if prev is not None and prev.end - prev.start > 0 else nxt
        if donor is None or donor.end - donor.start <= 0:
            continue
        share = min(ZERO_SHARE[0], (donor.end - donor.start) * ZERO_SHARE[1])
        if donor is prev:
            prev.end -= share
            r.start = prev.end
        else:
            nxt.start += share
            r.end = nxt.start
    final: list[RawPhone] = []
    for i, r in enumerate(out):
        inner = 0 < i < len(out) - 1
        if r.name == SILENCE and inner and r.end - r.start < min_pause:
            out[i + 1].start = r.start
            continue
        final.append(r)
    return final


def assemble_track(
    raw: list[RawPhone],
    duration: float,
    lang: str,
    source: str,
    syllables: list[str] | None = None,
    pvm: PhonemeVisemeMap | None = None,
    min_pause: float = MIN_PAUSE,
) -> tuple[PhonemeTrack, list[int]]:
    """Build a validated track; returns it and each phone's group index.

    ``min_pause``: shorter inner pauses go to the following phone; 0 keeps every pause (word times
    that must hold exactly, as an alignment file's).

    ``syllables``: for Mandarin, the pinyin label of each group; units are then
    one per syllable (its viseme from the PVM), else units equal phones.
    """
    pvm = pvm or default_pvm()
    phones_raw = _clean(raw, duration, min_pause)
    phones = [
        PhonemeUnit(r.name, r.start, r.end, REST if r.name == SILENCE else pvm.viseme_of(r.name))
        for r in phones_raw
    ]
    groups = [r.group for r in phones_raw]
    if syllables is None:
        units = list(phones)
    else:
        units = []
        i = 0
        while i < len(phones_raw):
            r = phones_raw[i]
            if r.name == SILENCE or r.group < 0:
                units.append(phones[i])
                i += 1
                continue
            j = i
            while j + 1 < len(phones_raw) and phones_raw[j + 1].group == r.group:
                j += 1
            label = syllables[r.group]
            units.append(PhonemeUnit(label, r.start, phones_raw[j].end, syllable_viseme(label, phones[i: j + 1], pvm)))
            i = j + 1
    track = PhonemeTrack(units=units, lang=lang, duration=duration, source=source, phones=phones)
    track.validate()
    return track, groups


def syllable_viseme(label: str, phones: list[PhonemeUnit], pvm: PhonemeVisemeMap) -> str:
    """A syllable's viseme: the PVM's pinyin rule, else its first vowel phone's viseme."""
    from .pvm import is_pinyin

    if is_pinyin(label):
        return pvm.viseme_of(label)
    for p in phones:
        if pvm.is_vowel(p.symbol):
            return p.viseme
    return phones[0].viseme if phones else REST
