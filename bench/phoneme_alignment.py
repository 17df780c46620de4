"""Benchmark of the phoneme front end.

1. pocketsphinx forced alignment vs espeak-ng's own phone timings on English
   sentences synthesized with espeak-ng that are NOT in the corpus text pool
   (held out below), for three voice/rate settings. Baseline: the same
   phones spread evenly over the audio's speech region.
2. espeak-ng synthesis speed (x real time), English and Mandarin.
3. Mandarin examples: pinyin units with tones and durations.

Run: OMP_NUM_THREADS=1 python bench/phoneme_alignment.py [--quick]
Acceptance: pocketsphinx mean start error < 40 ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from avatarsync.phonemes.align import get_aligner
from avatarsync.phonemes.align.evaluate import start_errors
from avatarsync.phonemes.audio import speech_region
from avatarsync.phonemes.espeak import synthesize

HELD_OUT = [
    "The lighthouse keeper counted ships until midnight.",
    "A curious child asked why the river never sleeps.",
    "Our neighbors painted their fence a cheerful shade of yellow.",
    "Every winter the village holds a lantern festival.",
    "Please remember to water the tomatoes before you leave.",
    "The orchestra tuned quietly while the audience found their seats.",
    "He fixed the old bicycle with a borrowed wrench.",
    "Thunder rumbled far away, but the picnic carried on.",
    "She wrote three letters and mailed them on Tuesday.",
    "Fresh bread smells wonderful on a cold morning.",
    "The museum opens its new dinosaur hall next spring.",
    "Nobody expected the chess match to last six hours.",
]
SETTINGS = [(None, 160), ("+f3", 140), ("+m3", 190)]  # (voice variant, words per minute)
ZH_EXAMPLES = ["和平与发展是时代的主题。", "我们明天早上八点在学校门口见面。", "这本书一共有365页，你看完了吗？"]
POOL = Path(__file__).resolve().parents[1] / "avatarsync" / "data" / "text" / "en.txt"


def check_held_out() -> None:
    if POOL.exists():
        pool = {line.strip().lower() for line in POOL.read_text(encoding="utf-8").splitlines()}
        clash = [s for s in HELD_OUT if s.lower() in pool]
        if clash:
            sys.exit(f"held-out sentences found in the corpus pool: {clash}")


def uniform_errors(syn) -> np.ndarray:
    """Start errors of the baseline that spreads the true phone sequence evenly over the speech."""
    starts = np.array([u.start for u in syn.track.phones if u.symbol != "sil"])
    s0, s1 = speech_region(syn.audio, syn.sample_rate)
    return np.abs(s0 + (s1 - s0) * np.arange(len(starts)) / len(starts) - starts)


def bench_alignment(settings) -> float:
    sphinx = get_aligner("pocketsphinx")
    print("## pocketsphinx forced alignment vs espeak phone starts (held-out sentences)\n")
    print(f"{'#':>2} {'voice':>5} {'wpm':>4} {'phones':>6} {'matched':>7} {'mean ms':>7} {'median':>6} "
          f"{'p90':>5} {'<=40ms':>6} {'uniform ms':>10} {'align s':>7}")
    all_err, all_base, times = [], [], []
    for i, text in enumerate(HELD_OUT):
        for voice, rate in settings:
            syn = synthesize(text, voice=voice, rate=rate)
            t0 = time.perf_counter()
            track = sphinx.align(syn.audio, syn.sample_rate, text, "en")
            times.append(time.perf_counter() - t0)
            e = start_errors(syn.track, track)
            base = uniform_errors(syn)
            all_err.append(e.errors)
            all_base.append(base)
            print(f"{i:>2} {voice or 'def':>5} {rate:>4} {e.n_reference:>6} {e.matched:>7.0%} {e.mean * 1000:>7.1f} "
                  f"{np.median(e.errors) * 1000:>6.1f} {np.percentile(e.errors, 90) * 1000:>5.1f} "
                  f"{np.mean(e.errors <= 0.04):>6.0%} {base.mean() * 1000:>10.1f} {times[-1]:>7.2f}")
    err, base = np.concatenate(all_err), np.concatenate(all_base)
    print(f"\nall: {len(err)} matched phones in {len(all_err)} utterances; pocketsphinx mean start error "
          f"{err.mean() * 1000:.1f} ms (median {np.median(err) * 1000:.1f}, p90 {np.percentile(err, 90) * 1000:.1f}, "
          f"{np.mean(err <= 0.04):.0%} within 40 ms); uniform baseline {base.mean() * 1000:.1f} ms; "
          f"{np.mean(times):.2f} s per alignment")
    return float(err.mean())


def bench_speed() -> None:
    print("\n## espeak-ng synthesis speed (one core, includes building the track)\n")
    print(f"{'lang':>4} {'utterances':>10} {'audio s':>8} {'cpu s':>6} {'x real time (cpu)':>17} {'(wall)':>6}")
    for lang, texts in (("en", HELD_OUT * 3), ("zh", ZH_EXAMPLES * 8)):
        synthesize(texts[0], lang)  # warm-up (pypinyin dictionaries)
        t0, c0 = time.perf_counter(), time.process_time()
        audio_s = sum(synthesize(t, lang).track.duration for t in texts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{lang:>4} {len(texts):>10} {audio_s:>8.1f} {cpu:>6.2f} {audio_s / cpu:>17.0f} {audio_s / wall:>6.0f}")


def show_mandarin() -> None:
    print("\n## Mandarin: pinyin units (tone digits) with durations\n")
    for text in ZH_EXAMPLES:
        track = synthesize(text, "zh").track
        units = "  ".join(f"{u.symbol}:{u.duration * 1000:.0f}" for u in track.units)
        print(f"{text}\n  {units}  [ms]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one voice setting instead of three")
    args = ap.parse_args()
    check_held_out()
    mean = bench_alignment(SETTINGS[:1] if args.quick else SETTINGS)
    bench_speed()
    show_mandarin()
    print(f"\nacceptance (mean start error < 40 ms): {'PASS' if mean < 0.040 else 'FAIL'}")
    return 0 if mean < 0.040 else 1


if __name__ == "__main__":
    sys.exit(main())
