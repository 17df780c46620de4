"""Speed of the procedural corpus renderer: frames per second on one thread, per frame size.

    python bench/synth_render_speed.py [--sizes 128 256] [--frames 200]

(Replaces a timed assertion that used to sit in the test suite.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="frame sizes in pixels")
    p.add_argument("--frames", type=int, default=200, help="frames rendered per size")
    p.add_argument("--identity", type=int, default=9, help="procedural identity")
    args = p.parse_args()

    import cv2

    from avatarsync.data.articulation import articulate
    from avatarsync.data.identity import sample_identity
    from avatarsync.data.render import render_frame
    from avatarsync.phonemes import text_to_track

    cv2.setNumThreads(1)
    track = text_to_track("Bob put the blue box by the green wheel, and then he sang a short song.", "en",
                          voice="en-us").track
    states = articulate(track, args.frames, 25.0, seed=0)
    ident = sample_identity(args.identity)
    print(f"{'size':>6}{'frames/s':>10}{'ms/frame':>10}")
    for size in args.sizes:
        render_frame(ident, states[0], size)  # builds the identity's static layers
        t = time.perf_counter()
        for s in states:
            render_frame(ident, s, size)
        dt = time.perf_counter() - t
        print(f"{size:>6}{len(states) / dt:>10.0f}{1000 * dt / len(states):>10.2f}")


if __name__ == "__main__":
    main()
