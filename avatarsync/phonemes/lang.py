"""Language codes the phoneme front end accepts."""

from __future__ import annotations

from ..errors import LanguageError

SUPPORTED_LANGS: tuple[str, ...] = ("en", "zh")

_ALIASES: dict[str, str] = {
    "en": "en", "en-us": "en", "en_us": "en", "eng": "en", "english": "en",
    "zh": "zh", "zh-cn": "zh", "zh_cn": "zh", "cmn": "zh", "zh-hans": "zh",
    "mandarin": "zh", "chinese": "zh",
}


def normalize_lang(code: str) -> str:
    """Map a user language code to ``"en"`` or ``"zh"``; LanguageError otherwise."""
    key = (code or "").strip().lower()
    if key not in _ALIASES:
        raise LanguageError(
            f"unsupported language code {code!r}",
            f"supported codes: {', '.join(SUPPORTED_LANGS)} (English, Mandarin Chinese)",
        )
    return _ALIASES[key]
