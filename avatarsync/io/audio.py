"""WAV writing (atomic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .video import atomic_output


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV."""
    import soundfile as sf

    with atomic_output(path) as tmp:
        sf.write(str(tmp), np.clip(np.asarray(audio, np.float32), -1, 1), int(sample_rate), subtype="PCM_16", format="WAV")
    return Path(path)
