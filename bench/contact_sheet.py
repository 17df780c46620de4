"""One sentence on several portraits: a contact sheet of frames at chosen sounds (docs/images).

    python bench/contact_sheet.py --images astronaut.png grid_s4.png ... [--avatar] --out sheet.jpg

Each row is one portrait (its size in the label), each column the frame at the centre of one
unit of the sentence (rest, an open vowel, a closure, a rounded vowel, ...), cropped round the
lower face at the portrait's own resolution and scaled to a common height for the sheet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WANTED = ("rest", "open_vowel", "bilabial", "rounded_vowel", "spread_vowel", "mid_vowel", "labiodental")


def pick_units(track, wanted=WANTED):
    """The first unit of each wanted viseme (in sentence order)."""
    chosen, seen = [], set()
    for u in track.units:
        if u.viseme in wanted and u.viseme not in seen and (u.viseme != "rest" or not chosen):
            chosen.append(u)
            seen.add(u.viseme)
    return chosen


def face_window(points: np.ndarray, shape) -> tuple[int, int, int, int]:
    """A box round the nose, mouth and chin of face-mesh points."""
    from avatarsync.mouth.shape import eye_distance

    d = float(eye_distance(points))
    cx, cy = points[13]
    x0, x1 = int(cx - 0.9 * d), int(cx + 0.9 * d)
    y0, y1 = int(cy - 0.75 * d), int(cy + 0.75 * d)
    h, w = shape[:2]
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def main() -> int:
    import cv2

    from avatarsync.faces.detect import find_face
    from avatarsync.pipeline import Pipeline, read_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="*", default=[], help="portrait files")
    ap.add_argument("--avatar", action="store_true", help="add a row for the bundled avatar")
    ap.add_argument("--text", default="Bob saw a big blue boat and waved.", help="the sentence")
    ap.add_argument("--checkpoint", help="bundle folder (default: the shipped one)")
    ap.add_argument("--height", type=int, default=180, help="height of each cell on the sheet")
    ap.add_argument("--out", required=True, help="sheet image to write (.jpg or .png)")
    args = ap.parse_args()

    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    rows, labels = [], []
    sources = [(p, read_image(p)) for p in args.images] + ([("avatar", None)] if args.avatar else [])
    for name, image in sources:
        res = pipe.speak(text=args.text, image=image, out=None)
        units = pick_units(res.track)
        frames = [res.frames[min(int(0.5 * (u.start + u.end) * res.fps), len(res.frames) - 1)] for u in units]
        first = res.frames[0]
        x0, y0, x1, y1 = face_window(find_face(first).points, first.shape)
        cells = []
        for f, u in zip(frames, units):
            c = np.ascontiguousarray(f[y0:y1, x0:x1])
            c = cv2.resize(c, (int(round(c.shape[1] * args.height / c.shape[0])), args.height),
                           interpolation=cv2.INTER_AREA)
            cv2.putText(c, u.viseme.replace("_", " "), (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            cells.append(c)
        row = np.concatenate(cells, 1)
        h, w = (image.shape[:2] if image is not None else pipe.avatar()[0].shape[:2])
        label = f"{Path(name).name if name != 'avatar' else 'bundled avatar'} ({w}x{h})"
        bar = np.full((26, row.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, label, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
        rows.append(np.concatenate([bar, row], 0))
        labels.append(label)
        print(f"{label}: {len(res.frames)} frames, units {[u.symbol for u in units]}")
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
