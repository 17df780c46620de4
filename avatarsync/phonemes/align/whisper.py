"""WhisperX backend: ASR (when no transcript is given) + wav2vec2 CTC alignment, local models only.

WhisperX times words (English) or characters (Mandarin). Phones inside each
word/character come from espeak-ng: the words are synthesized and every
synthesized word is stretched onto the span WhisperX found for it.

Models are never downloaded: pass local paths or names already in the local
cache (``asr_model`` for faster-whisper, ``align_model`` for the wav2vec2
aligner, ``model_dir`` for their cache folder), or set the environment
variables ``AVATARSYNC_WHISPERX_MODEL``, ``AVATARSYNC_WHISPERX_ALIGN_MODEL``,
``AVATARSYNC_WHISPERX_MODEL_DIR``. Hub access is switched off
(HF_HUB_OFFLINE) while models load. See docs/phonemes.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

import numpy as np

from ...errors import AlignmentError, BackendUnavailable
from ..audio import resample
from ..track import PhonemeTrack
from .base import Aligner
from .words import espeak_into_words

ENV_ASR = "AVATARSYNC_WHISPERX_MODEL"
ENV_ALIGN = "AVATARSYNC_WHISPERX_ALIGN_MODEL"
ENV_DIR = "AVATARSYNC_WHISPERX_MODEL_DIR"
SAMPLE_RATE = 16000
MIN_MEAN_SCORE = 0.1  # mean word alignment score below this -> transcript taken not to match


def whisperx_installed() -> bool:
    """True when ``import whisperx`` can succeed (a module injected in sys.modules counts)."""
    if "whisperx" in sys.modules:
        return sys.modules["whisperx"] is not None
    try:
        return importlib.util.find_spec("whisperx") is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _offline():
    """Forbid hub downloads while models load (restores the environment after)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class WhisperXAligner(Aligner):
    """WhisperX transcription and alignment with locally available models."""

    name = "whisperx"
    languages = ("en", "zh")
    needs_transcript = False

    def __init__(
        self,
        asr_model: str | None = None,
        align_model: str | None = None,
        model_dir: str | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        batch_size: int = 8,
    ) -> None:
        self.asr_model = asr_model or os.environ.get(ENV_ASR) or None
        self.align_model = align_model or os.environ.get(ENV_ALIGN) or None
        self.model_dir = model_dir or os.environ.get(ENV_DIR) or None
        self.device, self.compute_type, self.batch_size = device, compute_type, batch_size
        self._asr = None
        self._aligners: dict[str, tuple] = {}

    @classmethod
    def unavailable_reason(cls, asr_model: str | None = None, align_model: str | None = None, **_) -> str | None:
        if not whisperx_installed():
            return "whisperx is not installed (pip install whisperx)"
        if not (align_model or os.environ.get(ENV_ALIGN)):
            return (
                "no local WhisperX alignment model is configured "
                f"(--whisperx-align-model or {ENV_ALIGN}; see docs/phonemes.md)"
            )
        return None

    def _whisperx(self):
        reason = self.unavailable_reason(self.asr_model, self.align_model)
        if reason:
            raise BackendUnavailable(reason, "see docs/phonemes.md, 'WhisperX with local models'")
        import whisperx

        return whisperx

    def _load_asr(self, wx, lang: str):
        if self._asr is None:
            if not self.asr_model:
                raise BackendUnavailable(
                    "WhisperX needs a local ASR model to align audio without a transcript",
                    f"pass --whisperx-model PATH (or set {ENV_ASR}), or give --transcript",
                )
            try:
                with _offline():
                    self._asr = wx.load_model(
                        self.asr_model, self.device, compute_type=self.compute_type, language=lang,
                        download_root=self.model_dir, local_files_only=True,
                    )
            except Exception as e:
                raise BackendUnavailable(
                    f"cannot load the WhisperX ASR model {self.asr_model!r} locally: {e}",
                    "give a local faster-whisper model folder (see docs/phonemes.md)",
                ) from e
        return self._asr

    def _load_aligner(self, wx, lang: str):
        if lang not in self._aligners:
            try:
                with _offline():
                    self._aligners[lang] = wx.load_align_model(
                        language_code=lang, device=self.device, model_name=self.align_model, model_dir=self.model_dir
                    )
            except Exception as e:
                raise BackendUnavailable(
                    f"cannot load the WhisperX alignment model {self.align_model!r} locally: {e}",
                    "give a local wav2vec2 CTC model folder for this language (see docs/phonemes.md)",
                ) from e
        return self._aligners[lang]

    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        wx = self._whisperx()
        duration = len(audio) / sample_rate
        audio16 = resample(audio, sample_rate, SAMPLE_RATE)
        if transcript is None:
            result = self._load_asr(wx, lang).transcribe(audio16, batch_size=self.batch_size, language=lang)
            segments = [s for s in result.get("segments", []) if str(s.get("text", "")).strip()]
            if not segments:
                raise AlignmentError("WhisperX heard no speech in the audio", "check the audio, or give --transcript")
        else:
            segments = [{"text": transcript, "start": 0.0, "end": duration}]
        model, metadata = self._load_aligner(wx, lang)
        aligned = wx.align(segments, model, metadata, audio16, self.device, return_char_alignments=False)
        words = [w for seg in aligned.get("segments", []) for w in seg.get("words", [])]
        words = [w for w in words if str(w.get("word", "")).strip()]
        if not words:
            raise AlignmentError("WhisperX aligned no words", "check that the transcript matches the audio")
        scores = [float(w["score"]) for w in words if w.get("score") is not None]
        if scores and float(np.mean(scores)) < MIN_MEAN_SCORE:
            raise AlignmentError(
                f"the transcript does not match the audio (mean WhisperX word score {np.mean(scores):.2f})",
                "check that the transcript is exactly what is spoken",
            )
        return self._to_track(words, duration, lang)

    def _to_track(self, words: list[dict], duration: float, lang: str) -> PhonemeTrack:
        timed = [(str(w["word"]), w.get("start"), w.get("end")) for w in words]
        if not any(s is not None and e is not None for _, s, e in timed):
            raise AlignmentError("WhisperX could not time any word of the transcript", "check the transcript")
        return espeak_into_words(timed, duration, lang, self.name)
