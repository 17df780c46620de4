"""ARPAbet (CMUdict / pocketsphinx phones) <-> IPA, matching espeak-ng's en-us symbols."""

from __future__ import annotations

ARPABET_TO_IPA: dict[str, str] = {
    "AA": "ɑː", "AE": "æ", "AH": "ə", "AO": "ɔː", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "tʃ",
    "D": "d", "DH": "ð", "EH": "ɛ", "ER": "ɚ", "EY": "eɪ", "F": "f", "G": "ɡ", "HH": "h", "IH": "ɪ",
    "IY": "iː", "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ", "OW": "oʊ", "OY": "ɔɪ",
    "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "UH": "ʊ", "UW": "uː", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ", "SIL": "sil",
}

# espeak-ng en-us IPA phones -> ARPAbet sequence (for words missing from the dictionary)
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    **{ipa: (arpa,) for arpa, ipa in ARPABET_TO_IPA.items() if arpa != "SIL"},
    "ɑ": ("AA",), "ɒ": ("AA",), "a": ("AA",), "aː": ("AA",), "ʌ": ("AH",), "ɐ": ("AH",), "ᵻ": ("IH",),
    "i": ("IY",), "u": ("UW",), "ɔ": ("AO",), "o": ("OW",), "e": ("EY",), "ɜː": ("ER",), "ɜ": ("ER",),
    "ɝ": ("ER",), "oː": ("OW",), "eː": ("EY",), "ɡ": ("G",), "g": ("G",), "ɾ": ("T",), "ʔ": ("T",),
    "r": ("R",), "x": ("K",), "ç": ("HH",), "ɑːɹ": ("AA", "R"), "ɔːɹ": ("AO", "R"), "ɛɹ": ("EH", "R"),
    "ɪɹ": ("IH", "R"), "ʊɹ": ("UH", "R"), "əl": ("AH", "L"), "n̩": ("AH", "N"), "aɪə": ("AY", "AH"),
    "aɪɚ": ("AY", "ER"), "iə": ("IY", "AH"), "oʊɹ": ("OW", "R"),
}


def ipa_to_arpabet(phones: list[str]) -> list[str]:
    """ARPAbet for a list of IPA phones; phones without a mapping are dropped."""
    out: list[str] = []
    for p in phones:
        out.extend(IPA_TO_ARPABET.get(p, ()))
    return out
