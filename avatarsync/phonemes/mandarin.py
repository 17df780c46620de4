"""Mandarin text to pinyin syllables with tone digits (the character-level units).

Hanzi go through pypinyin (phrase-aware readings, tone sandhi applied so the
units name what is spoken, neutral tone as ``5``); Arabic numbers are read out
in Chinese first; pinyin already written with tone digits (``ni3 hao3``) is
kept as is. Punctuation becomes a pause marker (``","`` or ``"."``).
"""

from __future__ import annotations

import re

_DIGITS = "零一二三四五六七八九"
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\u3007"
_TOKEN_RE = re.compile(
    rf"(?P<han>[{_HAN}]+)"
    r"|(?P<num>\d+(?:\.\d+)?%?)"
    r"|(?P<latin>[A-Za-züÜêÊ]+[1-5]?)"
    r"|(?P<comma>[,，、;；:：—–\-])"
    r"|(?P<stop>[.。!！?？…])"
)
PINYIN_RE = re.compile(r"^[a-zvü]+[1-5]$")
PAUSES = (",", ".")


def _four(n: int) -> str:
    """Read 0 < n < 10000 in Chinese (internal zeros as 零)."""
    out, zero = [], False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[d] + unit)
    return "".join(out)


def cardinal(n: int) -> str:
    """Chinese reading of a non-negative integer below 10^12 (``15`` -> ``十五``)."""
    if n == 0:
        return "零"
    parts, groups = [], [(n // 10**8) % 10**4, (n // 10**4) % 10**4, n % 10**4]
    for g, unit in zip(groups, ("亿", "万", "")):
        if g == 0:
            if parts and not parts[-1].endswith("零"):
                parts.append("零")
            continue
        if parts and g < 1000 and not parts[-1].endswith("零"):
            parts.append("零")
        parts.append(_four(g) + unit)
    text = "".join(parts).strip("零")
    return text[1:] if text.startswith("一十") else text


def read_number(token: str, next_char: str = "") -> str:
    """Chinese reading of a digit string (years and long codes digit by digit)."""
    percent = token.endswith("%")
    token = token.rstrip("%")
    whole, _, frac = token.partition(".")
    if (len(whole) == 4 and next_char == "年") or len(whole) > 12 or (len(whole) > 1 and whole[0] == "0"):
        text = "".join(_DIGITS[int(c)] for c in whole)
    else:
        text = cardinal(int(whole))
    if frac:
        text += "点" + "".join(_DIGITS[int(c)] for c in frac)
    return "百分之" + text if percent else text


def to_syllables(text: str, tone_sandhi: bool = True) -> list[str]:
    """Pinyin syllables with tone digits and pause markers, in reading order.

    ``tone_sandhi`` False: dictionary tones (what a synthesizer trained on such labels reads; the
    syllables are the same, only tone digits differ).

    >>> to_syllables("你好，世界")
    ['ni2', 'hao3', ',', 'shi4', 'jie4', '.']
    """
    from pypinyin import Style, lazy_pinyin

    items: list[str] = []
    matches = list(_TOKEN_RE.finditer(text))
    for i, m in enumerate(matches):
        kind, tok = m.lastgroup, m.group()
        if kind == "num":
            nxt = text[m.end(): m.end() + 1]
            tok, kind = read_number(tok, nxt), "han"
        if kind == "han":
            items.extend(
                s.replace("ü", "v").replace("ê", "e")
                for s in lazy_pinyin(tok, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=tone_sandhi)
            )
        elif kind == "latin":
            items.append(tok.lower().replace("ü", "v").replace("ê", "e"))
        elif kind in ("comma", "stop"):
            mark = "," if kind == "comma" else "."
            if items and items[-1] not in PAUSES:
                items.append(mark)
            elif items and mark == ".":
                items[-1] = "."
    if items and items[-1] not in PAUSES:
        items.append(".")
    return items


# espeak-ng 1.52's Mandarin reader has no "iong" and no interjection syllables
# m/hm/hng (it reads them as English); these spellings sound closest.
_INTERJECTIONS = {"m": "mu", "hm": "hen", "hng": "heng"}


def espeak_spelling(syllable: str) -> str:
    """How to write a pinyin syllable for espeak's pinyin voice (may be two words)."""
    base, tone = (syllable[:-1], syllable[-1]) if syllable[-1:].isdigit() else (syllable, "")
    if base in _INTERJECTIONS:
        return _INTERJECTIONS[base] + tone
    if base.endswith("iong") and base[:-4] in ("j", "q", "x"):
        return f"{base[:-4]}i{tone} ong{tone}"
    return syllable


def espeak_text(items: list[str]) -> tuple[str, list[int]]:
    """The string for espeak's pinyin voice and each item's 1-based character offset."""
    parts, starts, pos = [], [], 1
    for it in items:
        if it in PAUSES:
            if parts:
                parts[-1] += it
                pos += 1
            starts.append(pos - 1)
            continue
        if parts:
            parts.append(" ")
            pos += 1
        starts.append(pos)
        spelled = espeak_spelling(it)
        parts.append(spelled)
        pos += len(spelled)
    return "".join(parts), starts


def syllables_by_token(tokens: list[str]) -> list[list[str]]:
    """The pinyin syllables of each token (e.g. WhisperX's per-character words),
    read in context of the whole text so polyphonic characters get the right reading."""
    from pypinyin import Style, lazy_pinyin

    text = "".join(tokens)
    owner = [i for i, t in enumerate(tokens) for _ in t]
    out: list[list[str]] = [[] for _ in tokens]
    for m in _TOKEN_RE.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind == "han":
            sylls = lazy_pinyin(tok, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True)
            for k, syl in enumerate(sylls[: len(tok)]):
                out[owner[m.start() + k]].append(syl.replace("ü", "v").replace("ê", "e"))
        elif kind == "num":
            spoken = read_number(tok, text[m.end(): m.end() + 1])
            out[owner[m.start()]].extend(
                s.replace("ü", "v")
                for s in lazy_pinyin(spoken, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True)
            )
        elif kind == "latin":
            out[owner[m.start()]].append(tok.lower().replace("ü", "v").replace("ê", "e"))
    return out


def to_simplified(text: str) -> str:
    """Traditional characters to Simplified (OpenCC's t2s tables, pure Python); others unchanged.

    Whisper writes Mandarin mostly in Traditional characters; pypinyin reads both, but transcripts
    and the units shown to users are Simplified.
    """
    global _T2S
    if _T2S is None:
        try:
            from opencc import OpenCC
        except ImportError as e:
            from ..errors import BackendUnavailable

            raise BackendUnavailable("opencc-python-reimplemented is not installed (Traditional -> Simplified)",
                                     "pip install opencc-python-reimplemented (scripts/setup.sh does)") from e
        _T2S = OpenCC("t2s")
    return _T2S.convert(text)


_T2S = None
_PY_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z",
                "c", "s")
INITIAL_IPA = {
    "b": "p", "p": "pʰ", "m": "m", "f": "f", "d": "t", "t": "tʰ", "n": "n", "l": "l", "g": "k", "k": "kʰ",
    "h": "x", "j": "tɕ", "q": "tɕʰ", "x": "ɕ", "zh": "tʂ", "ch": "tʂʰ", "sh": "ʂ", "r": "ʐ", "z": "ts",
    "c": "tsʰ", "s": "s",
}
# final -> (vowel part, nasal coda) in the IPA espeak-ng's Mandarin voice writes (so the PVM maps them alike)
FINAL_IPA: dict[str, tuple[str, str]] = {
    "a": ("a", ""), "o": ("o", ""), "e": ("ɤ", ""), "ê": ("ɛ", ""), "er": ("ər", ""), "ai": ("ai", ""),
    "ei": ("ei", ""), "ao": ("au", ""), "ou": ("ou", ""), "an": ("a", "n"), "en": ("ə", "n"), "ang": ("ɑ", "ŋ"),
    "eng": ("ə", "ŋ"), "ong": ("ʊŋ", ""), "i": ("i", ""), "ia": ("iɑ", ""), "ie": ("iɛ", ""), "iao": ("iɑu", ""),
    "iu": ("iou", ""), "ian": ("iɛ", "n"), "in": ("i", "n"), "iang": ("iɑ", "ŋ"), "ing": ("i", "ŋ"),
    "iong": ("ʊŋ", ""), "io": ("io", ""), "u": ("u", ""), "ua": ("ua", ""), "uo": ("uo", ""), "uai": ("uai", ""),
    "ui": ("uei", ""), "uan": ("ua", "n"), "un": ("uə", "n"), "uang": ("ua", "ŋ"), "ueng": ("uə", "ŋ"),
    "ü": ("y", ""), "üe": ("yɛ", ""), "üan": ("yɛ", "n"), "ün": ("y", "n"), "n": ("n̩", ""), "ng": ("ŋ̍", ""),
    "m": ("m", ""),
}
_YW_FINALS = {
    "yi": "i", "yin": "in", "ying": "ing", "ya": "ia", "ye": "ie", "yao": "iao", "you": "iu", "yan": "ian",
    "yang": "iang", "yong": "iong", "yu": "ü", "yue": "üe", "yuan": "üan", "yun": "ün", "yo": "io",
    "wu": "u", "wa": "ua", "wo": "uo", "wai": "uai", "wei": "ui", "wan": "uan", "wen": "un", "wang": "uang",
    "weng": "ueng",
}


def initial_final(syllable: str) -> tuple[str, str]:
    """A tone-digit pinyin syllable's initial and final, in pinyin (``"zhuang4"`` -> ``("zh", "uang")``;
    y/w spellings give no initial: ``"yue4"`` -> ``("", "üe")``)."""
    s = syllable.rstrip("12345").lower().replace("v", "ü")
    if s in _YW_FINALS:
        return "", _YW_FINALS[s]
    if s in ("n", "ng", "m", "er", "ê"):
        return "", s
    if s in ("hm", "hng"):
        return "h", s[1:]
    initial = next((i for i in _PY_INITIALS if s.startswith(i) and len(s) > len(i)), "")
    final = s[len(initial):]
    if initial in ("j", "q", "x") and final.startswith("u"):
        final = "ü" + final[1:]
    return initial, final


def syllable_parts(syllable: str) -> tuple[str, str, str]:
    """A pinyin syllable's initial, its final's vowel part and its nasal coda, in IPA as espeak-ng
    writes them ("" where absent; an unknown final is kept as written): ``"tian1"`` -> ``("tʰ", "iɛ", "n")``."""
    initial, final = initial_final(syllable)
    if final == "i" and initial in ("zh", "ch", "sh", "r"):
        vowel, coda = "ʅ", ""
    elif final == "i" and initial in ("z", "c", "s"):
        vowel, coda = "ɿ", ""
    else:
        vowel, coda = FINAL_IPA.get(final, (final or "ə", ""))
    return INITIAL_IPA.get(initial, initial), vowel, coda


def syllable_phones(syllable: str) -> list[str]:
    """The phones of a pinyin syllable (:func:`syllable_parts` without the absent ones)."""
    return [p for p in syllable_parts(syllable) if p]
