"""Language codes the phoneme front end accepts, and the languages a model bundle was trained for."""

from __future__ import annotations

from typing import Iterable

from ..errors import InputError, LanguageError

SUPPORTED_LANGS: tuple[str, ...] = ("en", "zh", "fr")
LANG_NAMES: dict[str, str] = {"en": "English", "zh": "Mandarin Chinese", "fr": "French"}
# what a bundle whose pipeline.yaml names no `languages:` was trained for (every bundle before French)
DEFAULT_BUNDLE_LANGS: tuple[str, ...] = ("en", "zh")

_ALIASES: dict[str, str] = {
    "en": "en", "en-us": "en", "en_us": "en", "eng": "en", "english": "en",
    "zh": "zh", "zh-cn": "zh", "zh_cn": "zh", "cmn": "zh", "zh-hans": "zh",
    "mandarin": "zh", "chinese": "zh",
    "fr": "fr", "fr-fr": "fr", "fr_fr": "fr", "fra": "fr", "fre": "fr", "french": "fr", "français": "fr",
    "francais": "fr",
}


def normalize_lang(code: str) -> str:
    """Map a user language code to ``"en"``, ``"zh"`` or ``"fr"``; LanguageError otherwise."""
    key = (code or "").strip().lower()
    if key not in _ALIASES:
        raise LanguageError(
            f"unsupported language code {code!r}",
            f"supported codes: {', '.join(SUPPORTED_LANGS)} ({', '.join(LANG_NAMES[c] for c in SUPPORTED_LANGS)})",
        )
    return _ALIASES[key]


def bundle_languages(declared: Iterable[str] | None) -> tuple[str, ...]:
    """A bundle's ``languages:`` normalised (empty or absent: :data:`DEFAULT_BUNDLE_LANGS`, old bundles)."""
    if not declared:
        return DEFAULT_BUNDLE_LANGS
    if isinstance(declared, str):
        declared = [declared]
    return tuple(dict.fromkeys(normalize_lang(str(c)) for c in declared))


def check_bundle_lang(lang: str, declared: Iterable[str] | None, bundle: str = "the model bundle") -> str:
    """``lang`` normalised when ``bundle`` was trained for it (``declared``: its pipeline.yaml
    ``languages:``); ``"any"`` passes (phone recognition needs no language model). Otherwise an
    InputError that names the bundle's languages and how to add one."""
    if isinstance(lang, str) and lang.strip().lower() == "any":
        return "any"
    code = normalize_lang(lang)
    langs = bundle_languages(declared)
    if code not in langs:
        names = ", ".join(f"{c} ({LANG_NAMES.get(c, c)})" for c in langs)
        raise InputError(
            f"{bundle} was not trained for language {code!r} ({LANG_NAMES.get(code, code)}); it speaks {names}",
            f"use --lang {' or --lang '.join(langs)}, or fine-tune a bundle for {code} with the new-language "
            f"recipe (bash recipes/new_language/run.sh; docs/new_language.md) and pass it with --checkpoint",
        )
    return code
