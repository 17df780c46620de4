"""Viseme classes: the visual units that phonemes map to (see pvm.py).

Each class carries the mouth articulation it stands for, in normalised
units, so that the procedural renderer, the metrics and the PVM agree on one
definition. ``openness`` is the vertical lip gap (0 closed .. 1 widest),
``width`` the horizontal mouth stretch relative to rest (0 narrow .. 1 wide),
``rounding`` lip protrusion/rounding, ``teeth`` how much upper teeth show,
``lip_contact`` whether the lips touch (bilabials) or lip and teeth touch
(labiodentals).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Viseme:
    name: str
    openness: float
    width: float
    rounding: float
    teeth: float
    lip_contact: bool
    description: str


VISEMES: tuple[Viseme, ...] = (
    Viseme("rest", 0.00, 0.45, 0.0, 0.0, True, "silence / pause: relaxed closed mouth"),
    Viseme("bilabial", 0.00, 0.42, 0.1, 0.0, True, "p b m: lips pressed together"),
    Viseme("labiodental", 0.12, 0.50, 0.0, 0.8, True, "f v: lower lip under upper teeth"),
    Viseme("dental", 0.22, 0.52, 0.0, 0.7, False, "th (θ ð): tongue between teeth"),
    Viseme("alveolar", 0.25, 0.55, 0.0, 0.5, False, "t d n l s z: slightly open, teeth close"),
    Viseme("postalveolar", 0.28, 0.40, 0.6, 0.5, False, "sh zh ch j (ʃ ʒ tʃ dʒ) and r: protruded lips"),
    Viseme("velar", 0.35, 0.50, 0.0, 0.3, False, "k g ng h: open jaw, tongue back"),
    Viseme("open_vowel", 0.95, 0.62, 0.0, 0.4, False, "a ɑ æ ʌ aɪ aʊ: jaw wide open"),
    Viseme("mid_vowel", 0.55, 0.60, 0.1, 0.4, False, "e ɛ ə ɜ eɪ: half open"),
    Viseme("spread_vowel", 0.30, 0.85, 0.0, 0.6, False, "i ɪ j: lips spread, smile-like"),
    Viseme("rounded_vowel", 0.45, 0.20, 1.0, 0.0, False, "o ɔ u ʊ w y: rounded, protruded lips"),
)

VISEME_NAMES: tuple[str, ...] = tuple(v.name for v in VISEMES)
VISEME_INDEX: dict[str, int] = {name: i for i, name in enumerate(VISEME_NAMES)}
REST = "rest"


def viseme(name: str) -> Viseme:
    """Look up a viseme class by name (KeyError names the known classes)."""
    try:
        return VISEMES[VISEME_INDEX[name]]
    except KeyError:
        raise KeyError(f"unknown viseme class {name!r}; known: {', '.join(VISEME_NAMES)}") from None
