"""``MouthWarp``: the portrait's own lips and jaw moved to each frame's mouth shape, at its own size.

For one portrait (RGB image + its 478 face-mesh landmarks) the warp is set up once:
- the control points (lips, corners, chin and jaw line) get a displacement per unit of lip-gap
  change and per unit of mouth-width change, in the face's own axes (``geometry.FaceFrame``): the
  lower lip and chin drop with the jaw, the upper lip rises a little, the corners move apart;
- fixed anchors (nose, cheeks, the face's sides, a ring round the region) keep the rest still;
- a thin-plate spline through them gives two displacement fields over the mouth region.
Per frame the field is their weighted sum, so a frame costs one remap of that region; pixels
outside it are the portrait's, unchanged. Where the lips open wider than the portrait's, the
opening is filled with an inner mouth: the portrait's own when its mouth is open, else the
bundle's interior atlas (``interior.Interior``) relit to the portrait's lip colour, feathered
over a pixel at the lips.
"""

from __future__ import annotations

import numpy as np

from ..errors import FaceError
from .geometry import CORNERS, LOWER_INNER, LOWER_OUTER, UPPER_INNER, UPPER_OUTER, FaceFrame, opening_coords
from .interior import Interior, lip_colour, sample_opening
from .shape import mouth_shape

# lower face: (landmark, share of the lower lip's drop)
JAW_POINTS = ((152, 0.7), (148, 0.65), (377, 0.65), (176, 0.55), (400, 0.55), (149, 0.4), (378, 0.4),
              (150, 0.25), (379, 0.25), (136, 0.1), (365, 0.1), (18, 0.85), (200, 0.75), (199, 0.72),
              (175, 0.7), (83, 0.7), (313, 0.7), (201, 0.5), (421, 0.5))
ANCHORS = (1, 2, 4, 5, 98, 327, 97, 326, 195, 50, 280, 101, 330, 205, 425, 187, 411, 172, 397, 58, 288,
           132, 361, 147, 376, 213, 433)
LOWER_SHARE, UPPER_SHARE, CORNER_SHARE = 0.78, 0.22, 0.35
EDGE = 2.5  # px
GAP_STEP, WIDTH_STEP = 0.002, 0.004
MIN_GAP = 0.012  # the warp closes the lips to this (coinciding inner-lip points would make the spline singular)
FILL_GAP = 0.02  # narrower openings are left to the warp (a filled sliver reads as a crease)
OWN_INTERIOR_GAP = 0.035  # portraits open at least this much lend their own inner mouth


