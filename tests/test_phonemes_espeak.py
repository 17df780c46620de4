"""espeak-ng synthesis with exact phoneme timings: English, Mandarin, options, determinism, bad input."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from avatarsync.errors import InputError, LanguageError
from avatarsync.phonemes import text_to_track
from avatarsync.phonemes.espeak import Synthesis, synthesize, synthesize_detailed
from avatarsync.phonemes.pvm import is_pinyin
from avatarsync.phonemes.track import SILENCE

EN = "Peace and development are the themes."


def _contiguous(units, duration):
    assert units[0].start == 0.0
    assert units[-1].end == pytest.approx(duration, abs=1e-9)
    for a, b in zip(units, units[1:]):
        assert b.start == pytest.approx(a.end, abs=1e-9)
        assert b.end > b.start


def test_english_synthesis_is_a_valid_track():
    syn = synthesize(EN)
    assert isinstance(syn, Synthesis)
    assert syn.audio.dtype == np.float32 and syn.audio.ndim == 1
    assert 0.05 < np.abs(syn.audio).max() <= 1.0
    t = syn.track
    assert t.duration == len(syn.audio) / syn.sample_rate
    assert t.source == "espeak" and t.lang == "en"
    t.validate()
    assert t.units == t.phones  # English units are phones
    assert t.units[0].symbol == SILENCE and t.units[-1].symbol == SILENCE
    assert t.units[0].viseme == "rest" and t.units[0].end >= 0.1  # LEAD_IN
    assert t.units[-1].duration > 0.2  # espeak's end pause
    _contiguous(t.units, t.duration)
    symbols = [u.symbol for u in t.units if u.symbol != SILENCE]
    assert symbols[:4] == ["p", "iː", "s", "æ"]  # "peace and", stress marks dropped
    assert {"θ", "ð", "m", "z"} <= set(symbols)


def test_phone_times_match_the_audio():
    """Pauses are silent and speech phones carry energy: timings are those of the waveform."""
    syn = synthesize("Hello, world. This is a test.")
    sr = syn.sample_rate
    inner_sil = [u for u in syn.track.units[1:-1] if u.symbol == SILENCE]
    assert inner_sil, "the comma and full stop must give pauses"
    for u in inner_sil:
        seg = syn.audio[int(u.start * sr) + 2: int(u.end * sr) - 2]
        assert np.abs(seg).max() < 1e-3
    vowels = [u for u in syn.track.units if u.viseme.endswith("vowel")]
    for u in vowels:
        seg = syn.audio[int(u.start * sr): int(u.end * sr)]
        assert np.sqrt(np.mean(seg ** 2)) > 0.01


def test_deterministic_across_calls_and_threads():
    a = synthesize(EN)
    synthesize("Something else, entirely.", voice="+f3", rate=220, pitch=80)
    synthesize("你好", "zh")
    b = synthesize(EN)
    assert np.array_equal(a.audio, b.audio)
    assert a.track.to_dict() == b.track.to_dict()
    out = {}

    def work(i):
        out[i] = synthesize(EN) if i % 2 else synthesize("和平", "zh")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(np.array_equal(out[i].audio, a.audio) for i in (1, 3, 5))
    assert all(np.array_equal(out[i].audio, out[0].audio) for i in (2, 4))


def test_voice_rate_pitch_options():
    base = synthesize(EN)
    fast, slow = synthesize(EN, rate=260), synthesize(EN, rate=100)
    assert fast.track.duration < base.track.duration < slow.track.duration
    high = synthesize(EN, pitch=90)
    assert not np.array_equal(high.audio[:6000], base.audio[:6000])
    female = synthesize(EN, voice="+f3")
    assert not np.array_equal(female.audio, base.audio)
    gb = synthesize("Tomato", voice="en-gb")
    gb.track.validate()
    with pytest.raises(InputError, match="voice"):
        synthesize(EN, voice="no-such-voice")
    with pytest.raises(InputError, match="rate"):
        synthesize(EN, rate=5)
    with pytest.raises(InputError, match="pitch"):
        synthesize(EN, pitch=101)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("你好，世界。", ["ni2", "hao3", SILENCE, "shi4", "jie4"]),
        ("和平与发展是时代的主题。", ["he2", "ping2", "yu3", "fa1", "zhan3", "shi4", "shi2", "dai4", "de5", "zhu3", "ti2"]),
        ("我有3本书", ["wo3", "you3", "san1", "ben3", "shu1"]),
        ("银行行长很忙", ["yin2", "hang2", "hang2", "zhang3", "hen3", "mang2"]),
        ("ni3 hao3", ["ni3", "hao3"]),
    ],
)
def test_mandarin_units_are_pinyin_syllables(text, expected):
    syn = synthesize(text, "zh")
    t = syn.track
    t.validate()
    assert t.lang == "zh" and t.duration == len(syn.audio) / syn.sample_rate
    inner = [u.symbol for u in t.units]
    while inner and inner[0] == SILENCE:
        inner.pop(0)
    while inner and inner[-1] == SILENCE:
        inner.pop()
    assert inner == expected
    for u in t.units:
        assert u.symbol == SILENCE or is_pinyin(u.symbol)
        assert u.end > u.start
        if u.symbol != SILENCE:
            assert 0.08 < u.duration < 0.6
            inside = [p for p in t.phones if p.start >= u.start - 1e-9 and p.end <= u.end + 1e-9]
            assert inside and inside[0].start == pytest.approx(u.start) and inside[-1].end == pytest.approx(u.end)
    _contiguous(t.units, t.duration)


def test_mandarin_iong_and_groups():
    """espeak lacks 'iong'; the syllable is still one unit with rounded phones."""
    syn, labels, groups = synthesize_detailed("熊猫很穷", "zh")
    assert labels == ["xiong2", "mao1", "hen3", "qiong2"]
    units = [u for u in syn.track.units if u.symbol != SILENCE]
    assert [u.symbol for u in units] == labels
    first = [p.symbol for p, g in zip(syn.track.phones, groups) if g == 0]
    assert first[0] == "ɕ" and "ʊŋ" in first


def test_text_to_track_validates_input():
    syn = text_to_track("Hello there", "en", rate=180)
    syn.track.validate()
    with pytest.raises(InputError, match="empty"):
        text_to_track("   ")
    with pytest.raises(InputError, match="empty"):
        text_to_track("")
    with pytest.raises(LanguageError, match="en, zh, fr"):
        text_to_track("Guten Tag", "de")
    with pytest.raises(InputError, match="speed"):
        text_to_track("Hello", speed=2)
    with pytest.raises(InputError, match="nothing to speak"):
        text_to_track("，。！", "zh")
    with pytest.raises(InputError, match="nothing to speak"):
        text_to_track("...", "en")


def test_library_not_loaded_at_import():
    code = (
        "import avatarsync.phonemes, avatarsync.phonemes.espeak, avatarsync.phonemes.align, "
        "avatarsync.phonemes.command\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libespeak-ng' not in maps, 'loaded at import'\n"
        "from avatarsync.phonemes.espeak import synthesize; synthesize('hi')\n"
        "assert 'libespeak-ng' not in open('/proc/self/maps').read(), 'left loaded'\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc/self/maps")
    subprocess.run([sys.executable, "-c", code], check=True)
