"""``avatarsync phonemes``: table and JSON output, audio alignment, clear errors, no partial files."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from avatarsync.cli import build_parser, main
from avatarsync.phonemes.espeak import synthesize
from avatarsync.phonemes.track import PhonemeTrack

ACCEPT = "Peace and development are the themes"


@pytest.fixture(autouse=True)
def no_whisperx(monkeypatch):
    """As if whisperx and faster-whisper were absent (the offline ASR path: tests/test_phonemes_asr.py)."""
    monkeypatch.setitem(sys.modules, "whisperx", None)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    monkeypatch.delenv("AVATARSYNC_WHISPERX_ALIGN_MODEL", raising=False)
    monkeypatch.delenv("AVATARSYNC_ASR_MODEL", raising=False)


def _run(capsys, *argv):
    rc = main(["phonemes", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_acceptance_json_units_cover_the_synthesized_audio(capsys):
    rc, out, err = _run(capsys, "--text", ACCEPT, "--lang", "en", "--voice", "en-us", "--json")
    assert rc == 0 and "espeak" in err
    d = json.loads(out)
    syn = synthesize(ACCEPT, "en")
    assert d["duration"] == pytest.approx(len(syn.audio) / syn.sample_rate)
    units = d["units"]
    assert units[0]["start"] == 0.0 and units[-1]["end"] == pytest.approx(d["duration"])
    for a, b in zip(units, units[1:]):
        assert b["start"] >= a["start"] and b["start"] == pytest.approx(a["end"])  # monotonic, no overlap, no gap
        assert b["end"] > b["start"]
    PhonemeTrack.from_dict(d).validate()
    assert [u["symbol"] for u in units][:3] == ["sil", "p", "iː"]


def test_table_output_and_levels(capsys):
    rc, out, _ = _run(capsys, "--text", "你好，世界", "--lang", "zh")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["#", "unit", "start", "end", "viseme"]
    symbols = [ln.split()[1] for ln in lines[1:-1]]
    assert symbols == ["sil", "ni2", "hao3", "sil", "shi4", "jie4", "sil"]
    assert lines[-1].startswith("# 7 units")
    rc, out, _ = _run(capsys, "--text", "你好", "--lang", "zh", "--level", "phones",
                      "--voice", "espeak:cmn-latn-pinyin")  # espeak's symbols, whichever voice is the default
    assert [ln.split()[1] for ln in out.splitlines()[1:-1]] == ["sil", "n", "i", "χ", "ɑu", "sil"]


def test_audio_alignment_and_saved_files(tmp_path, capsys):
    text = "The pilot announced a short delay."
    wav, track_json = tmp_path / "say.wav", tmp_path / "say.json"
    rc, _, _ = _run(capsys, "--text", text, "--save-wav", str(wav), "--save-track", str(track_json), "--rate", "170")
    assert rc == 0
    audio, sr = sf.read(wav)
    saved = PhonemeTrack.load(track_json)
    assert saved.duration == pytest.approx(len(audio) / sr)
    rc, out, err = _run(capsys, "--audio", str(wav), "--transcript", text, "--json")
    assert rc == 0 and "aligner: pocketsphinx" in err
    aligned = PhonemeTrack.from_dict(json.loads(out))
    aligned.validate()
    assert aligned.source == "pocketsphinx" and aligned.duration == pytest.approx(saved.duration)
    rc, out, err = _run(capsys, "--audio", str(wav), "--transcript", text, "--aligner", "espeak")
    assert rc == 0 and "aligner: espeak" in err and "source espeak" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--text", "   "], "the text is empty"),
        (["--text", "hello", "--lang", "de"], "unsupported language code 'de'"),
        (["--text", "hello", "--rate", "1000"], "rate 1000 is out of range"),
        (["--text", "hello", "--transcript", "hello"], "--transcript goes with --audio"),
        (["--audio", "{dir}/missing.wav"], "does not exist"),
        (["--audio", "{dir}/corrupt.wav", "--transcript", "hi"], "cannot decode"),
        (["--audio", "{dir}/short.wav", "--transcript", "hi"], "shorter than"),
        (["--audio", "{dir}/silent.wav", "--transcript", "hi"], "silent"),
        (["--audio", "{dir}/speech.wav", "--transcript", "completely different words here"], "does not match"),
        (["--audio", "{dir}/speech.wav"], "no aligner can handle"),
        (["--audio", "{dir}/speech.wav", "--transcript", "  "], "transcript is empty"),
        (["--text", "hi", "--pvm", "{dir}/missing.tsv"], "cannot read PVM"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 50)
    sf.write(tmp_path / "short.wav", np.full(1600, 0.2, np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    syn = synthesize("Seven students volunteered to clean the beach.")
    sf.write(tmp_path / "speech.wav", syn.audio, syn.sample_rate)
    out_json = tmp_path / "out" / "track.json"
    out_json.parent.mkdir()
    argv = [a.format(dir=tmp_path) for a in argv] + ["--save-track", str(out_json)]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and "hint: " in err
    assert list(out_json.parent.iterdir()) == []  # nothing half-written


def test_pvm_override_and_help_texts(tmp_path, capsys):
    f = tmp_path / "pvm.tsv"
    f.write_text("p\trest\n", encoding="utf-8")
    rc, out, _ = _run(capsys, "--text", "pop", "--json", "--pvm", str(f))
    assert rc == 0
    assert {u["viseme"] for u in json.loads(out)["units"] if u["symbol"] == "p"} == {"rest"}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["phonemes"]
    for action in sub._actions:
        assert action.help and action.help.strip(), action.option_strings
