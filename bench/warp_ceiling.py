"""How far box PSNR/SSIM can go with the warp renderer: the real mouth shape against the predicted one.

    python bench/warp_ceiling.py --data runs/grid_s4 [--clips 16] [--checkpoint DIR]

Each clip's first frame is warped (a) to the mouth-motion model's shapes for its phonemes, as
`speak` does, and (b) to the shapes measured on the real frames (an oracle: the best this renderer
could do with a perfect motion model), beside the still first frame; scored against the real
frames as they are and with their head motion removed (`evaluate.reenact.stabilized`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from avatarsync.data.corpus import Corpus
    from avatarsync.evaluate.reenact import box_scores, real_landmarks, stabilized
    from avatarsync.faces.detect import find_face
    from avatarsync.io import read_video_frames
    from avatarsync.mouth.shape import mouth_shape
    from avatarsync.mouth.warp import MouthWarp
    from avatarsync.pipeline import Pipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/grid_s4", help="prepared corpus")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--checkpoint", help="bundle with a mouth/ model (default: the shipped one)")
    args = ap.parse_args()

    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    systems = ("still", "predicted", "oracle")
    scores = {s: [] for s in systems}
    for clip in Corpus(args.data).clips(args.split)[: args.clips]:
        real, _ = read_video_frames(clip.video_path, clip.fps)
        lm = real_landmarks(clip, real)
        warp = MouthWarp(real[0], find_face(real[0]).points, pipe.interior)
        shapes = {"predicted": pipe.mouth_shapes(clip.track(), len(real))}
        oracle = mouth_shape(lm)
        oracle[:, 1] -= oracle[0, 1]
        shapes["oracle"] = oracle
        stab = stabilized(real, lm)
        for s in systems:
            frames = np.repeat(real[:1], len(real), 0) if s == "still" else warp.render_all(shapes[s])
            scores[s].append(box_scores(frames, real, lm) | box_scores(frames, *stab, prefix="stab_"))
    keys = ("face_psnr", "face_ssim", "mouth_psnr", "mouth_ssim", "stab_face_psnr", "stab_face_ssim",
            "stab_mouth_psnr", "stab_mouth_ssim")
    print(f"| figure ({len(scores['still'])} clips) | " + " | ".join(systems) + " |")
    print("|---|" + "---|" * len(systems))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{np.nanmean([c[k] for c in scores[s]]):.3f}" for s in systems) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
