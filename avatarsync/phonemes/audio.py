"""Audio for the phoneme front end: load with the bad-input checks, resample, find the speech."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from ..errors import AudioError

MIN_DURATION = 0.2  # seconds
SILENCE_DBFS = -50.0  # loudest 50 ms window below this -> silent


def check_audio(audio: np.ndarray, sample_rate: int, name: str = "the audio") -> np.ndarray:
    """Validate speech audio; returns it as contiguous float32 mono. Raises AudioError."""
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] <= 8 else a.mean(axis=0)
    if a.ndim != 1:
        raise AudioError(f"{name} has shape {np.shape(audio)}, expected mono samples", "pass a 1-D array")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    a = np.ascontiguousarray(a, dtype=np.float32)
    if int(sample_rate) <= 0:
        raise AudioError(f"{name} has an invalid sample rate {sample_rate}", "give the rate in Hz, e.g. 16000")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{name} contains NaN or infinite samples (corrupt data)", "re-export the audio")
    dur = len(a) / sample_rate
    if dur < MIN_DURATION:
        raise AudioError(
            f"{name} is {dur:.3f} s long, shorter than the {MIN_DURATION} s minimum", "give at least a word of speech"
        )
    if loudest_dbfs(a, sample_rate) < SILENCE_DBFS:
        raise AudioError(
            f"{name} is silent (no 50 ms window louder than {SILENCE_DBFS:.0f} dBFS)",
            "check the recording level or the file",
        )
    return a


def loudest_dbfs(audio: np.ndarray, sample_rate: int, window: float = 0.05) -> float:
    """RMS level in dBFS of the loudest ``window``-second stretch."""
    n = max(1, int(window * sample_rate))
    if len(audio) <= n:
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    else:
        c = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
        rms = float(np.sqrt(np.max(c[n:] - c[:-n]) / n))
    return 20 * np.log10(rms + 1e-12)


def _decode_with_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioError(f"{path} has no audio stream", "give a file with speech audio")
        chunks, sr = [], None
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            sr = frame.sample_rate
            if arr.ndim == 2 and frame.format.is_planar:
                arr = arr.mean(axis=0)
            elif arr.ndim == 2:
                arr = arr.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if np.issubdtype(arr.dtype, np.integer):
                arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
            chunks.append(arr.astype(np.float32))
    if not chunks or sr is None:
        raise AudioError(f"{path} contains no decodable audio", "re-export the file")
    return np.concatenate(chunks), int(sr)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read speech audio as (float32 mono in -1..1, sample rate), with the bad-input checks.

    WAV/FLAC/OGG/MP3 go through soundfile; other containers (MP4, M4A) through PyAV
    when installed. Raises AudioError for a missing, unreadable or corrupt file,
    audio under 0.2 s, and silent audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist", "check the path")
    try:
        import soundfile as sf

        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except Exception as sf_error:  # libsndfile cannot read it: try FFmpeg
        try:
            audio, sr = _decode_with_av(path)
        except AudioError:
            raise
        except Exception:
            raise AudioError(
                f"cannot decode audio file {path} ({sf_error})", "give a WAV, FLAC, OGG or MP3 file"
            ) from None
    return check_audio(audio, int(sr), name=f"audio file {path.name}"), int(sr)


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling to ``sr_to`` (float32 out)."""
    if sr_from == sr_to:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(sr_from), int(sr_to))
    return resample_poly(audio, sr_to // g, sr_from // g).astype(np.float32)


def speech_region(audio: np.ndarray, sample_rate: int, floor_db: float = 35.0) -> tuple[float, float]:
    """(start, end) in seconds of the span between the first and last frame with speech energy.

    A 20 ms frame counts as speech when its RMS is within ``floor_db`` of the
    loudest frame and 6 dB above the quietest tenth (the noise floor).
    """
    hop, win = int(0.01 * sample_rate), int(0.02 * sample_rate)
    if len(audio) < win:
        return 0.0, len(audio) / sample_rate
    c = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    starts = np.arange(0, len(audio) - win + 1, hop)
    db = 10 * np.log10((c[starts + win] - c[starts]) / win + 1e-12)
    thr = max(db.max() - floor_db, np.percentile(db, 10) + 6.0)
    idx = np.flatnonzero(db >= thr)
    if not len(idx):
        return 0.0, len(audio) / sample_rate
    return starts[idx[0]] / sample_rate, min(len(audio), starts[idx[-1]] + win) / sample_rate

