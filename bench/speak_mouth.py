"""Does the generated mouth follow the speech? Lip gap measured in the pixels of generated videos.

    python bench/speak_mouth.py                          # the bundled model
    python bench/speak_mouth.py --checkpoint DIR --frames-out runs/mouth_frames

For each sentence the bundle speaks (crop only, default avatar), the lip gap
is measured in every generated frame (data.measure.mouth_openness_from_pixels,
in inter-ocular distances, with the avatar's landmarks), and compared with the
lip gap the procedural renderer's articulation model gives the same phoneme
track (data.articulation.articulate: what a real speaker of the training
corpus would do). Printed: the Pearson correlation per sentence and pooled
(a still portrait scores 0), and the mean measured gap per viseme class at the
keyframe times (bilabials should be near closed, open vowels widest).
With --frames-out, the crops at a closed bilabial, an open vowel and a rounded
vowel of the first sentence are saved as PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SENTENCES = (
    "Maybe the bright lamp by the window will glow all night.",
    "Bob and Pam bought a map of the old harbour.",
    "Who would walk to the zoo on a cold blue morning?",
    "A calm father parked the car behind the farm.",
    "Please pass me the paper from the top shelf.",
    "Our new robot moves slowly, but it moves.",
)
SHOWN = {"bilabial": "closed bilabial", "open_vowel": "open vowel", "rounded_vowel": "rounded vowel"}


def avatar_landmarks(pipe, aligned) -> np.ndarray:
    """The default avatar's renderer landmarks in crop pixels."""
    import json

    from avatarsync.data.articulation import FrameState
    from avatarsync.data.identity import sample_identity
    from avatarsync.data.render import render_frame
    from avatarsync.faces.align import transform_points

    meta = json.loads((pipe.folder / pipe.info.avatar_landmarks).read_text())
    size = int(pipe.avatar()[0].shape[0])
    frame = render_frame(sample_identity(int(meta.get("identity", 7))), FrameState(), size)
    return transform_points(frame.landmarks, aligned.matrix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="bundle folder (default: the bundled model)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--frames-out", help="folder for PNG crops of three mouth shapes of the first sentence")
    args = ap.parse_args()

    import torch

    from avatarsync.data.articulation import articulate
    from avatarsync.data.measure import mouth_openness_from_pixels
    from avatarsync.pipeline import Pipeline

    torch.set_num_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    _, aligned = pipe.crop(None)
    lms = avatar_landmarks(pipe, aligned)
    pooled_gen, pooled_true, per_class, shown = [], [], {}, {}
    print(f"{'sentence':<60}{'frames':>7}{'r':>7}")
    for n, text in enumerate(SENTENCES):
        res = pipe.speak(text=text, out=None, crop_only=True, seed=0)
        truth = np.array([s.openness for s in articulate(res.track, len(res.frames), res.fps, seed=0)])
        measured = np.array([mouth_openness_from_pixels(f, lms) for f in res.frames])
        r = float(np.corrcoef(measured, truth)[0, 1]) if measured.std() > 0 else 0.0
        print(f"{text[:58]:<60}{len(res.frames):>7}{r:>7.3f}")
        pooled_gen.append(measured)
        pooled_true.append(truth)
        for u in res.track.units:
            if u.end <= u.start:
                continue
            f = min(int((u.start + u.end) / 2 * res.fps), len(res.frames) - 1)
            per_class.setdefault(u.viseme, []).append(measured[f])
            if n == 0 and u.viseme in SHOWN and u.viseme not in shown:
                shown[u.viseme] = (f, u.symbol, res.frames[f], measured[f])
    g, t = np.concatenate(pooled_gen), np.concatenate(pooled_true)
    print(f"\npooled over {len(g)} frames: r = {np.corrcoef(g, t)[0, 1]:.3f} "
          f"(measured lip gap against the articulation model's; a still portrait gives 0)")
    print(f"\n{'viseme at keyframe':<20}{'keyframes':>10}{'mean lip gap':>14}")
    for name, vals in sorted(per_class.items(), key=lambda kv: np.mean(kv[1])):
        print(f"{name:<20}{len(vals):>10}{np.mean(vals):>14.3f}")
    if args.frames_out:
        import cv2

        out = Path(args.frames_out)
        out.mkdir(parents=True, exist_ok=True)
        for vis, (f, sym, img, gap) in shown.items():
            path = out / f"{vis}_frame{f}.png"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            print(f"{SHOWN[vis]}: /{sym}/ at frame {f}, lip gap {gap:.3f} -> {path}")


if __name__ == "__main__":
    main()
