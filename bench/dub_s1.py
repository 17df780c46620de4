"""Dubbing on real video: an s1 clip re-spoken with the audio of another s1 sentence.

    python bench/dub_s1.py --data runs/grid_s1 [--split val] [--pairs 10] [--checkpoint DIR]

For each pair (A's video, B's speech and transcript), both from sentences the bundled mouth model
never saw (s1's held-out split): the frame count against B's length at 25 fps, PSNR outside the
regenerated region against A's own frames (played forward and back as `speak --video` does), and
the dubbed lip gap (tracked with mediapipe) against B's *real* lip gap, Pearson r.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from avatarsync.data.corpus import Corpus
    from avatarsync.evaluate.metrics import lip_gap, pearson
    from avatarsync.faces.tracking import track_faces
    from avatarsync.io import read_video_frames
    from avatarsync.mouth.dub import pingpong
    from avatarsync.mouth.warp import MouthWarp
    from avatarsync.pipeline import Pipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/grid_s1", help="prepared s1 corpus")
    ap.add_argument("--split", default="val", help="split to draw the clips from")
    ap.add_argument("--pairs", type=int, default=10, help="number of (video, speech) pairs")
    ap.add_argument("--checkpoint", help="bundle (default: the shipped one)")
    args = ap.parse_args()

    clips = Corpus(args.data).clips(args.split)
    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    rows, gens, reals = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(min(args.pairs, len(clips) // 2)):
            a, b = clips[2 * k], clips[2 * k + 1]
            t0 = time.perf_counter()
            res = pipe.speak(audio=b.audio_path, transcript=b.text, video=a.video_path, out=Path(tmp) / "d.mp4")
            wall = time.perf_counter() - t0
            src, _ = read_video_frames(a.video_path, 25)
            idx = pingpong(len(src), len(res.frames))
            src = src[idx][:, : res.frames.shape[1], : res.frames.shape[2]]
            tracked_src = track_faces(src)
            outside = []
            for t in range(len(src)):
                m = np.ones(src.shape[1:3], bool)
                if tracked_src.detected[t]:
                    x0, y0, x1, y1 = MouthWarp(src[t], tracked_src.points[t]).box
                    m[y0:y1, x0:x1] = False
                err = np.mean((res.frames[t][m].astype(float) - src[t][m]) ** 2)
                outside.append(10 * np.log10(255 ** 2 / max(err, 1e-10)))
            gen = lip_gap(track_faces(res.frames).points)
            real = b.truth()["lip_gap"]
            n = min(len(gen), len(real))
            r = pearson(gen[:n], real[:n])
            gens.append(gen[:n])
            reals.append(real[:n])
            rows.append((a.clip_id, b.clip_id, len(res.frames), round(b.duration * 25), float(np.min(outside)), r, wall,
                         res.duration))
    print("| video | speech | frames | speech x 25 fps | min PSNR outside (dB) | lip-gap r vs speech's real |")
    print("|---|---|---|---|---|---|")
    for a, b, n, want, out_psnr, r, *_ in rows:
        print(f"| {a} | {b} | {n} | {want} | {'inf' if out_psnr > 99 else f'{out_psnr:.1f}'} | {r:.3f} |")
    pooled = pearson(np.concatenate(gens), np.concatenate(reals))
    print(f"\npooled lip-gap r {pooled:.3f}; mean per pair {np.mean([r[5] for r in rows]):.3f}; "
          f"frames right {sum(r[2] == r[3] for r in rows)}/{len(rows)}; "
          f"speak wall {sum(r[6] for r in rows) / sum(r[7] for r in rows):.2f} s per s of video")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
