"""Loading speech audio: the bad-input checks, resampling, finding the speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from avatarsync.errors import AudioError
from avatarsync.phonemes.audio import check_audio, load_audio, resample, speech_region
from avatarsync.phonemes.espeak import synthesize


def _tone(seconds: float, sr: int = 16000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_load_valid_stereo_int16(tmp_path):
    x = _tone(0.5)
    stereo = np.stack([x, x * 0.5], axis=1)
    p = tmp_path / "s.wav"
    sf.write(p, stereo, 16000, subtype="PCM_16")
    audio, sr = load_audio(p)
    assert sr == 16000 and audio.dtype == np.float32 and audio.shape == (8000,)
    assert np.allclose(audio, x * 0.75, atol=2e-4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "cannot decode"),
        (lambda p: p.write_bytes(b""), "cannot decode"),
        (lambda p: sf.write(p, _tone(0.1), 16000), "shorter than the 0.2 s"),
        (lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), "silent"),
        (lambda p: sf.write(p, np.full(16000, 1e-4, np.float32), 16000), "silent"),
    ],
)
def test_bad_audio_files(tmp_path, make, message):
    p = tmp_path / "a.wav"
    make(p)
    with pytest.raises(AudioError, match=message):
        load_audio(p)


def test_check_audio_arrays():
    with pytest.raises(AudioError, match="NaN"):
        check_audio(np.full(8000, np.nan, np.float32), 16000)
    with pytest.raises(AudioError, match="shape"):
        check_audio(np.zeros((2, 3, 4)), 16000)
    ints = (_tone(0.3) * 32767).astype(np.int16)
    out = check_audio(ints, 16000)
    assert out.dtype == np.float32 and np.abs(out).max() == pytest.approx(0.3, abs=1e-3)
    check_audio(_tone(0.2), 16000)  # exactly the minimum is fine


def test_resample_and_speech_region():
    syn = synthesize("Hello there.")
    pad = np.zeros(int(0.5 * syn.sample_rate), np.float32)
    x = np.concatenate([pad, syn.audio, pad])
    first = next(u for u in syn.track.units if u.symbol != "sil")
    last = [u for u in syn.track.units if u.symbol != "sil"][-1]
    s0, s1 = speech_region(x, syn.sample_rate)
    assert abs(s0 - (0.5 + first.start)) < 0.03
    assert abs(s1 - (0.5 + last.end)) < 0.05
    y = resample(x, syn.sample_rate, 16000)
    assert y.dtype == np.float32 and abs(len(y) - len(x) * 16000 / syn.sample_rate) <= 1
    r0, r1 = speech_region(y, 16000)
    assert abs(r0 - s0) < 0.02 and abs(r1 - s1) < 0.02
