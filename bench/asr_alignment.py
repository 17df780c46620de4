"""Benchmark of the offline ASR aligner (``whisper``: faster-whisper base int8 on CPU + pocketsphinx).

On real GRID speech (../shared/data/grid; the audio inside the videos):

1. s4 (50 clips, the unseen speaker; transcripts.tsv, no word times) and an s1 sample (``--s1``
   clips, every 16th; .align files with word times): word error rate of the recognizer vs the
   transcripts (words normalised alike: lower case, digits spelled out), how often the detected
   language is not English (a LanguageError without a transcript), and seconds of compute per
   second of audio (recognition alone, and the whole aligner).
2. s1: mean word boundary error (start and end, ms) vs the .align word times, over the words
   recognized correctly: Whisper's own word times, and the aligner's (pocketsphinx forced
   alignment of the recognized words).
3. The transcript check (``WhisperAligner.verify_transcript``: recognition in English, and if the
   transcript does not fit, a second recognition prompted with it): how often it refuses the clip's
   own transcript (must be never), another GRID sentence (shares about half its words: mostly
   accepted), and an unrelated English sentence from the corpus text pool.

Run: python bench/asr_alignment.py [--s1 50] [--grid ../shared/data/grid]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from avatarsync.data.sources import read_grid_align
from avatarsync.errors import AlignmentError, LanguageError
from avatarsync.phonemes.align.asr import WhisperRecognizer
from avatarsync.phonemes.align.asr_align import WhisperAligner, english_spans
from avatarsync.phonemes.align.fit import edit_alignment, english_words, word_errors
from avatarsync.phonemes.audio import load_audio

ROOT = Path(__file__).resolve().parents[1]


class TimedRecognizer:
    """A recognizer that adds up the seconds its calls take, and answers a repeated call on the same clip
    from memory (``clear()`` between clips)."""

    def __init__(self, inner: WhisperRecognizer) -> None:
        self.inner, self.seconds, self.memo = inner, 0.0, {}

    def clear(self) -> None:
        self.seconds, self.memo = 0.0, {}

    def recognize(self, audio, sample_rate, language=None, prompt=None):
        if (language, prompt) not in self.memo:
            t = time.perf_counter()
            rec = self.inner.recognize(audio, sample_rate, language, prompt)
            self.seconds += time.perf_counter() - t
            self.memo[(language, prompt)] = rec
            if language is None:  # a detected language decodes as that language forced
                self.memo.setdefault((rec.language, prompt), rec)
        return self.memo[(language, prompt)]


def clips(grid: Path, n_s1: int) -> list[dict]:
    out = []
    with open(grid / "s4" / "transcripts.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            out.append({"speaker": "s4", "name": row["clip"], "text": row["transcript"], "times": None,
                        "video": grid / "s4" / "video" / f"{row['clip']}.mp4"})
    names = sorted(p.stem for p in (grid / "s1" / "video").glob("*.mp4"))[::16][:n_s1]
    for name in names:
        words = [w for w in read_grid_align(grid / "s1" / "align" / f"{name}.align") if w.word not in ("sil", "sp")]
        out.append({"speaker": "s1", "name": name, "text": " ".join(w.word for w in words), "times": words,
                    "video": grid / "s1" / "video" / f"{name}.mp4"})
    return out


def boundary_errors(ref, hyp) -> list[float]:
    """|start| and |end| differences (s) of the words equal in an edit alignment of ref and hyp."""
    a, b = [w.word for w in ref], [w.word for w in hyp]
    errs = []
    for i, j in edit_alignment(a, b):
        if i is not None and j is not None and a[i] == b[j]:
            errs += [abs(ref[i].start - hyp[j].start), abs(ref[i].end - hyp[j].end)]
    return errs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=str(ROOT.parent / "shared" / "data" / "grid"))
    ap.add_argument("--s1", type=int, default=50, help="number of s1 clips (every 16th)")
    args = ap.parse_args()
    grid = Path(args.grid)
    if not (grid / "s4").is_dir():
        print(f"no GRID data at {grid}", file=sys.stderr)
        return 2
    unrelated = [ln.strip() for ln in (ROOT / "avatarsync" / "data" / "text" / "en.txt").read_text().splitlines()
                 if ln.strip()]
    items = clips(grid, args.s1)
    timed = TimedRecognizer(WhisperRecognizer())
    aligner = WhisperAligner(recognizer=timed)
    t0 = time.perf_counter()
    timed.inner.model()
    print(f"model ready (join + verify on first use, load) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    for k, it in enumerate(items):
        audio, sr = load_audio(it["video"])
        dur = len(audio) / sr
        ref = english_words(it["text"])
        timed.clear()
        t = time.perf_counter()
        try:
            aligner.align(audio, sr, None, "en")
            t_align, method, final = time.perf_counter() - t, aligner.method, aligner.words
        except LanguageError:
            t_align, method, final = None, "refused (language)", None
        rec, t_rec = aligner.recognition, timed.seconds
        row = {"speaker": it["speaker"], "dur": dur, "t_rec": t_rec, "t_align": t_align, "method": method,
               "lang": rec.language, "n_ref": len(ref)}
        forced = timed.recognize(audio, sr, "en")
        row["errors"] = word_errors(ref, english_words(forced.text))
        row["errors_detected"] = word_errors(ref, english_words(rec.text))
        if it["times"] is not None:
            truth = it["times"]
            row["b_whisper"] = boundary_errors(truth, english_spans(forced))
            row["b_aligner"] = boundary_errors(truth, final) if final is not None else []
        other = next(o["text"] for o in items[k + 7:] + items[:k + 7] if o["text"] != it["text"])
        for kind, text in (("own", it["text"]), ("other", other), ("unrelated", unrelated[k % len(unrelated)])):
            try:
                aligner.verify_transcript(audio, sr, text, "en")
                row[kind] = False
            except AlignmentError as e:
                row[kind] = True
                if kind == "own":
                    print(f"  own transcript refused: {e}", file=sys.stderr)
        rows.append(row)
        print(f"{it['speaker']} {it['name']}: {rec.language} {rec.text!r} ({t_rec:.2f} s; {row['method']})",
              file=sys.stderr)
    print("\n| set | clips | WER, English forced | WER, language detected | not detected as en "
          "| s compute / s audio: ASR | whole aligner |\n|---|---|---|---|---|---|---|")
    for spk in ("s4", "s1"):
        rs = [r for r in rows if r["speaker"] == spk]
        if not rs:
            continue
        n_ref = sum(r["n_ref"] for r in rs)
        wer, wer_det = sum(r["errors"] for r in rs) / n_ref, sum(r["errors_detected"] for r in rs) / n_ref
        not_en = sum(r["lang"] != "en" for r in rs)
        audio_s = sum(r["dur"] for r in rs)
        ok = [r for r in rs if r["t_align"] is not None]
        rtf_rec = sum(r["t_rec"] for r in rs) / audio_s
        rtf_all = (sum(r["t_align"] for r in ok) / sum(r["dur"] for r in ok)) if ok else float("nan")
        print(f"| {spk} | {len(rs)} | {100 * wer:.1f} % | {100 * wer_det:.1f} % | {not_en} | {rtf_rec:.2f} "
              f"| {rtf_all:.2f} |")
    s1 = [r for r in rows if r["speaker"] == "s1"]
    if s1:
        bw = np.concatenate([r["b_whisper"] for r in s1 if r["b_whisper"]]) * 1000
        ba = np.concatenate([r["b_aligner"] for r in s1 if r["b_aligner"]]) * 1000
        print("\n| s1 word boundaries vs .align (correctly recognized words) | boundaries | mean | median | p90 |"
              "\n|---|---|---|---|---|")
        for label, e in (("Whisper word times", bw), ("whisper aligner (pocketsphinx on the recognized words)", ba)):
            print(f"| {label} | {len(e)} | {e.mean():.0f} ms | {np.median(e):.0f} ms | {np.percentile(e, 90):.0f} ms |")
        methods = {}
        for r in s1 + [r for r in rows if r["speaker"] == "s4"]:
            methods[r["method"]] = methods.get(r["method"], 0) + 1
        print("\nhow the phones were timed (all clips): " + "; ".join(f"{m}: {n}" for m, n in methods.items()))
    print("\n| transcript check | refused |\n|---|---|")
    for kind, label in (("own", "the clip's own transcript"), ("other", "another GRID sentence"),
                        ("unrelated", "an unrelated sentence (corpus text pool)")):
        print(f"| {label} | {sum(r[kind] for r in rows)} of {len(rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
