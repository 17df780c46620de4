"""End-to-end speed of `speak`: seconds of compute per second of video, per stage, and scaling
with the number of phonemes.

    python bench/speak_speed.py                      # the default architectures, untrained weights
    python bench/speak_speed.py --checkpoint DIR     # a trained bundle
    python bench/speak_speed.py --threads 2 --counts 20 50 100 200
    python bench/speak_speed.py --checkpoint DIR --image photo.jpg [--paste-region mouth]   # a real photo
    python bench/speak_speed.py --checkpoint avatarsync/assets/default --image photo.jpg --render warp
    (--image also takes a video: its first frame, e.g. a prepared GRID clip's video.mp4)

Timings depend on the architecture, not on the weights, so an untrained bundle of the default
sizes (tokenizer small 2^14 codes, FKG cpu with the shipped bundle's frame window, unit context
and guidance, interpolator 64 x 4) measures the default's speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sentence_with_units(pipe, target: int) -> str:
    """A text whose track has about ``target`` units (words from the built-in pool, pool order)."""
    from avatarsync.data.pools import sentence_pool
    from avatarsync.phonemes import text_to_track

    words: list[str] = []
    for sent in sentence_pool("en"):
        for w in sent.rstrip(".?!").split():
            words.append(w)
            if len(text_to_track(" ".join(words)).track.units) >= target:
                return " ".join(words)
    return " ".join(words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="bundle folder (default: untrained default-size bundle)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--counts", type=int, nargs="+", default=[20, 50, 100, 200], help="phoneme counts to time")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--image", help="portrait photo, or a video whose first frame is the portrait (default: the avatar)")
    ap.add_argument("--paste-region", choices=["face", "mouth"], help="paste region (default: the bundle's)")
    ap.add_argument("--render", choices=["auto", "tokens", "warp"], help="renderer (default: the bundle's)")
    args = ap.parse_args()

    import torch

    from avatarsync.config import read_yaml
    from avatarsync.pipeline import DEFAULT_BUNDLE, Pipeline
    from avatarsync.untrained import make_untrained_bundle

    torch.set_num_threads(args.threads)
    folder = args.checkpoint
    if folder is None:  # the shipped bundle's keyframe settings, untrained weights
        shipped = json.loads((DEFAULT_BUNDLE / "fkg" / "model.json").read_text())
        guidance = float(read_yaml(DEFAULT_BUNDLE / "pipeline.yaml").get("guidance", 1.0))
        folder = make_untrained_bundle(tempfile.mkdtemp(), tokenizer_size="small", codebook_bits=14,
                                       fkg_size="cpu", interp_width=64, interp_layers=4,
                                       fkg_window=shipped.get("frame_window"),
                                       fkg_unit_context=bool(shipped.get("unit_context")), guidance=guidance)
    pipe = Pipeline.from_pretrained(folder, device=args.device)
    image = None
    if args.image:
        from avatarsync.io import read_video_frames
        from avatarsync.pipeline import read_image

        image = (read_video_frames(args.image)[0][0] if Path(args.image).suffix.lower() in (".mp4", ".mov", ".mkv")
                 else read_image(args.image))
    opts = {"image": image, "paste_region": args.paste_region, "render": args.render}
    pipe.speak(text="Warm up.", out=None, **opts)  # first-call costs (library loading) are not per-video costs

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            text = sentence_with_units(pipe, count)
            t0 = time.perf_counter()
            res = pipe.speak(text=text, out=Path(tmp) / f"{count}.mp4", **opts)
            wall = time.perf_counter() - t0
            rows.append((count, len(res.track.units), res.duration, res.timings, wall))

    print(f"device {args.device}, {args.threads} thread(s), crop {pipe.info.crop_size} px, "
          f"bundle {'untrained default sizes' if args.checkpoint is None else folder}, portrait "
          f"{'the avatar' if image is None else f'{args.image} ({image.shape[1]}x{image.shape[0]})'}, "
          f"paste region {args.paste_region or pipe.info.paste_region}, render {args.render or pipe.info.render}")
    stages = list(rows[0][3])  # the stages that ran (the keyframe chain's or the warp's)
    print("\nseconds of compute per second of video, per stage")
    head = f"{'units':>6}{'video s':>9}" + "".join(f"{s:>15}" for s in stages) + f"{'total':>9}"
    print(head)
    for target, n, dur, timings, wall in rows:
        print(f"{n:>6}{dur:>9.2f}" + "".join(f"{timings[s] / dur:>15.3f}" for s in stages) + f"{wall / dur:>9.3f}")
    print("\ntime against phoneme count")
    print(f"{'units':>6}{'seconds':>10}")
    for target, n, dur, timings, wall in rows:
        print(f"{n:>6}{wall:>10.2f}")
    if len(rows) > 1:
        print(f"\ntime({rows[-1][1]} units) / time({rows[0][1]} units) = {rows[-1][4] / rows[0][4]:.2f} "
              f"for {rows[-1][1] / rows[0][1]:.1f}x the units")


if __name__ == "__main__":
    main()
