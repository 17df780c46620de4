"""Speed of `avatarsync prepare` on real video: seconds of compute per minute of video, per stage.

Prepares the first N clips of a GRID speaker folder (default s1, 360x288) with 1 worker and with
2, into a temporary folder, and prints one table. Stages: read (decode + resample video and audio),
faces (mediapipe face mesh tracking + shot cuts), phonemes (forced alignment), write (crops,
npz, wav, mp4).

Run: python bench/prepare_speed.py [--src ../shared/data/grid/s1] [--clips 40] [--size 256]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from avatarsync.data.prepare import PrepareConfig, prepare_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "grid" / "s1"),
                    help="GRID speaker folder (video/ + align/)")
    ap.add_argument("--clips", type=int, default=40, help="videos to prepare per run")
    ap.add_argument("--size", type=int, default=256, help="crop size")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    args = ap.parse_args()
    rows = []
    for workers in args.workers:
        out = Path(tempfile.mkdtemp(prefix="prepare_speed_"))
        try:
            t0 = time.perf_counter()
            r = prepare_corpus(PrepareConfig(src=args.src, out=str(out), size=args.size, workers=workers,
                                             limit=args.clips), progress=False)
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)
        minutes = r["video_seconds"] / 60
        rows.append((workers, r, wall, minutes))
    stages = list(rows[0][1]["stage_seconds_per_minute_of_video"])
    print(f"{args.clips} videos of {args.src}, crops {args.size} px; seconds of compute per minute of video\n")
    print("| workers | " + " | ".join(stages) + " | total compute | wall per minute of video | wall s |")
    print("|---" * (len(stages) + 4) + "|")
    for workers, r, wall, minutes in rows:
        per = r["stage_seconds_per_minute_of_video"]
        print(f"| {workers} | " + " | ".join(f"{per[s]:.2f}" for s in stages)
              + f" | {r['compute_seconds_per_minute_of_video']:.2f} | {wall / minutes:.2f} | {wall:.1f} |")
    if len(rows) > 1:
        print(f"\nwall-clock speed-up {rows[0][0]} -> {rows[-1][0]} workers: {rows[0][2] / rows[-1][2]:.2f}x")


if __name__ == "__main__":
    main()