def _tps_fit(src: np.ndarray, values: np.ndarray, reg: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline weights through ``src (n, 2)`` with ``values (n, k)``."""
    n = len(src)
    r2 = ((src[:, None] - src[None]) ** 2).sum(-1)
    K = np.where(r2 > 0, 0.5 * r2 * np.log(np.maximum(r2, 1e-20)), 0.0) + reg * np.eye(n)
    P = np.c_[np.ones(n), src]
    A = np.zeros((n + 3, n + 3))
    A[:n, :n], A[:n, n:], A[n:, :n] = K, P, P.T
    b = np.zeros((n + 3, values.shape[1]))
    b[:n] = values
    sol = np.linalg.solve(A, b)
    return sol[:n], sol[n:]


def _tps_eval(src: np.ndarray, w: np.ndarray, a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    r2 = np.maximum((pts ** 2).sum(1)[:, None] + (src ** 2).sum(1)[None] - 2.0 * pts @ src.T, 0.0)
    U = 0.5 * r2 * np.log(np.maximum(r2, 1e-20))
    return U @ w + np.c_[np.ones(len(pts)), pts] @ a


class MouthWarp:
    """Renders frames of one portrait from per-frame mouth shapes ``(N, 2)`` [gap, width change]."""

    def __init__(self, image: np.ndarray, points: np.ndarray, interior: Interior | None = None,
                 stride: int = 6) -> None:
        if points is None or len(points) < 468:
            raise FaceError("the real-photo renderer needs face-mesh landmarks (478 points)",
                            "use the mediapipe detector (the default)")
        self.image = image
        self.points = np.asarray(points, np.float64)
        self.frame = FaceFrame.of(self.points)
        d = self.frame.eye_distance
        self.gap0, self.width0 = mouth_shape(self.points[None])[0]
        lip_rgb = lip_colour(image, self.points)
        own = self.gap0 >= OWN_INTERIOR_GAP
        self.own_interior = sample_opening(image, self.points).astype(np.float32) if own else None
        self.interior, self.lip_rgb = interior, lip_rgb

        face = self.frame.to_face(self.points)
        # control points and their displacement per unit gap change (col 0,1) and width change (2,3)
        moving: dict[int, np.ndarray] = {}
        xs = face[list(UPPER_INNER), 0]
        x0, x1 = xs[0], xs[-1]
        half = max(0.5 * (x1 - x0), 1.0)
        centre = 0.5 * (x0 + x1)

        def lip(i: int, share: float) -> None:
            u = np.clip((face[i, 0] - x0) / max(x1 - x0, 1e-6), 0, 1)
            bell = 0.35 + 0.65 * np.sin(np.pi * u)
            spread = (face[i, 0] - centre) / half  # -1 .. 1
            moving[i] = np.array([0.0, share * bell * d, 0.5 * spread * d, 0.0])

        for i in UPPER_INNER[1:-1] + UPPER_OUTER[1:-1]:
            lip(i, -UPPER_SHARE)
        for i in LOWER_INNER[1:-1] + LOWER_OUTER[1:-1]:
            lip(i, LOWER_SHARE)
        for i in CORNERS:
            side = -1.0 if face[i, 0] < centre else 1.0
            moving[i] = np.array([0.0, CORNER_SHARE * d, 0.5 * side * d, 0.0])
        for i, share in JAW_POINTS:
            moving[i] = np.array([0.0, LOWER_SHARE * share * d, 0.15 * (face[i, 0] - centre) / half * d, 0.0])
        fixed = [i for i in ANCHORS if i not in moving]
        ctrl = [face[i] for i in moving] + [face[i] for i in fixed]
        disp = [moving[i] for i in moving] + [np.zeros(4)] * len(fixed)
        # a ring of still points round the region
        lo, hi = face[list(moving) + fixed].min(0), face[list(moving) + fixed].max(0)
        lo, hi = lo - 0.2 * d, hi + 0.2 * d
        for t in np.linspace(0, 1, 9):
            for p in ((lo[0] + t * (hi[0] - lo[0]), lo[1]), (lo[0] + t * (hi[0] - lo[0]), hi[1]),
                      (lo[0], lo[1] + t * (hi[1] - lo[1])), (hi[0], lo[1] + t * (hi[1] - lo[1]))):
                ctrl.append(np.array(p))
                disp.append(np.zeros(4))
        self.scale = d
        self.ctrl = np.array(ctrl)  # face coords, px
        self.ctrl_move = np.array(disp)  # (n, 4): face-axis px per unit gap change (0, 1), width change (2, 3)
        corners = self.frame.to_image(np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]]))
        h_img, w_img = image.shape[:2]
        bx0, by0 = np.floor(corners.min(0)).astype(int)
        bx1, by1 = np.ceil(corners.max(0)).astype(int)
        self.box = (max(bx0, 0), max(by0, 0), min(bx1, w_img), min(by1, h_img))
        x0b, y0b, x1b, y1b = self.box
        if x1b - x0b < 8 or y1b - y0b < 8:
            raise FaceError("the face is too small or outside the image for the mouth renderer",
                            "use a photo where the face is at least 64 pixels wide")
        self.stride = stride
        gy, gx = np.mgrid[y0b:y1b + stride:stride, x0b:x1b + stride:stride].astype(np.float64)
        self.grid_shape = gx.shape
        self.grid_face = self.frame.to_face(np.c_[gx.ravel(), gy.ravel()])
        yy, xx = np.mgrid[y0b:y1b, x0b:x1b].astype(np.float32)
        self.base = np.stack([xx, yy], -1)
        self.coarse_map = np.ascontiguousarray((self.base - self.base[0, 0]) / stride)  # region px -> grid
        self.region_face = self.frame.to_face(self.base.reshape(-1, 2)).reshape(*xx.shape, 2)
        self.ctrl_disp = {i: moving[i] for i in moving}
        self._maps: dict[tuple[float, float], np.ndarray] = {}

    def _moved(self, idx, dg: float, dw: float) -> np.ndarray:
        """Face-coordinate positions of landmarks ``idx`` after a gap change ``dg`` and width change ``dw``."""
        face = self.frame.to_face(self.points[list(idx)])
        return face + np.array([self.ctrl_disp[i][:2] * dg + self.ctrl_disp[i][2:] * dw for i in idx])

    def _source_map(self, dg: float, dw: float) -> np.ndarray:
        """(h, w, 2) float32 source pixel of each pixel of the region: a thin-plate spline from the
        moved control points back to where they were (exact at the points, no fold-over)."""
        import cv2

        move = self.ctrl_move[:, :2] * dg + self.ctrl_move[:, 2:] * dw
        dst = (self.ctrl + move) / self.scale
        w, a = _tps_fit(dst, -move / self.scale)
        back = _tps_eval(dst, w, a, self.grid_face / self.scale) * self.scale  # face-axis px
        back_img = (back[:, :1] * self.frame.ex + back[:, 1:] * self.frame.ey).reshape(*self.grid_shape, 2)
        full = cv2.remap(back_img.astype(np.float32), self.coarse_map, None, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(self.base + full)

    def render(self, shape: np.ndarray) -> np.ndarray:
        """One frame (H, W, 3) uint8 for ``shape`` = [gap, width change]."""
        import cv2

        # changes are quantized (to well under a pixel of lip motion) so repeated ones reuse the map;
        # no change is the portrait itself
        gap = float(max(shape[0], min(MIN_GAP, float(self.gap0))))
        dg = round((gap - float(self.gap0)) / GAP_STEP) * GAP_STEP
        dwidth = round(float(shape[1]) / WIDTH_STEP) * WIDTH_STEP
        if dg == 0 and dwidth == 0:
            return self.image.copy()
        key = (dg, dwidth)
        if key not in self._maps:
            self._maps[key] = self._source_map(dg, dwidth)
        region = self._sample(self._maps[key])
        if gap > FILL_GAP and dg > 0:
            region = self._fill_opening(region, dg, dwidth, gap)
        out = self.image.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = region
        return out

    def _sample(self, src: np.ndarray) -> np.ndarray:
        """The region's pixels read from the image at ``src`` ((h, w, 2) image coordinates), bilinear
        (bicubic was measured sharper than the real frames on s4, 1.16x, and lower in PSNR;
        docs/fine_tune.md). A subclass may read them from elsewhere (``mouth/dub.py``)."""
        import cv2

        return cv2.remap(self.image, src, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _fill_opening(self, region: np.ndarray, dg: float, dw: float, gap: float) -> np.ndarray:
        import cv2

        upper = self._moved(UPPER_INNER, dg, dw)
        lower = self._moved(LOWER_INNER, dg, dw)
        u, v, inset = opening_coords(upper, lower, self.region_face)
        # the fill reaches EDGE px over the inner lips (their landmarks sit a little inside the seam,
        # which the warp would otherwise stretch into a dark rim), fading out over those px
        inside = inset > -EDGE
        if not inside.any():
            return region
        ys, xs = np.nonzero(inside)
        if self.own_interior is not None:
            tex = self.own_interior
        elif self.interior is not None:
            tex = self.interior.texture(gap, self.lip_rgb)
        else:
            return region
        th, tw = tex.shape[:2]
        mx = (np.clip(u[ys, xs], 0, 1) * (tw - 1)).astype(np.float32)
        my = (np.clip(v[ys, xs], 0, 1) * (th - 1)).astype(np.float32)
        vals = cv2.remap(tex, mx[None], my[None], cv2.INTER_LINEAR)[0]
        alpha = np.clip((inset[ys, xs] + EDGE) / EDGE, 0, 1)[:, None]
        out = region.astype(np.float32)
        out[ys, xs] = alpha * vals + (1 - alpha) * out[ys, xs]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def render_all(self, shapes: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` frames for ``(N, 2)`` shapes (BLAS held to one thread: its small solves
        are slower spread over busy cores)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return np.stack([self.render(s) for s in shapes])
