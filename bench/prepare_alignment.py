"""How well `avatarsync prepare` times words and phones on GRID, against GRID's own .align files.

1. Transcript alone (the .align times ignored): the words' boundaries from pocketsphinx forced
   alignment against the .align ones (mean / median absolute error, share within 30 ms).
   Baseline: the words spread evenly over the audio's speech region.
2. With the .align files: the share of phones that lie inside the word they came from, and how
   many clips fell back to espeak-ng's phones (pocketsphinx could not align the words).

Reads the audio directly (no face work), so all 800 s1 clips take a few minutes.
Run: python bench/prepare_alignment.py [--src ../shared/data/grid/s1] [--clips 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from avatarsync.data.prepare import SAMPLE_RATE, ItemWorker, PrepareConfig, Skip
from avatarsync.data.sources import discover
from avatarsync.phonemes.audio import load_audio, resample, speech_region


def even_words(words, audio):
    """Baseline: the words, in order, spread evenly (by letters) over the speech region."""
    a, b = speech_region(audio, SAMPLE_RATE)
    lengths = np.array([len(w.word) for w in words], float)
    edges = a + (b - a) * np.concatenate([[0], np.cumsum(lengths)]) / lengths.sum()
    return list(zip(edges[:-1], edges[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "grid" / "s1"))
    ap.add_argument("--clips", type=int, default=0, help="at most this many clips (0 = all)")
    args = ap.parse_args()
    items = [it for it in discover(args.src, "grid") if it.words]
    if args.clips:
        items = items[: args.clips]
    free = ItemWorker(PrepareConfig(use_align=False))
    timed = ItemWorker(PrepareConfig(use_align=True))
    err, base, refused, inside, phones, fallback = [], [], [], 0, 0, 0
    t0 = time.perf_counter()
    for it in tqdm(items, desc="align", unit="clip"):
        audio, sr = load_audio(it.video)
        audio = resample(audio, sr, SAMPLE_RATE)
        ref = [w for w in it.words if w.end > w.start]
        try:
            _, words, _ = free.phonemes(it, audio)
            err += [abs(g.start - r.start) for g, r in zip(words, ref)] + [abs(g.end - r.end) for g, r in zip(words, ref)]
        except Skip as s:
            refused.append((it.item_id, s.reason))
        for (s, e), r in zip(even_words(ref, audio), ref):
            base += [abs(s - r.start), abs(e - r.end)]
        track, _, source = timed.phonemes(it, audio)
        fallback += source != "align+pocketsphinx"
        for p in track.phones:
            if p.symbol == "sil":
                continue
            phones += 1
            inside += any(w.start - 1e-6 <= p.start and p.end <= w.end + 1e-6 for w in ref)
    err_ms, base_ms = np.array(err) * 1000, np.array(base) * 1000
    print(f"{len(items)} GRID clips of {args.src} in {time.perf_counter() - t0:.0f} s\n")
    print("| word boundaries from the transcript alone | mean ms | median ms | within 30 ms |")
    print("|---|---|---|---|")
    print(f"| pocketsphinx forced alignment | {err_ms.mean():.1f} | {np.median(err_ms):.1f} | {(err_ms <= 30).mean():.1%} |")
    print(f"| words spread evenly over the speech (baseline) | {base_ms.mean():.1f} | {np.median(base_ms):.1f} | "
          f"{(base_ms <= 30).mean():.1%} |")
    print(f"\ncorrect transcripts refused: {len(refused)} of {len(items)}")
    for item, why in refused[:10]:
        print(f"  {item}: {why}")
    print(f"with the .align files: {inside} of {phones} phones inside their word ({inside / max(phones, 1):.2%}); "
          f"{fallback} clip(s) took espeak-ng's phones (pocketsphinx could not align the words)")


if __name__ == "__main__":
    main()
