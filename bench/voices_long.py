"""Benchmark of the natural voice (Piper) and of long recordings.

1. ``voice``: 10 English sentences written for this bench (not in the corpus pools), spoken by the
   default English voice (Piper en_US-joe-medium when installed). Reported: synthesis seconds of
   compute per second of speech; the word error rate of the offline Whisper recognizer (language
   detected, not forced) against the text, words normalised alike; and how far pocketsphinx's forced
   alignment of the known text puts each phone from the time Piper's own durations give it (each
   Piper phone matched to the nearest pocketsphinx phone of the same symbol within 150 ms).
2. ``long``: a 60 s recording made by concatenating the audio of GRID s4 clips (../shared/data/grid,
   else the committed tests/data/grid_s1 clips, repeated), lip-synced with
   ``avatarsync speak --audio`` (no transcript: recognized piece by piece, split at pauses) in a
   child process: wall time, peak resident memory (the child's ru_maxrss), the pieces, and the
   video's length against the audio's. ``--no-video`` runs only the phoneme stage.

Run: python bench/voices_long.py [voice] [long] [--seconds 60] [--no-video]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "The quiet river carried small boats past the old mill.",
    "Please bring the blue folder to the meeting tomorrow morning.",
    "A warm breeze moved through the open kitchen window.",
    "Seven children painted a bright mural on the school wall.",
    "My neighbor fixed the broken fence before the storm arrived.",
    "We watched the sun go down behind the distant hills.",
    "The library opens at nine and closes late on Fridays.",
    "She poured fresh coffee and read the morning paper.",
    "Thick fog covered the harbor until almost noon.",
    "He forgot his umbrella and walked home in the rain.",
]
_WORD = re.compile(r"[a-z0-9']+")


_DIGITS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> list[str]:
    """Lower-case words, single digits spelled out (Whisper writes "9" for "nine")."""
    out = _WORD.findall(text.lower().replace("’", "'"))
    return [_DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in out]


def edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def bench_voice() -> dict:
    from avatarsync.phonemes.align.asr import WhisperRecognizer
    from avatarsync.phonemes.align.sphinx import PocketsphinxAligner
    from avatarsync.voices import default_voice, synthesize

    voice = default_voice("en")
    rec, ps = WhisperRecognizer(), PocketsphinxAligner()
    errors = ref = 0
    synth_s = speech_s = 0.0
    diffs, matched, total = [], 0, 0
    rows = []
    for text in SENTENCES:
        t = time.perf_counter()
        syn = synthesize(text, "en")
        synth_s += time.perf_counter() - t
        speech_s += len(syn.audio) / syn.sample_rate
        heard = rec.recognize(syn.audio, syn.sample_rate, None)
        e = edit_distance(words(text), words(heard.text))
        errors += e
        ref += len(words(text))
        rows.append({"text": text, "heard": heard.text, "language": heard.language, "errors": e})
        aligned = ps.align(syn.audio, syn.sample_rate, text, "en")
        sphinx = [(u.symbol, u.start) for u in aligned.phones if u.symbol != "sil"]
        for u in syn.track.phones:
            if u.symbol == "sil":
                continue
            total += 1
            near = [abs(s - u.start) for sym, s in sphinx if sym == u.symbol and abs(s - u.start) < 0.15]
            if near:
                matched += 1
                diffs.append(min(near))
    diffs_ms = np.asarray(diffs) * 1000
    return {
        "voice": voice, "sentences": len(SENTENCES), "wer": errors / max(ref, 1),
        "synthesis_s_per_s_speech": synth_s / speech_s, "speech_seconds": speech_s,
        "phones": total, "phones_matched": matched,
        "phone_start_vs_pocketsphinx_ms": {"mean": float(diffs_ms.mean()), "median": float(np.median(diffs_ms)),
                                           "p90": float(np.percentile(diffs_ms, 90))},
        "sentences_detail": rows,
    }


def long_recording(seconds: float, out: Path) -> Path:
    from avatarsync.io import write_wav
    from avatarsync.phonemes.audio import load_audio, resample

    grid = ROOT.parent / "shared" / "data" / "grid" / "s4" / "video"
    clips = sorted(grid.glob("*.mp4")) if grid.is_dir() else []
    clips = clips or sorted((ROOT / "tests" / "data" / "grid_s1" / "video").glob("*.mp4"))
    parts, total, sr0, i = [], 0.0, None, 0
    while total < seconds:
        a, sr = load_audio(clips[i % len(clips)])
        sr0 = sr0 or sr
        parts.append(a if sr == sr0 else resample(a, sr, sr0))
        total += len(parts[-1]) / sr0
        i += 1
    audio = np.concatenate(parts)[: int(seconds * sr0)]
    write_wav(out, audio, sr0)
    return out


def bench_long(seconds: float, video: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="avatarsync-long-"))
    wav = long_recording(seconds, tmp / "long.wav")
    if video:
        cmd = [sys.executable, "-m", "avatarsync", "speak", "--audio", str(wav), "-o", str(tmp / "long.mp4")]
    else:
        cmd = [sys.executable, "-m", "avatarsync", "phonemes", "--audio", str(wav), "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    res = {"audio_seconds": seconds, "command": " ".join(cmd[1:]), "rc": proc.returncode, "wall_s": wall,
           "peak_rss_mb": peak_mb, "stderr_tail": proc.stderr[-1500:]}
    if video and proc.returncode == 0:
        import av

        with av.open(str(tmp / "long.mp4")) as c:
            v = c.streams.video[0]
            frames = sum(1 for _ in c.decode(v))
            fps = float(v.average_rate)
        res |= {"video_frames": frames, "video_seconds": frames / fps}
    elif proc.returncode == 0:
        res["track_seconds"] = json.loads(proc.stdout)["duration"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["voice", "long"], choices=["voice", "long"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-video", action="store_true")
    args = ap.parse_args()
    out = {}
    if "voice" in args.parts:
        out["voice"] = bench_voice()
    if "long" in args.parts:
        out["long"] = bench_long(args.seconds, not args.no_video)
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
