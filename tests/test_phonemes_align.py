"""Audio -> timestamped phonemes: pocketsphinx, espeak stretch, the WhisperX adapter (a fake module answering with made-up times), auto."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

from avatarsync.errors import AlignmentError, BackendUnavailable, InputError, LanguageError
from avatarsync.phonemes.align import available_aligners, get_aligner
from avatarsync.phonemes.align.evaluate import start_errors
from avatarsync.phonemes.align.sphinx import transcript_words
from avatarsync.phonemes.espeak import synthesize
from avatarsync.phonemes.pvm import is_pinyin
from avatarsync.phonemes.track import SILENCE

# not in the corpus pool, not in the bench
SENTENCES = [
    "Grandmother keeps her recipes in a wooden box.",
    "The pilot announced a short delay before takeoff.",
    "Seven students volunteered to clean the beach.",
]


@pytest.fixture(autouse=True)
def no_whisperx(monkeypatch):
    """Tests run as if whisperx and faster-whisper were absent unless they inject a fake
    (the offline ASR backend has its own tests: tests/test_phonemes_asr.py)."""
    monkeypatch.setitem(sys.modules, "whisperx", None)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    for k in ("AVATARSYNC_WHISPERX_MODEL", "AVATARSYNC_WHISPERX_ALIGN_MODEL", "AVATARSYNC_WHISPERX_MODEL_DIR",
              "AVATARSYNC_ASR_MODEL"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def sphinx():
    return get_aligner("pocketsphinx")


def test_pocketsphinx_recovers_espeak_timings(sphinx):
    errs = []
    for text, (voice, rate) in zip(SENTENCES, [(None, 160), ("+f3", 140), ("+m3", 200)]):
        syn = synthesize(text, voice=voice, rate=rate)
        track = sphinx.align(syn.audio, syn.sample_rate, text, "en")
        assert track.source == "pocketsphinx" and track.lang == "en"
        assert track.duration == pytest.approx(syn.track.duration)
        track.validate()
        assert track.units[0].start == 0 and track.units[-1].end == pytest.approx(track.duration)
        e = start_errors(syn.track, track)
        assert e.matched > 0.85
        errs.append(e.errors)
    mean = float(np.concatenate(errs).mean())
    assert mean < 0.040, f"mean start error {mean * 1000:.1f} ms"


def test_pocketsphinx_handles_padding_oov_words_and_resampling(sphinx):
    text = "Zorblax visited Quuxville in 2024."
    syn = synthesize(text)
    sr = syn.sample_rate
    noise = np.random.default_rng(1).normal(0, 0.002, int(0.6 * sr)).astype(np.float32)
    audio = np.concatenate([noise, syn.audio, noise])
    from avatarsync.phonemes.audio import resample

    audio16 = resample(audio, sr, 16000)
    track = sphinx.align(audio16, 16000, text, "en")
    speech = [u for u in track.units if u.symbol != SILENCE]
    assert speech[0].start == pytest.approx(0.6 + syn.track.units[1].start, abs=0.05)
    assert track.units[0].symbol == SILENCE and track.units[0].end > 0.55


def test_transcript_words():
    assert transcript_words("Don't stop—it's 9 o'clock, OK?") == ["don't", "stop", "it's", "9", "o'clock", "ok"]


def test_pocketsphinx_rejects_mismatching_transcripts(sphinx):
    syn = synthesize(SENTENCES[0])
    words = SENTENCES[0].rstrip(".").split()
    for wrong in (SENTENCES[1], " ".join(words[: len(words) // 2]), SENTENCES[0] + " and then some more words"):
        with pytest.raises(AlignmentError, match="does not match"):
            sphinx.align(syn.audio, syn.sample_rate, wrong, "en")
    with pytest.raises(AlignmentError, match="needs a transcript"):
        sphinx.align(syn.audio, syn.sample_rate, None, "en")
    with pytest.raises(AlignmentError, match="needs a transcript"):
        sphinx.align(syn.audio, syn.sample_rate, "   ", "en")
    with pytest.raises(LanguageError, match="pocketsphinx"):
        sphinx.align(syn.audio, syn.sample_rate, "你好", "zh")


def test_espeak_stretch_aligner_mandarin():
    text = "我们明天去北京"
    truth = synthesize(text, "zh", voice="+f2", rate=130)
    lead = np.zeros(int(0.4 * truth.sample_rate), np.float32)
    audio = np.concatenate([lead, truth.audio])
    track = get_aligner("espeak").align(audio, truth.sample_rate, text, "zh")
    track.validate()
    units = [u for u in track.units if u.symbol != SILENCE]
    true_units = [u for u in truth.track.units if u.symbol != SILENCE]
    assert [u.symbol for u in units] == [u.symbol for u in true_units] == ["wo3", "men5", "ming2", "tian1", "qu4",
                                                                          "bei3", "jing1"]
    assert all(is_pinyin(u.symbol) for u in units)
    err = np.mean([abs(a.start - (b.start + 0.4)) for a, b in zip(units, true_units)])
    assert err < 0.06
    with pytest.raises(AlignmentError, match="does not match"):
        get_aligner("espeak").align(audio, truth.sample_rate, text * 4, "zh")


def test_auto_picks_available_backends_and_says_which():
    syn = synthesize(SENTENCES[1])
    auto = get_aligner("auto")
    track = auto.align(syn.audio, syn.sample_rate, SENTENCES[1], "en")
    assert auto.used == "pocketsphinx" == track.source
    assert any(n.startswith("whisperx:") for n in auto.notes)
    zh = synthesize("你好世界", "zh")
    track = auto.align(zh.audio, zh.sample_rate, "你好世界", "zh")
    assert auto.used == "espeak" == track.source
    with pytest.raises(BackendUnavailable, match="no aligner"):
        auto.align(syn.audio, syn.sample_rate, None, "en")
    assert available_aligners() == ["pocketsphinx", "espeak", "phoneloop"]


def test_get_aligner_errors():
    with pytest.raises(InputError, match="unknown aligner"):
        get_aligner("kaldi")
    with pytest.raises(InputError, match="unknown aligner option"):
        get_aligner("espeak", bogus=1)
    with pytest.raises(BackendUnavailable, match="whisperx is not installed"):
        get_aligner("whisperx")


# ---- WhisperX contract, against a fake module --------------------------------------------------

def _fake_whisperx(calls: dict, words_for):
    """A stand-in for the whisperx API that AvatarSync calls (load_model, load_align_model, align)."""
    wx = types.ModuleType("whisperx")

    class Model:
        def transcribe(self, audio, batch_size=None, language=None):
            calls["transcribe"] = {"n": len(audio), "dtype": audio.dtype, "language": language}
            return {"segments": [{"text": calls["spoken"], "start": 0.0, "end": len(audio) / 16000}], "language": language}

    def load_model(name, device, compute_type=None, language=None, download_root=None, local_files_only=False):
        calls["load_model"] = dict(name=name, device=device, language=language, download_root=download_root,
                                   local_files_only=local_files_only, offline=os.environ.get("HF_HUB_OFFLINE"))
        return Model()

    def load_align_model(language_code, device, model_name=None, model_dir=None):
        calls["load_align_model"] = dict(language_code=language_code, model_name=model_name, model_dir=model_dir,
                                         offline=os.environ.get("HF_HUB_OFFLINE"))
        return object(), {"language": language_code}

    def align(segments, model, metadata, audio, device, return_char_alignments=False):
        calls["align"] = {"segments": segments, "n": len(audio)}
        words = words_for(" ".join(s["text"] for s in segments))
        return {"segments": [{"words": words}], "word_segments": words}

    wx.load_model, wx.load_align_model, wx.align = load_model, load_align_model, align
    return wx


def _made_up_words(tokens, duration, lead=0.2):
    """WhisperX-style word dicts at evenly spaced times of our own (not the speech's), so the tests check
    what the adapter does with WhisperX's answer, not how close a fake is to the truth."""
    step = (duration - 2 * lead) / len(tokens)
    return [{"word": t, "start": round(lead + i * step, 3), "end": round(lead + (i + 0.5) * step, 3), "score": 0.9}
            for i, t in enumerate(tokens)]


def _near_a_boundary(track, t, tol=2e-3):
    return any(abs(u.start - t) < tol or abs(u.end - t) < tol for u in track.units)


def test_whisperx_english_contract(monkeypatch):
    text = SENTENCES[2]
    truth = synthesize(text, "en", rate=150)
    tokens = text.split()
    words = _made_up_words(tokens, truth.track.duration)
    words[3].pop("start")  # WhisperX leaves some words untimed: interpolated
    calls = {"spoken": text}
    monkeypatch.setitem(sys.modules, "whisperx", _fake_whisperx(calls, lambda _: words))
    assert get_aligner("auto").candidates(text, "en")[0] == "pocketsphinx"  # no local model configured
    assert "whisperx" not in available_aligners()
    monkeypatch.setenv("AVATARSYNC_WHISPERX_ALIGN_MODEL", "/models/wav2vec2-en")
    assert available_aligners()[0] == "whisperx"
    auto = get_aligner("auto", asr_model="/models/faster-whisper-small", model_dir="/models", device="cpu")
    track = auto.align(truth.audio, truth.sample_rate, None, "en")  # no transcript: ASR then alignment
    assert auto.used == "whisperx" == track.source
    assert calls["load_model"] == dict(name="/models/faster-whisper-small", device="cpu", language="en",
                                       download_root="/models", local_files_only=True, offline="1")
    assert calls["load_align_model"]["model_name"] == "/models/wav2vec2-en"
    assert calls["load_align_model"]["offline"] == "1" and os.environ.get("HF_HUB_OFFLINE") is None
    n16 = round(len(truth.audio) * 16000 / truth.sample_rate)
    assert abs(calls["transcribe"]["n"] - n16) <= 1 and calls["transcribe"]["dtype"] == np.float32
    track.validate()
    spoken = [u for u in track.units if u.symbol != SILENCE]
    assert len(spoken) == len([u for u in truth.track.units if u.symbol != SILENCE])  # the transcript's phones
    assert all(_near_a_boundary(track, w["end"]) for w in words if "start" in w)  # WhisperX's word ends end phones
    assert _near_a_boundary(track, words[2]["end"]) and _near_a_boundary(track, words[4]["start"])
    assert spoken[0].start == pytest.approx(words[0]["start"], abs=2e-3)
    assert spoken[-1].end == pytest.approx(words[-1]["end"], abs=2e-3)
    between = [u for u in spoken if words[2]["end"] - 1e-3 <= u.start and u.end <= words[4]["start"] + 1e-3]
    assert [u.symbol for u in between] == ["t", "ə"]  # the untimed word fills the time between its neighbours
    # with a transcript WhisperX only aligns it
    calls.clear()
    calls["spoken"] = text
    track = get_aligner("whisperx").align(truth.audio, truth.sample_rate, text, "en")
    assert "load_model" not in calls and calls["align"]["segments"][0]["text"] == text


def test_whisperx_mandarin_contract_and_errors(monkeypatch):
    text = "今天天气很好"
    truth = synthesize(text, "zh")
    words = _made_up_words(list(text), truth.track.duration)
    calls = {"spoken": text}
    monkeypatch.setitem(sys.modules, "whisperx", _fake_whisperx(calls, lambda _: words))
    wx = get_aligner("whisperx", align_model="/models/wav2vec2-zh")
    track = wx.align(truth.audio, truth.sample_rate, text, "zh")
    got = [u for u in track.units if u.symbol != SILENCE]
    assert [u.symbol for u in got] == ["jin1", "tian1", "tian1", "qi4", "hen3", "hao3"]
    assert [u.end for u in got] == pytest.approx([w["end"] for w in words], abs=2e-3)  # one syllable a word
    assert calls["load_align_model"]["language_code"] == "zh"
    with pytest.raises(BackendUnavailable, match="ASR model"):
        wx.align(truth.audio, truth.sample_rate, None, "zh")  # no ASR model given
    bad = [dict(w, score=0.01) for w in words]
    monkeypatch.setitem(sys.modules, "whisperx", _fake_whisperx(calls, lambda _: bad))
    with pytest.raises(AlignmentError, match="does not match"):
        wx.align(truth.audio, truth.sample_rate, text, "zh")
