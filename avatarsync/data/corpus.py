"""Reading a corpus folder written by ``avatarsync synth-data`` (or by real-video preparation).

Layout::

    ROOT/corpus.json              generation settings (seed, size, fps, languages, split sizes)
    ROOT/manifest.jsonl           one JSON object per clip (fields of ``CorpusClip``)
    ROOT/clips/<clip_id>/video.mp4    H.264 + AAC, for people and for real-video parity
    ROOT/clips/<clip_id>/speech.wav   the speech track
    ROOT/clips/<clip_id>/track.json   PhonemeTrack (units and phones with times)
    ROOT/clips/<clip_id>/frames.npz   ``frames``: (N, H, W, 3) uint8, the exact rendered frames
    ROOT/clips/<clip_id>/truth.npz    per-frame ground truth: viseme, openness, width, rounding,
                                      blink, yaw, pitch, roll, tx, ty, smile (N,), landmarks (N, K, 2)
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..phonemes.track import PhonemeTrack

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CorpusClip:
    """One clip's manifest entry; file readers resolve paths against ``root``."""

    root: str
    clip_id: str
    split: str
    identity: int
    sentence_id: str
    lang: str
    text: str
    fps: float
    n_frames: int
    duration: float
    size: int
    landmark_layout: str = ""  # layout of truth.npz landmarks, from corpus.json ("" = the reader's default)
    speaker: str = ""  # real corpora: who speaks
    # real corpora: the speaker's wide-open lip gap (corpus.json openness_scale); truth() then derives
    # "openness" (0 closed .. 1 widest, as the procedural truth's) from the measured lip gap
    openness_scale: float = 0.0

    @property
    def folder(self) -> Path:
        return Path(self.root) / "clips" / self.clip_id

    def frames(self) -> np.ndarray:
        """Exact rendered frames, (N, H, W, 3) uint8 RGB."""
        with np.load(self.folder / "frames.npz") as z:
            return z["frames"]

    def truth(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "truth.npz") as z:
            truth = {k: z[k] for k in z.files}
        if "openness" not in truth and "lip_gap" in truth and self.openness_scale > 0:
            truth["openness"] = np.clip(truth["lip_gap"] / self.openness_scale, 0.0, 1.0).astype(np.float32)
        return truth

    def track(self) -> PhonemeTrack:
        return PhonemeTrack.load(self.folder / "track.json")

    @property
    def video_path(self) -> Path:
        return self.folder / "video.mp4"

    @property
    def audio_path(self) -> Path:
        return self.folder / "speech.wav"


class Corpus:
    """All clips of a corpus folder, filterable by split."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.jsonl"
        if not manifest.is_file():
            raise InputError(
                f"{self.root} is not a corpus folder (no manifest.jsonl)",
                "create one with `avatarsync synth-data --out DIR`",
            )
        settings = self.root / "corpus.json"
        self.settings: dict = json.loads(settings.read_text()) if settings.is_file() else {}
        required = {f.name for f in fields(CorpusClip) if f.default is MISSING} - {"root"}
        layout = str(self.settings.get("landmark_layout", ""))
        scales = self.settings.get("openness_scale", {})
        self._clips = []
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                speaker = str(entry.get("speaker", ""))
                self._clips.append(CorpusClip(root=str(self.root), landmark_layout=layout, speaker=speaker,
                                              openness_scale=float(scales.get(speaker, 0.0)),
                                              **{k: entry[k] for k in required}))

    def clips(self, split: str | None = None) -> list[CorpusClip]:
        if split is not None and split not in SPLITS:
            raise InputError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        return [c for c in self._clips if split is None or c.split == split]

    def __len__(self) -> int:
        return len(self._clips)


def held_out_leaks(main: Corpus, extra: Corpus) -> tuple[set[str], set[int]]:
    """Sentences and identities of ``extra``'s training clips that are held out (val/test) in ``main``:
    training on them would score ``main``'s held-out splits on material the model has seen."""
    held = [c for c in main.clips() if c.split != "train"]
    sentences = {c.sentence_id for c in held}
    identities = {c.identity for c in held}
    train = extra.clips("train")
    return ({c.sentence_id for c in train} & sentences, {c.identity for c in train} & identities)


def check_extra_corpus(main_root: str | Path, extra_root: str | Path) -> None:
    """Raise ``InputError`` when an extra training corpus shares held-out sentences or faces with the main one."""
    sentences, identities = held_out_leaks(Corpus(main_root), Corpus(extra_root))
    if not sentences and not identities:
        return
    what = []
    if sentences:
        what.append(f"{len(sentences)} held-out sentence(s) (e.g. {', '.join(sorted(sentences)[:3])})")
    if identities:
        what.append(f"{len(identities)} held-out identit{'y' if len(identities) == 1 else 'ies'} "
                    f"(e.g. {', '.join(map(str, sorted(identities)[:3]))})")
    raise InputError(
        f"extra corpus {extra_root} trains on {' and '.join(what)} of {main_root}'s val/test splits",
        f"remake it with the same --split-seed as {main_root} (default 0) and an --identity-offset past its "
        f"identities, or leave it out of data.extra_corpora",
    )
