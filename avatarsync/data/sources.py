"""Where real talking-face videos and their text come from: one ``SourceItem`` per video.

Layouts (``avatarsync prepare SRC --layout ...``):

- ``grid``: ``SRC/video/NAME.{mpg,mp4,...}`` with ``SRC/align/NAME.align`` (word timings in
  1/25,000 s, the GRID corpus's own) and/or ``SRC/transcripts.tsv`` (``clip<TAB>transcript``).
  Without either, the sentence is read off the clip name (``bbaf2n`` = "bin blue at f two now").
  One speaker per folder (its name, e.g. ``s1``).
- ``folder``: any videos under ``SRC`` (recursively), each with a transcript in ``NAME.txt`` beside
  it or a line in ``SRC/transcripts.tsv``; the speaker is the video's parent folder name, or
  ``--speaker`` for all. HDTF downloads and a person's own recordings look like this.
- ``cmlr``: CMLR's release layout, ``SRC/video/SPEAKER/DATE/CLIP.mp4`` with the Mandarin sentence
  in ``SRC/text/SPEAKER/DATE/CLIP.txt`` (first line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..phonemes.track import WordSpan

VIDEO_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".mov", ".webm", ".mkv", ".avi", ".m4v")
LAYOUTS = ("grid", "folder", "cmlr")
GRID_TIME_UNIT = 25000.0  # .align times are in 1/25,000 s

# GRID sentence grammar: command colour preposition letter digit adverb, one letter each in the clip name.
_GRID_WORDS = (
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # the letter itself
    {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
     "8": "eight", "9": "nine"},
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)


@dataclass(frozen=True)
class SourceItem:
    """One source video with what is known of its speech."""

    item_id: str  # unique within the source, safe as a folder name
    video: Path
    speaker: str
    lang: str
    transcript: str | None = None
    words: tuple[WordSpan, ...] | None = None  # word timings from an alignment file (GRID .align)
    text_source: str = ""  # where the transcript came from
    extra: dict = field(default_factory=dict, compare=False)


def read_grid_align(path: str | Path) -> list[WordSpan]:
    """Words of a GRID ``.align`` file (``start end word`` lines in 1/25,000 s), pauses (``sil``, ``sp``) left out."""
    path = Path(path)
    words = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise InputError(f"{path}:{n}: expected 'start end word', got {line!r}", "check the .align file")
        try:
            start, end = int(parts[0]) / GRID_TIME_UNIT, int(parts[1]) / GRID_TIME_UNIT
        except ValueError:
            raise InputError(f"{path}:{n}: times must be integers, got {line!r}", "check the .align file") from None
        if end < start:
            raise InputError(f"{path}:{n}: word ends before it starts ({line!r})", "check the .align file")
        if parts[2].lower() not in ("sil", "sp"):
            words.append(WordSpan(parts[2].lower(), start, end))
    return words


def grid_sentence(name: str) -> str | None:
    """The sentence a GRID clip name spells (``bbaf2n`` -> "bin blue at f two now"); None if it is no GRID name."""
    if len(name) != 6:
        return None
    out = []
    for ch, table in zip(name.lower(), _GRID_WORDS):
        if table is None:
            if not ch.isalpha():
                return None
            out.append(ch)
        elif ch in table:
            out.append(table[ch])
        else:
            return None
    return " ".join(out)


def read_transcripts_tsv(path: Path) -> dict[str, str]:
    """``clip<TAB>transcript`` lines (a header line ``clip<TAB>transcript`` is skipped)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "\t" not in line:
            continue
        key, text = line.split("\t", 1)
        if key.strip().lower() == "clip":
            continue
        out[key.strip()] = text.strip()
    return out


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "clip"


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _grid_items(src: Path, lang: str, speaker: str | None) -> list[SourceItem]:
    vdir = src / "video" if (src / "video").is_dir() else src
    tsv = read_transcripts_tsv(src / "transcripts.tsv") if (src / "transcripts.tsv").is_file() else {}
    spk = speaker or src.name
    items = []
    for video in _videos(vdir):
        name = video.stem
        align = src / "align" / f"{name}.align"
        words, transcript, how = None, tsv.get(name), "transcripts.tsv"
        if align.is_file():
            try:
                words = tuple(read_grid_align(align))
            except InputError as e:  # an unreadable alignment: keep the item, say why in its record
                items.append(SourceItem(f"{spk}_{_safe_id(name)}", video, spk, lang, None, None, "",
                                        {"error": e.problem}))
                continue
            if transcript is None:
                transcript, how = " ".join(w.word for w in words), "align"
        if transcript is None and grid_sentence(name):
            transcript, how = grid_sentence(name), "clip name"
        items.append(SourceItem(f"{spk}_{_safe_id(name)}", video, spk, lang, transcript, words,
                                how if transcript else ""))
    return items


def _folder_items(src: Path, lang: str, speaker: str | None) -> list[SourceItem]:
    tsv = read_transcripts_tsv(src / "transcripts.tsv") if (src / "transcripts.tsv").is_file() else {}
    items = []
    for video in _videos(src):
        txt = video.with_suffix(".txt")
        rel = video.relative_to(src).with_suffix("")
        transcript, how = None, ""
        if txt.is_file():
            transcript, how = txt.read_text(encoding="utf-8", errors="replace").strip() or None, txt.name
        elif video.stem in tsv or str(rel) in tsv:
            transcript, how = tsv.get(str(rel), tsv.get(video.stem)), "transcripts.tsv"
        spk = speaker or (video.parent.name if video.parent != src else src.name)
        items.append(SourceItem(_safe_id(str(rel)), video, spk, lang, transcript, None, how))
    return items


def _cmlr_items(src: Path, lang: str, speaker: str | None) -> list[SourceItem]:
    vdir = src / "video"
    if not vdir.is_dir():
        raise InputError(f"{src} has no video/ folder", "the CMLR layout is SRC/video/SPEAKER/DATE/CLIP.mp4")
    items = []
    for video in _videos(vdir):
        rel = video.relative_to(vdir).with_suffix("")
        txt = (src / "text" / video.relative_to(vdir)).with_suffix(".txt")  # CMLR names hold dots: 000.45_003.81
        transcript = None
        if txt.is_file():
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            transcript = lines[0].strip() if lines and lines[0].strip() else None
        spk = speaker or rel.parts[0]
        items.append(SourceItem(_safe_id(str(rel)), video, spk, lang, transcript, None,
                                "text/" if transcript else ""))
    return items


def discover(src: str | Path, layout: str = "grid", lang: str = "en", speaker: str | None = None) -> list[SourceItem]:
    """Every video of ``src`` in ``layout`` as a ``SourceItem`` (sorted, ids unique)."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"source folder {src} does not exist", "give the folder that holds the videos")
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
    if layout == "cmlr" and lang == "en":
        lang = "zh"
    items = {"grid": _grid_items, "folder": _folder_items, "cmlr": _cmlr_items}[layout](src, lang, speaker)
    if not items:
        raise InputError(f"no videos found in {src} ({layout} layout)",
                         f"videos end in {', '.join(VIDEO_EXTENSIONS)}; check --layout")
    seen: dict[str, int] = {}
    out = []
    for it in items:  # two videos with one name in different folders: number the later ones
        n = seen.get(it.item_id, 0)
        seen[it.item_id] = n + 1
        out.append(it if n == 0 else SourceItem(f"{it.item_id}-{n}", it.video, it.speaker, it.lang, it.transcript,
                                                it.words, it.text_source, it.extra))
    return out
