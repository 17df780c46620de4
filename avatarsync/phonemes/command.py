"""The ``avatarsync phonemes`` subcommand: text or audio -> timestamped units (table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError
from .track import PhonemeTrack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``avatarsync phonemes``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="script to speak; units and timings come from espeak-ng synthesis")
    src.add_argument("--text-file", metavar="PATH", help="read the script from a UTF-8 text file")
    src.add_argument("--audio", metavar="PATH", help="speech audio (WAV/FLAC/MP3/...) to align")
    src.add_argument("--list-voices", action="store_true",
                     help="list the installed voices for --text (Piper and espeak-ng) and exit")
    parser.add_argument("--lang", default="en",
                        help="language code: en (English) or zh (Mandarin Chinese); for --audio also 'any': "
                             "phone recognition, so the mouth follows speech in any language")
    speech = parser.add_argument_group("text input (voice)")
    speech.add_argument("--voice", default=None,
                        help="voice for --text: a Piper voice (en_US-joe-medium, alias joe), an espeak-ng voice "
                             "(en-us, en-gb, en-us+f3) or an espeak-ng variant alone (+m3); 'piper:' / 'espeak:' "
                             "prefixes pick the backend; unset: the language's natural Piper voice when installed, "
                             "else espeak-ng (en-us, cmn-latn-pinyin); see --list-voices")
    speech.add_argument("--rate", type=int, default=160, help="speaking rate in words per minute (80..450)")
    speech.add_argument("--pitch", type=int, default=50, help="voice pitch (0..100; espeak-ng voices only)")
    speech.add_argument("--save-wav", metavar="PATH", help="also write the synthesized speech as a WAV file")
    al = parser.add_argument_group("audio input (alignment)")
    tr = al.add_mutually_exclusive_group()
    tr.add_argument("--transcript", help="what is said in the audio (needed by pocketsphinx and espeak aligners; "
                                         "without it the offline Whisper recognizer supplies the words)")
    tr.add_argument("--transcript-file", metavar="PATH", help="read the transcript from a UTF-8 text file")
    al.add_argument("--aligner", default="auto",
                    choices=["auto", "whisperx", "pocketsphinx", "whisper", "espeak", "phoneloop"],
                    help="alignment backend; auto picks the best available and reports it on stderr "
                         "(phoneloop: pocketsphinx phone recognition, what --lang any uses)")
    al.add_argument("--asr-model", metavar="DIR", default=None,
                    help="CTranslate2 Whisper folder for the whisper aligner (env AVATARSYNC_ASR_MODEL; "
                         "default: the installed multilingual Whisper base)")
    al.add_argument("--whisperx-model", metavar="NAME_OR_PATH", default=None,
                    help="local faster-whisper ASR model for whisperx (env AVATARSYNC_WHISPERX_MODEL)")
    al.add_argument("--whisperx-align-model", metavar="NAME_OR_PATH", default=None,
                    help="local wav2vec2 alignment model for whisperx (env AVATARSYNC_WHISPERX_ALIGN_MODEL)")
    al.add_argument("--whisperx-model-dir", metavar="PATH", default=None,
                    help="cache folder holding the whisperx models (env AVATARSYNC_WHISPERX_MODEL_DIR)")
    al.add_argument("--device", default="cpu", help="device for whisperx and the whisper recognizer, e.g. cpu or cuda")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the whole track as JSON instead of a table")
    out.add_argument("--level", choices=["units", "phones"], default="units",
                     help="table rows: character-level units (pinyin syllables for zh) or phones")
    out.add_argument("--pvm", metavar="PATH", default=None,
                     help="PVM override file (TSV phoneme<TAB>viseme, or JSON) merged over the shipped table")
    out.add_argument("--save-track", metavar="PATH", help="also write the track as JSON to this file")


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the {what} file {path}: {e}", "give a UTF-8 text file") from e


def format_table(track: PhonemeTrack, level: str = "units") -> str:
    """A fixed-width table: index, symbol, start, end (seconds), viseme."""
    rows = getattr(track, level)
    width = max([len("unit")] + [len(u.symbol) for u in rows])
    lines = [f"{'#':>4}  {'unit':<{width}}  {'start':>7}  {'end':>7}  viseme"]
    for i, u in enumerate(rows):
        lines.append(f"{i:>4}  {u.symbol:<{width}}  {u.start:7.3f}  {u.end:7.3f}  {u.viseme}")
    lines.append(f"# {len(rows)} {level}, {track.duration:.3f} s, lang {track.lang}, source {track.source}")
    return "\n".join(lines)


def _from_text(args: argparse.Namespace):
    from . import text_to_track

    text = args.text if args.text is not None else _read_text(args.text_file, "text")
    syn = text_to_track(text, args.lang, voice=args.voice, rate=args.rate, pitch=args.pitch)
    print(f"phonemes from {syn.track.source} synthesis, voice {syn.voice} ({syn.track.duration:.2f} s of speech)",
          file=sys.stderr)
    return syn.track, syn


def _from_audio(args: argparse.Namespace) -> PhonemeTrack:
    from .align import get_aligner
    from .audio import load_audio
    from .lang import normalize_lang

    lang = "any" if args.lang.strip().lower() == "any" else normalize_lang(args.lang)
    transcript = args.transcript
    if args.transcript_file:
        transcript = _read_text(args.transcript_file, "transcript")
    if transcript is not None and not transcript.strip():
        raise InputError("the transcript is empty", "give the words spoken in the audio, or leave --transcript out")
    audio, sr = load_audio(args.audio)
    opts = {"device": args.device}
    for key, val in (("asr_model", args.whisperx_model), ("align_model", args.whisperx_align_model),
                     ("model_dir", args.whisperx_model_dir), ("asr_model_dir", args.asr_model)):
        if val:
            opts[key] = val
    if args.voice:
        opts["voice"] = args.voice
    aligner = get_aligner(args.aligner, **opts)
    from .align.long import align_audio

    track = align_audio(aligner, audio, sr, transcript, lang, progress=sys.stderr.isatty())
    used = getattr(aligner, "used", None) or track.source
    print(f"aligner: {used}" + (f" (auto; {'; '.join(aligner.notes)})"
                                 if args.aligner == "auto" and getattr(aligner, "notes", None) else ""),
          file=sys.stderr)
    if getattr(aligner, "pieces", None):
        print(f"long audio: aligned in {len(aligner.pieces)} pieces split at pauses "
              f"({', '.join(f'{a:.1f}-{b:.1f}' for a, b in aligner.pieces)} s)", file=sys.stderr)
    heard = recognized(aligner) if transcript is None else None
    return track, heard


def recognized(aligner) -> dict | None:
    """What the speech recognizer heard and the final word times (None when no recognizer ran)."""
    backend = getattr(aligner, "_instances", {}).get(getattr(aligner, "used", None), aligner)
    rec = getattr(backend, "recognition", None)
    if rec is None:
        return None
    return {"text": rec.text, "language": rec.language, "language_probability": round(rec.language_probability, 3),
            "method": getattr(backend, "method", ""),
            "words": [{"word": w.word, "start": w.start, "end": w.end} for w in getattr(backend, "words", [])]}


def format_words(heard: dict) -> str:
    """The recognized words as a fixed-width table (word, start, end) under a line saying what was heard."""
    words = heard["words"]
    width = max([len("word")] + [len(w["word"]) for w in words])
    lines = [f"{'#':>4}  {'word':<{width}}  {'start':>7}  {'end':>7}"]
    lines += [f"{i:>4}  {w['word']:<{width}}  {w['start']:7.3f}  {w['end']:7.3f}" for i, w in enumerate(words)]
    lines.append(f"# {len(words)} words recognized ({heard['language']}, p {heard['language_probability']:.2f}): "
                 f"{heard['text']!r}; timed by {heard['method']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``avatarsync phonemes``; prints the track and returns 0 (errors raise AvatarSyncError)."""
    if getattr(args, "list_voices", False):
        from ..voices import format_voices

        print(format_voices())
        return 0
    if args.audio is None and (args.transcript is not None or args.transcript_file):
        raise InputError("--transcript goes with --audio", "use --text alone to speak a script")
    if args.audio is not None and args.save_wav:
        raise InputError("--save-wav goes with --text", "the audio input is already a file")
    pvm = None
    if args.pvm:  # read the override first: a bad file fails before any work
        from .pvm import load_pvm

        pvm = load_pvm(args.pvm)
    syn, heard = None, None
    if args.audio is not None:
        track, heard = _from_audio(args)
    else:
        track, syn = _from_text(args)
    if pvm is not None:
        track = pvm.apply(track)
    track.validate()
    # every check has passed: only now write files, each atomically
    from ..io import atomic_output, write_wav

    if args.save_track:
        with atomic_output(args.save_track) as tmp:
            track.save(tmp)
    if args.save_wav and syn is not None:
        write_wav(args.save_wav, syn.audio, syn.sample_rate)
    if args.json:
        print(json.dumps({**track.to_dict(), **({"recognized": heard} if heard else {})}, ensure_ascii=False))
    else:
        if heard:
            print(format_words(heard) + "\n")
        print(format_table(track, args.level))
    return 0
