"""Static layers of a procedural face, built once per (identity, size) and cached.

* body layer: opaque RGB background, back hair, neck, shoulders and clothes;
* head layer: premultiplied RGBA face, ears, hair, facial hair, hat, earrings
  (everything that moves with the head but does not change per frame);
* warp fields: depth (for yaw/pitch parallax) and jaw weight (for jaw drop).

Layers are painted in float32 at ``SUPERSAMPLE`` x resolution and area-
downsampled, which gives smooth anti-aliased edges and soft shading.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .face_geometry import FaceGeometry, face_geometry
from .identity import FaceIdentity

SUPERSAMPLE = 2
_SHIFT = 4  # fixed-point bits for cv2 drawing


@dataclass(frozen=True)
class StaticLayers:
    geom: FaceGeometry
    body: np.ndarray  # (S, S, 3) uint8 RGB, opaque
    head: np.ndarray  # (S, S, 4) uint8 premultiplied RGBA, canonical (un-posed)
    fields: np.ndarray  # (S, S, 2) float32: depth in pixels, jaw weight 0..1
    skin: tuple[int, int, int]  # mean lit skin colour (per-frame features blend against it)
    hair_front: np.ndarray  # (S, S) float32 alpha of hair drawn over the forehead (brows go under it)


class _Canvas:
    """Premultiplied float RGBA canvas in output-pixel coordinates, supersampled."""

    def __init__(self, size: int, ss: int = SUPERSAMPLE) -> None:
        self.size, self.ss, self.n = size, ss, size * ss
        c = (np.arange(self.n, dtype=np.float32) + 0.5) / ss - 0.5
        self.x = c[None, :]
        self.y = c[:, None]
        self.rgb = np.zeros((self.n, self.n, 3), np.float32)
        self.a = np.zeros((self.n, self.n), np.float32)

    def pts(self, pts) -> np.ndarray:
        p = (np.asarray(pts, np.float64) + 0.5) * self.ss - 0.5
        return np.round(p * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, polys, closed: bool = True, thickness: float = 0.0) -> np.ndarray:
        """Coverage mask (float32 0..1) of filled polygons, or of polylines when thickness > 0."""
        m = np.zeros((self.n, self.n), np.uint8)
        arr = [self.pts(p) for p in polys]
        if thickness > 0:
            cv2.polylines(m, arr, closed, 255, max(1, int(round(thickness * self.ss))), cv2.LINE_AA, _SHIFT)
        else:
            cv2.fillPoly(m, arr, 255, cv2.LINE_AA, _SHIFT)
        return m.astype(np.float32) * (1.0 / 255.0)

    def ellipse(self, centre, axes, angle: float = 0.0, thickness: float = 0.0) -> np.ndarray:
        pts = cv2.ellipse2Poly(
            (0, 0), (1000, 1000), 0, 0, 360, 6
        ).astype(np.float64) / 1000.0
        ca, sa = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
        x = pts[:, 0] * axes[0]
        y = pts[:, 1] * axes[1]
        poly = np.stack([centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y], 1)
        return self.poly([poly], True, thickness)

    def gauss(self, x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
        gx = np.exp(-0.5 * ((self.x - x0) / sx) ** 2)
        gy = np.exp(-0.5 * ((self.y - y0) / sy) ** 2)
        return gy * gx

    def paint(self, colour, mask: np.ndarray) -> None:
        """Paint an opaque colour (RGB tuple or (n, n, 3) field) with coverage ``mask`` over the canvas."""
        m = mask[..., None]
        col = np.asarray(colour, np.float32)
        self.rgb *= 1.0 - m
        self.rgb += col * m
        self.a *= 1.0 - mask
        self.a += mask

    def blur(self, img: np.ndarray, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), sigma * self.ss)

    def downsample(self) -> tuple[np.ndarray, np.ndarray]:
        rgb = cv2.resize(self.rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        a = cv2.resize(self.a, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return rgb, a


def _smooth(e0: float, e1: float, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sdf_mask(d: np.ndarray, ss: int) -> np.ndarray:
    """Coverage from an approximate signed distance in output pixels (positive inside)."""
    return np.clip(d * ss + 0.5, 0.0, 1.0).astype(np.float32)


def _col(c, k: float = 1.0) -> np.ndarray:
    return np.clip(np.asarray(c, np.float32) * k, 0, 255)


# ----------------------------------------------------------------------------- background


def _background(ident: FaceIdentity, cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    g = face_geometry(ident, cv.size)
    s = cv.size
    c1, c2 = _col(ident.bg_colour1), _col(ident.bg_colour2)
    xs, ys = cv.x / s, cv.y / s
    kind = ident.background
    p = ident.bg_param
    ones = np.ones((cv.n, cv.n, 1), np.float32)
    if kind == "solid":
        img = ones * c1
    elif kind == "vgradient":
        t = np.broadcast_to(ys, (cv.n, cv.n))[..., None]
        img = c1 * (1 - t) + c2 * t
    elif kind == "radial":
        r = np.sqrt((xs - 0.5 + 0.2 * (p - 0.5)) ** 2 + (ys - 0.4) ** 2)
        t = np.clip(r / 0.75, 0, 1)[..., None]
        img = _col(ident.bg_colour1, 1.15) * (1 - t) + c2 * t
    elif kind in ("stripes", "diagonal"):
        period = (10 + 22 * p) * g.u
        coord = np.broadcast_to(cv.x if kind == "stripes" else (cv.x + cv.y) / np.sqrt(2), (cv.n, cv.n))
        t = (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * coord / period))).astype(np.float32)
        t = cv.blur(t, 0.6 * g.u)[..., None]
        img = c1 * (1 - 0.55 * t) + (c1 * 0.5 + c2 * 0.5) * 0.55 * t
    elif kind == "tiles":
        tile = (12 + 14 * p) * g.u
        ix = np.floor(cv.x / tile).astype(np.int64)
        iy = np.floor(cv.y / tile).astype(np.int64)
        h = ((ix * 73856093) ^ (iy * 19349663)) % 97 / 97.0
        grout = np.minimum(np.mod(cv.x, tile), np.mod(cv.y, tile)) < 0.8 * g.u
        img = c1 * (0.88 + 0.24 * h)[..., None]
        img = np.where(grout[..., None], c2 * 0.5 + c1 * 0.5, img)
    elif kind == "bokeh":
        t = np.broadcast_to(ys, (cv.n, cv.n))[..., None]
        img = c2 * (1 - t) * 0.7 + c1 * t * 0.6 + 20
        spots = np.zeros((cv.n, cv.n), np.float32)
        tint = np.zeros((cv.n, cv.n, 3), np.float32)
        for _ in range(int(10 + 14 * p)):
            cx, cy = rng.uniform(0, s), rng.uniform(0, s)
            r = rng.uniform(4, 13) * g.u
            m = cv.ellipse((cx, cy), (r, r)) * rng.uniform(0.25, 0.7)
            colour = np.array([rng.uniform(150, 255), rng.uniform(120, 240), rng.uniform(90, 230)], np.float32)
            spots += m
            tint += m[..., None] * colour
        cover = np.clip(spots, 0, 0.8)[..., None]
        img = img * (1 - cover) + tint / np.maximum(spots, 1e-3)[..., None] * cover
    else:  # room: wall, wainscot/floor line, a window or door frame
        img = ones * c1
        horizon = (0.62 + 0.15 * p) * s
        low = np.broadcast_to(cv.y > horizon, (cv.n, cv.n))
        img = np.where(low[..., None], c2 * 0.85 + c1 * 0.15, img)
        wx = (0.05 + 0.25 * rng.uniform()) * s if rng.uniform() < 0.5 else (0.7 + 0.2 * rng.uniform()) * s
        ww, wy, wh = (0.22 + 0.1 * p) * s, 0.12 * s, 0.4 * s
        frame = cv.poly([[(wx, wy), (wx + ww, wy), (wx + ww, wy + wh), (wx, wy + wh)]])
        inner = cv.poly([[(wx + 2 * g.u, wy + 2 * g.u), (wx + ww - 2 * g.u, wy + 2 * g.u),
                          (wx + ww - 2 * g.u, wy + wh - 2 * g.u), (wx + 2 * g.u, wy + wh - 2 * g.u)]])
        img = img * (1 - frame[..., None]) + _col(c1, 0.7) * frame[..., None]
        img = img * (1 - inner[..., None]) + np.float32(235) * inner[..., None]
        line = np.abs(cv.y - horizon) < 0.7 * g.u
        img = np.where(np.broadcast_to(line, (cv.n, cv.n))[..., None], c2 * 0.5, img)
    img = np.ascontiguousarray(np.broadcast_to(img, (cv.n, cv.n, 3)), dtype=np.float32)
    img = cv.blur(img, (1.2 + 1.5 * p) * g.u)  # out of focus
    # soft vignette and light falloff from the key light side
    vig = 1.0 - 0.28 * ((xs - 0.5) ** 2 + (ys - 0.45) ** 2) * 2.2 + 0.06 * ident.light_x * (xs - 0.5)
    img *= vig[..., None].astype(np.float32)
    noise = cv.blur(rng.normal(0, 3.0, (cv.n, cv.n)).astype(np.float32), 0.5 * g.u)
    img += noise[..., None]
    return np.clip(img, 0, 255)


# ----------------------------------------------------------------------------- hair


@dataclass(frozen=True)
class _HairShape:
    hy: float  # centre of the skull ellipse
    rx: float
    ry: float  # upper radius
    y_end: float  # lowest hair (outer curtains)
    flare: float
    bump: float  # curl bumpiness of the outline 0..1
    y_hair_top: float


def _hair_shape(ident: FaceIdentity, g: FaceGeometry) -> _HairShape | None:
    st, v, u = ident.hair_style, ident.hair_volume, g.u
    if st == "bald":
        return None
    table = {
        "buzz": (0.8, 0.6, g.eye_y - 3 * u, 0.0, 0.0),
        "short": (2.5 + 3 * v, 1.5 + 1.5 * v, g.eye_y - 1 * u, 0.0, 0.0),
        "side_part": (3 + 3 * v, 2 + 1.2 * v, g.eye_y - 0.5 * u, 0.0, 0.0),
        "quiff": (7 + 5 * v, 1.6, g.eye_y - 2 * u, 0.0, 0.0),
        "bob": (3 + 2 * v, 3 + 2.5 * v, g.mouth[1] + (1 + 3 * v) * u, 0.08, 0.0),
        "long": (3 + 3 * v, 3 + 3 * v, g.chin_y + (18 + 18 * v) * u, 0.18, 0.0),
        "bun": (1.4, 1.0, g.eye_y - 1.5 * u, 0.0, 0.0),
        "ponytail": (1.4, 1.0, g.eye_y - 1.5 * u, 0.0, 0.0),
        "curly": (5 + 5 * v, 4 + 4 * v, g.eye_y + (2 + 9 * v) * u, 0.05, 0.7),
        "afro": (11 + 8 * v, 10 + 8 * v, g.chin_y - (5 - 4 * v) * u, 0.0, 1.0),
    }
    top, side, y_end, flare, bump = table[st]
    hy = g.cy - 0.12 * g.fh
    ry = 0.88 * g.fh + top * u
    if st == "afro":
        hy = g.cy - 0.05 * g.fh
        ry = 0.95 * g.fh + top * u
    return _HairShape(hy=hy, rx=g.fw * 1.03 + side * u, ry=ry, y_end=y_end, flare=flare, bump=bump, y_hair_top=hy - ry)


def _hair_silhouette(sh: _HairShape, g: FaceGeometry, cv: _Canvas, phase: float) -> np.ndarray:
    dx = cv.x - g.cx
    dy = cv.y - sh.hy
    ang = np.arctan2(dy, dx)
    wob = 1.0 + sh.bump * 0.035 * np.sin(ang * 23 + phase) + sh.bump * 0.02 * np.sin(ang * 37 + 2 * phase)
    e = np.sqrt((dx / sh.rx) ** 2 + (np.minimum(dy, 0) / sh.ry) ** 2) / wob
    d_top = (1 - e) * min(sh.rx, sh.ry)
    below = dy > 0
    frac = np.clip(dy / max(sh.y_end - sh.hy, 1e-3), 0, 1)
    half = sh.rx * (1 + sh.flare * frac) * wob
    tips = 1.2 * g.u * np.sin(cv.x / g.u * 0.9 + phase) + 0.8 * g.u * np.sin(cv.x / g.u * 2.3 + 2 * phase)
    d_side = np.minimum(half - np.abs(dx), sh.y_end + tips - cv.y)
    if sh.bump > 0:  # rounded bottom for curly shapes
        d_side = np.minimum(d_side, (sh.y_end - cv.y) + 3 * g.u * (1 - (dx / half) ** 2))
    d = np.where(below, d_side, d_top)
    return _sdf_mask(d, cv.ss)


def _hair_colour_field(ident: FaceIdentity, sh: _HairShape, g: FaceGeometry, cv: _Canvas,
                       rng: np.random.Generator, y_max: float) -> np.ndarray:
    """Shaded, textured hair colour over the whole canvas (only used where hair is)."""
    u = g.u
    base = _col(ident.hair_colour)
    dx = (cv.x - g.cx) / sh.rx
    dy = (cv.y - sh.hy) / sh.ry
    e = np.sqrt(dx**2 + np.minimum(dy, 0) ** 2)
    shade = 1.0 - 0.3 * np.clip(e - 0.55, 0, 1) / 0.45 + 0.12 * ident.light_x * np.clip(dx, -1, 1)
    shade = shade - 0.25 * np.clip((cv.y - g.chin_y) / max(sh.y_end - g.chin_y, 1.0), 0, 1)
    tex = np.zeros((cv.n, cv.n), np.float32)
    curly = ident.hair_style in ("curly", "afro")
    if curly:
        n = int(900 * (cv.n / 256) ** 2)
        px = g.cx + rng.uniform(-1.3, 1.3, n) * sh.rx
        py = rng.uniform(sh.y_hair_top, y_max, n)
        r = rng.uniform(1.0, 2.4, n) * u
        val = rng.uniform(-0.5, 0.45, n)
        cx = np.round(((px + 0.5) * cv.ss - 0.5) * 16).astype(int)
        cy = np.round(((py + 0.5) * cv.ss - 0.5) * 16).astype(int)
        rr = np.round(r * cv.ss * 16).astype(int)
        th = max(1, int(0.5 * u * cv.ss))
        for i in range(n):
            cv2.circle(tex, (int(cx[i]), int(cy[i])), int(rr[i]), float(val[i]), th, cv2.LINE_AA, _SHIFT)
    else:
        part_x = g.cx + ident.hair_part * 0.45 * g.fw
        crown = (part_x, sh.y_hair_top + 0.2 * (sh.hy - sh.y_hair_top))
        n = int(320 * (cv.n / 256))
        side = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
        ang = rng.uniform(0.05, 1.55, n)
        reach = rng.uniform(0.7, 1.25, n)
        ex = g.cx + side * np.sin(ang) * sh.rx * reach
        ey = sh.hy - np.cos(ang) * sh.ry * reach * 0.6 + (y_max - sh.hy) * rng.uniform(0.2, 1.0, n) * (ang / 1.55) ** 2
        sx = crown[0] + rng.uniform(-2, 2, n) * u
        sy = crown[1] + rng.uniform(-2, 4, n) * u
        cxp = (sx + ex) / 2 + side * sh.rx * 0.35
        cyp = np.minimum(sy, ey) - 0.1 * sh.ry
        t = np.linspace(0, 1, 12)[None, :]
        bx = (1 - t) ** 2 * sx[:, None] + 2 * (1 - t) * t * cxp[:, None] + t**2 * ex[:, None]
        by = (1 - t) ** 2 * sy[:, None] + 2 * (1 - t) * t * cyp[:, None] + t**2 * ey[:, None]
        pts = np.round(((np.stack([bx, by], -1) + 0.5) * cv.ss - 0.5) * 16).astype(np.int32)  # (n, 12, 2)
        level = np.minimum((rng.uniform(size=n) * 8).astype(int), 7)
        for lv in range(8):  # strands in 8 shades, one polylines call each
            sel = pts[level == lv]
            if len(sel):
                cv2.polylines(tex, list(sel.reshape(-1, 12, 1, 2)), False, float(-0.35 + 0.1 * lv), 1,
                              cv2.LINE_AA, _SHIFT)
    tex = cv.blur(tex, 0.25 * u)
    ring = np.exp(-(((e - 0.62) / 0.1) ** 2)) * (dy < 0.1) * (0.55 + 0.45 * np.clip(ident.light_x * dx + 0.5, 0, 1))
    sheen = (0.2 if not curly else 0.08) * ring
    col = base * (shade * (1 + tex))[..., None] + sheen[..., None] * (45 + 0.4 * base)
    return col.astype(np.float32)


def _hairline(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas) -> np.ndarray:
    """Signed distance (pixels, positive = above the hairline, i.e. hair) of the front hairline."""
    u = g.u
    brow_y = g.eye_y - 6 * u
    y0 = g.cy - g.fh * (0.5 + 0.22 * ident.hairline)
    if ident.hair_style in ("bun", "ponytail", "buzz"):
        y0 = g.cy - g.fh * (0.55 + 0.15 * ident.hairline)
    y0 = y0 + (brow_y - 2.5 * u - y0) * ident.fringe
    adx = np.abs(cv.x - g.cx) / g.fw
    y_side = g.eye_y - 1.0 * u
    y = y0 + (y_side - y0) * _smooth(0.5, 0.97, adx)
    if ident.hair_style == "side_part":  # sweep: hair lower on the far side of the part
        y = y + 2.5 * u * np.clip(-np.sign(ident.hair_part) * (cv.x - g.cx) / g.fw, 0, 1)
    if ident.fringe > 0:
        y = y + ident.fringe * 1.4 * u * np.sin((cv.x - g.cx) / u * 1.1) * (adx < 0.7)
    if ident.hairline > 0.65 and ident.hair_style in ("short", "buzz", "side_part", "quiff"):
        y = y - 4 * u * (ident.hairline - 0.65) / 0.35 * np.exp(-(((adx - 0.45) / 0.15) ** 2))
    return y - cv.y


# ----------------------------------------------------------------------------- face


def _skin_field(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    u = g.u
    skin = _col(ident.skin)
    ls = 1.0 if ident.light_x >= 0 else -1.0
    hw = g.half_width_at(cv.y, ident.jaw_power, ident.skull_power, ident.chin_w).astype(np.float32)
    xr = np.clip((cv.x - g.cx) / np.maximum(hw, 1e-3), -1.2, 1.2)
    dy = np.clip((cv.y - g.cy) / g.fh, -1.2, 1.2)
    nx = 0.82 * np.clip(xr, -1, 1)
    ny = 0.55 * dy + 0.25 * np.clip(dy - 0.75, 0, 1)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0.03, 1))
    light = np.array([0.55 * ident.light_x, -0.45, 0.85])
    light /= np.linalg.norm(light)
    lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, None) / light[2]
    amb = 1.0 - 0.42 * ident.light_strength
    shade = amb + (1 - amb) * lam
    shade *= 1 - 0.18 * _smooth(0.7, 1.0, np.abs(xr)) - 0.1 * _smooth(0.6, 1.0, dy)
    G = cv.gauss
    ex_l, ey = g.eye_l
    ex_r = g.eye_r[0]
    ew = g.eye_w
    nt_x, nt_y = g.nose_tip
    nw = g.nose_w
    nl = nt_y - g.eye_y
    mx, my = g.mouth
    for ex in (ex_l, ex_r):
        shade *= 1 - 0.17 * G(ex, ey - 0.6 * ew, 1.35 * ew, 0.95 * ew)  # eye socket
        shade *= 1 - 0.05 * G(ex, ey + 1.2 * ew, 0.9 * ew, 0.35 * ew)  # under-eye
        shade += 0.05 * G(ex, ey + 2.3 * ew, 1.0 * ew, 0.5 * ew)
        shade *= 1 - 0.08 * G(g.cx + np.sign(ex - g.cx) * 0.92 * g.fw, ey - 5 * u, 0.12 * g.fw, 6 * u)  # temple
        shade += 0.05 * G(g.cx + np.sign(ex - g.cx) * 0.58 * g.fw, ey + 6 * u, 0.22 * g.fw, 3 * u)  # cheekbone
    shade += 0.07 * G(nt_x + 0.25 * nw * ls, g.eye_y + 0.55 * nl, 0.35 * nw, 0.35 * nl)  # bridge
    for side in (-1.0, 1.0):
        k = 0.22 if side == -ls else 0.08
        shade *= 1 - k * G(nt_x + side * 0.95 * nw, g.eye_y + 0.55 * nl, 0.4 * nw, 0.35 * nl)  # nose side
        shade *= 1 - 0.16 * G(nt_x + side * 0.92 * nw, nt_y + 0.3 * u, 0.32 * nw, 0.55 * nw)  # wing crease
        shade += 0.05 * G(nt_x + side * 0.7 * nw, nt_y - 0.2 * u, 0.3 * nw, 0.4 * nw)  # wing
    ball = {"button": 0.75, "broad": 0.9, "long": 0.5, "straight": 0.6}[ident.nose_shape]
    shade += 0.16 * G(nt_x + 0.25 * nw * ls, nt_y - 1.4 * u, ball * 0.8 * nw, ball * 0.7 * nw)  # nose ball highlight
    shade *= 1 - 0.16 * G(nt_x - 0.6 * nw * ls, nt_y - 0.6 * u, 0.45 * nw, 0.6 * nw)  # ball shadow side
    shade *= 1 - 0.14 * G(nt_x, nt_y + 1.9 * u, 0.9 * nw, 0.7 * u)  # under-nose shadow
    for side in (-1.0, 1.0):  # philtrum ridges
        shade += 0.035 * G(mx + side * 0.22 * g.mouth_w, (nt_y + my) / 2 + 0.5 * u, 0.5 * u, 1.8 * u)
    shade *= 1 - 0.06 * G(mx, (nt_y + my) / 2, 0.6 * u, 1.6 * u)  # philtrum
    shade *= 1 - 0.12 * G(mx, my + ident.lower_lip * u + 2.6 * u, 0.6 * g.mouth_w, 1.3 * u)  # under lower lip
    shade += 0.05 * G(mx, g.chin_y - 4 * u, 0.4 * g.mouth_w, 2.2 * u)  # chin
    shade += 0.05 * G(g.cx + 0.3 * g.fw * ls, g.cy - 0.62 * g.fh, 0.35 * g.fw, 0.15 * g.fh)  # forehead
    # nasolabial folds
    folds = np.zeros((cv.n, cv.n), np.float32)
    for side in (-1.0, 1.0):
        t = np.linspace(0, 1, 10)[:, None]
        p0 = np.array([nt_x + side * 1.2 * nw, nt_y - 0.5 * u])
        p2 = np.array([mx + side * (g.mouth_w + 2.8 * u), my + 3.5 * u])
        p1 = np.array([mx + side * (g.mouth_w + 3.6 * u), (nt_y + my) / 2])
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        cv2.polylines(folds, [cv.pts(pts)], False, 1.0, max(1, int(0.9 * u * cv.ss)), cv2.LINE_AA, _SHIFT)
    shade *= 1 - 0.09 * cv.blur(folds, 0.7 * u)
    # nose outline: sides of the bridge and the wings (alae)
    lines = np.zeros((cv.n, cv.n), np.float32)
    for side in (-1.0, 1.0):
        t = np.linspace(0, 1, 10)[:, None]
        p0 = np.array([nt_x + side * 0.35 * nw, g.eye_y - 0.5 * u])
        p1 = np.array([nt_x + side * 0.45 * nw, g.eye_y + 0.5 * nl])
        p2 = np.array([nt_x + side * 0.62 * nw, nt_y - 1.6 * u])
        bridge = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        cv2.polylines(lines, [cv.pts(bridge)], False, 0.45 if side == -ls else 0.2, max(1, int(0.8 * u * cv.ss)),
                      cv2.LINE_AA, _SHIFT)
        a = np.linspace(-1.9, 1.4, 12)
        wing = np.stack([nt_x + side * (0.62 * nw + 0.42 * nw * np.cos(a)), nt_y + 0.2 * u + 0.6 * nw * np.sin(a)], 1)
        cv2.polylines(lines, [cv.pts(wing)], False, 1.0, max(1, int(0.6 * u * cv.ss)), cv2.LINE_AA, _SHIFT)
    shade *= 1 - 0.32 * cv.blur(lines, 0.45 * u)
    # skin texture: low-frequency blotches and fine grain
    low = cv2.resize(rng.normal(0, 1, (12, 12)).astype(np.float32), (cv.n, cv.n), interpolation=cv2.INTER_CUBIC)
    shade *= 1 + 0.025 * low + 0.012 * rng.normal(0, 1, (cv.n, cv.n)).astype(np.float32)
    warm = np.array([0.12, -0.06, -0.1], np.float32)  # shadows turn warmer
    col = skin * shade[..., None] * (1 + (1 - np.clip(shade, 0, 1))[..., None] * warm)
    blush = ident.blush * 0.2 * (G(g.cx - 0.55 * g.fw, ey + 8 * u, 0.18 * g.fw, 4 * u)
                                 + G(g.cx + 0.55 * g.fw, ey + 8 * u, 0.18 * g.fw, 4 * u))
    blush += 0.08 * G(nt_x, nt_y - 1 * u, nw, nw)
    col = col * (1 - blush[..., None]) + np.array([225, 105, 105], np.float32) * blush[..., None] * (skin.mean() / 200)
    spec = 0.05 * ident.light_strength * (G(nt_x + 0.3 * nw * ls, nt_y - 1.8 * u, 0.3 * nw, 0.3 * nw)
                                          + G(g.cx + 0.25 * g.fw * ls, g.cy - 0.6 * g.fh, 0.25 * g.fw, 0.1 * g.fh))
    col += spec[..., None] * 255
    return col.astype(np.float32)


def _face_mask(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas) -> np.ndarray:
    hw = g.half_width_at(cv.y, ident.jaw_power, ident.skull_power, ident.chin_w).astype(np.float32)
    d = hw - np.abs(cv.x - g.cx)
    # vertical distance near the chin/top so the bottom edge is anti-aliased too
    dv = g.fh - np.abs(cv.y - g.cy)
    return _sdf_mask(np.minimum(d, dv), cv.ss) * (hw > 0)


def _ears(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas) -> None:
    u = g.u
    es = ident.ear_size
    skin = _col(ident.skin)
    for (ex, ey), side in ((g.ear_l, -1.0), (g.ear_r, 1.0)):
        outer = cv.ellipse((ex + side * 0.8 * u, ey), (3.3 * u * es, 7.2 * u * es), side * 8)
        lit = 0.92 + 0.08 * side * ident.light_x
        cv.paint(skin * lit, outer)
        inner = cv.ellipse((ex + side * 0.9 * u, ey - 0.6 * u), (1.9 * u * es, 5.0 * u * es), side * 8)
        cv.paint(skin * lit * 0.72, cv.blur(inner, 0.5 * u))
        canal = cv.ellipse((ex + side * 0.2 * u, ey + 0.6 * u), (0.9 * u * es, 1.8 * u * es), 0)
        cv.paint(skin * 0.5, cv.blur(canal, 0.4 * u) * 0.8)


def _facial_hair(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas, face_m: np.ndarray,
                 rng: np.random.Generator) -> None:
    kind = ident.facial_hair
    if kind == "none":
        return
    u = g.u
    hair = _col(ident.hair_colour)
    mx, my = g.mouth
    nt_y = g.nose_tip[1]
    grain = cv.blur(rng.uniform(0, 1, (cv.n, cv.n)).astype(np.float32), 0.2 * u)
    grain = np.clip((grain - 0.5) * 4 + 0.5, 0, 1)
    adx = np.abs(cv.x - g.cx)
    if kind == "stubble":
        top = nt_y + 1.5 * u + 6 * u * _smooth(0.2 * g.fw, 0.9 * g.fw, adx)
        region = _smooth(0, 3 * u, cv.y - top) * face_m
        cv.paint(hair * 0.85, region * (0.18 + 0.3 * grain))
        return
    # moustache
    mw = g.mouth_w
    t = np.linspace(-1, 1, 15)
    top = nt_y + 2.4 * u + 0.5 * u * t**2
    bot = my - 0.6 * u + 1.5 * u * t**4
    xs = mx + t * (mw + 1.2 * u)
    poly = np.concatenate([np.stack([xs, top], 1), np.stack([xs[::-1], bot[::-1]], 1)])
    region = cv.poly([poly])
    if kind in ("goatee", "full"):
        if kind == "goatee":
            tt = np.linspace(-1, 1, 15)
            gx = mx + tt * mw * 0.85
            gtop = my + 2.5 * u + 0 * tt
            gbot = g.chin_y + 1.2 * u - 3 * u * tt**2
            chin = np.concatenate([np.stack([gx, gtop], 1), np.stack([gx[::-1], gbot[::-1]], 1)])
            region = np.maximum(region, cv.poly([chin]))
        else:
            top_line = nt_y + 1 * u + (g.eye_y + 3 * u - nt_y - 1 * u) * _smooth(0.5 * g.fw, 1.0 * g.fw, adx)
            hw = g.half_width_at(cv.y, ident.jaw_power, ident.skull_power, ident.chin_w).astype(np.float32)
            below = cv.y > g.cy
            grow = 2.2 * u * _smooth(g.cy, g.chin_y, cv.y)
            beard_d = np.minimum(hw + grow - adx, cv.y - top_line)
            bottom = g.chin_y + 2.8 * u - (adx / g.fw) ** 2 * 4 * u
            beard_d = np.minimum(beard_d, bottom - cv.y)
            region = np.maximum(region, _sdf_mask(beard_d, cv.ss) * below)
    shade = 0.8 + 0.25 * grain - 0.2 * _smooth(g.cy, g.chin_y + 3 * u, cv.y)
    cv.paint(hair * shade[..., None], region * (0.75 + 0.25 * grain))


def _hat(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas, sh: _HairShape | None) -> None:
    kind = ident.hat
    if kind == "none":
        return
    u = g.u
    colour = _col(ident.hat_colour)
    top_y = (sh.y_hair_top if sh is not None else g.cy - g.fh) - 1.0 * u
    rx = (sh.rx if sh is not None else g.fw) + 1.5 * u
    hy = g.cy - 0.12 * g.fh
    dx = (cv.x - g.cx) / rx
    e = np.sqrt(dx**2 + ((cv.y - hy) / (hy - top_y)) ** 2)
    dome = _sdf_mask((1 - e) * rx, cv.ss)
    lit = 0.8 + 0.2 * np.clip(1 - e, 0, 1) + 0.1 * ident.light_x * dx
    if kind == "headband":
        y_band = g.cy - g.fh * 0.55
        band_d = np.minimum(2.0 * u - np.abs(cv.y - y_band - 3 * u * dx**2), g.fw * 1.06 - np.abs(cv.x - g.cx))
        band = _sdf_mask(band_d, cv.ss)
        cv.paint(colour * lit[..., None], band)
        return
    brim_y = g.eye_y - 11 * u
    edge = brim_y + 3.5 * u * dx**2  # lower rim of the hat, curving down at the sides
    body = dome * _sdf_mask(edge - cv.y, cv.ss)
    if kind == "beanie":
        ribs = 0.92 + 0.08 * np.sin((cv.x - g.cx) / u * 2.2)
        cv.paint(colour * (lit * ribs)[..., None], body)
        fold = body * _sdf_mask(cv.y - (edge - 5.5 * u), cv.ss)
        cv.paint(colour * (lit * 0.85 * ribs)[..., None], fold)
    else:  # cap
        cv.paint(colour * lit[..., None], body)
        brim = cv.ellipse((g.cx, brim_y), (g.fw * 0.85, 3.2 * u))
        brim = brim * (cv.y > brim_y - 1.0 * u)
        cv.paint(colour * 0.7, brim)
        shadow = cv.gauss(g.cx, brim_y + 3.5 * u, g.fw * 0.7, 1.8 * u) * 0.35
        cv.rgb *= 1 - shadow[..., None]


def _earrings(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas) -> None:
    if ident.earrings == "none":
        return
    u = g.u
    col = _col(ident.earring_colour)
    for (ex, ey), side in ((g.ear_l, -1.0), (g.ear_r, 1.0)):
        lx, ly = ex + side * 0.3 * u, ey + 6.0 * u * ident.ear_size
        if ident.earrings == "stud":
            cv.paint(col, cv.ellipse((lx, ly), (1.1 * u, 1.1 * u)))
            cv.paint(np.minimum(col * 1.3 + 30, 255), cv.ellipse((lx - 0.3 * u, ly - 0.3 * u), (0.4 * u, 0.4 * u)))
        else:
            cv.paint(col, cv.ellipse((lx, ly + 2.6 * u), (2.3 * u, 2.8 * u), 0, thickness=0.8 * u))


# ----------------------------------------------------------------------------- body


def _body(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas, sh: _HairShape | None,
          hair_col: np.ndarray | None) -> None:
    u = g.u
    skin = _col(ident.skin)
    dx = cv.x - g.cx
    adx = np.abs(dx)
    # back hair (long styles), ponytail
    if sh is not None and hair_col is not None and ident.hair_style in ("long", "bob", "curly", "afro"):
        sil = _hair_silhouette(sh, g, cv, 0.3)
        cv.paint(hair_col * 0.8, sil * (cv.y > g.cy))
    if ident.hair_style == "ponytail" and hair_col is not None:
        side = 1.0 if ident.hair_part >= 0 else -1.0
        tail = cv.ellipse((g.cx + side * (g.neck_w + 3 * u), g.chin_y + 8 * u), (3.5 * u, 12 * u), -side * 12)
        cv.paint(hair_col * 0.75, tail)
    # neck
    neck_top = g.cy + 0.2 * g.fh
    widen = 1 + 0.35 * _smooth(g.chin_y + 4 * u, g.chin_y + 18 * u, cv.y)
    neck = _sdf_mask(np.minimum(g.neck_w * widen - adx, cv.y - neck_top), cv.ss)
    nshade = 0.62 + 0.3 * _smooth(g.chin_y - 2 * u, g.chin_y + 14 * u, cv.y) + 0.08 * ident.light_x * dx / g.neck_w
    nshade = nshade * (1 - 0.15 * (adx / g.neck_w) ** 4)
    cv.paint(skin * nshade[..., None], neck)
    # shoulders / clothes
    base_y = g.chin_y + 13 * u
    y_sh = base_y + 14 * u * _smooth(g.neck_w * 0.7, g.fw * 1.35, adx) + 0.3 * np.clip(adx - 1.5 * g.fw, 0, None)
    body = _sdf_mask(cv.y - y_sh, cv.ss)
    cloth = _col(ident.cloth_colour)
    cshade = 0.82 + 0.12 * ident.light_x * np.clip(dx / (2 * g.fw), -1, 1) - 0.15 * _smooth(1.4 * g.fw, 2.6 * g.fw, adx)
    cshade = cshade + 0.06 * _smooth(base_y, base_y + 30 * u, cv.y) * np.cos(dx / (7 * u))  # folds
    kind = ident.clothing
    if kind == "striped":
        stripes = (np.sin(cv.y / (2.2 * u)) > 0).astype(np.float32)
        stripes = cv.blur(np.broadcast_to(stripes, (cv.n, cv.n)).astype(np.float32), 0.3 * u)
        cfield = cloth * (1 - stripes[..., None]) + _col(ident.cloth_colour2) * stripes[..., None]
    else:
        cfield = np.broadcast_to(cloth, (cv.n, cv.n, 3))
    cfield = cfield * cshade[..., None]
    # neckline (skin opening) per style
    if kind == "vneck":
        depth = 20 * u
        open_d = (g.neck_w * 1.2) * (1 - np.clip((cv.y - base_y + 2 * u) / depth, 0, 1)) - adx
    elif kind in ("turtleneck",):
        open_d = -np.ones_like(cv.y + cv.x)
    elif kind == "hoodie":
        open_d = g.neck_w * 1.05 - adx - np.clip(cv.y - base_y - 2 * u, 0, None) * 3
    else:
        open_d = g.neck_w * 1.25 * np.sqrt(np.clip(1 - ((cv.y - base_y + 2 * u) / (6 * u)) ** 2, 0, 1)) - adx
        open_d = np.where(cv.y < base_y - 2 * u, g.neck_w * 1.25 - adx, open_d)
    opening = _sdf_mask(open_d, cv.ss)
    cmask = body * (1 - opening)
    if kind == "turtleneck":
        tneck = _sdf_mask(np.minimum(g.neck_w * widen + 0.8 * u - adx, cv.y - (g.chin_y - 1 * u)), cv.ss)
        cmask = np.maximum(cmask, tneck)
        rib = 0.9 + 0.1 * np.sin(cv.y / (0.8 * u))
        cfield = cfield * np.where(cv.y < base_y, rib, 1.0)[..., None]
    cv.paint(cfield, cmask)
    if kind in ("crew", "striped"):
        band = cv.poly([_arc(g.cx, base_y - 2 * u, g.neck_w * 1.25, 6 * u)], False, 1.4 * u)
        cv.paint(cloth * 0.78, band * body)
    elif kind == "collar":
        c2 = _col(ident.cloth_colour2)
        for side in (-1.0, 1.0):
            flap = [(g.cx + side * g.neck_w * 0.3, base_y + 6 * u), (g.cx + side * (g.neck_w * 1.3), base_y - 4 * u),
                    (g.cx + side * (g.neck_w * 1.6), base_y + 1 * u), (g.cx + side * (g.neck_w * 1.1), base_y + 9 * u)]
            cv.paint(c2 * 0.95, cv.poly([flap]))
            cv.paint(c2 * 0.7, cv.poly([flap], True, 0.4 * u))
        cv.paint(c2 * 0.9, cv.poly([[(g.cx - 0.8 * u, base_y + 6 * u), (g.cx + 0.8 * u, base_y + 6 * u),
                                     (g.cx + 0.8 * u, g.size + 2.0), (g.cx - 0.8 * u, g.size + 2.0)]]))
    elif kind == "hoodie":
        for side in (-1.0, 1.0):
            hood = cv.ellipse((g.cx + side * g.neck_w * 1.6, base_y + 1 * u), (g.neck_w * 0.8, 5 * u), side * 20)
            cv.paint(cloth * 0.72, hood * body)
            cv.paint(_col(ident.cloth_colour2), cv.poly([[(g.cx + side * 3 * u, base_y + 4 * u),
                                                          (g.cx + side * 3.5 * u, base_y + 22 * u)]], False, 0.7 * u))
    # long hair falling over the shoulders, in front of the clothes
    if sh is not None and hair_col is not None and ident.hair_style == "long":
        sil = _hair_silhouette(sh, g, cv, 0.3)
        front = sil * _sdf_mask(adx - g.neck_w * 1.05, cv.ss) * (cv.y > g.chin_y - 4 * u)
        cv.paint(hair_col, front)


def _arc(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    t = np.linspace(0, np.pi, 16)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


# ----------------------------------------------------------------------------- fields


def _fields(g: FaceGeometry) -> np.ndarray:
    s = g.size
    c = np.arange(s, dtype=np.float32)
    x, y = c[None, :], c[:, None]
    hx = (x - g.cx) / (g.fw * 1.12)
    hy = (y - (g.cy - 0.1 * g.fh)) / (g.fh * 1.15)
    depth = g.fw * np.sqrt(np.clip(1 - hx**2 - hy**2, 0, 1))
    nl = g.nose_tip[1] - g.eye_y
    nose = ((x - g.cx) / (1.1 * g.nose_w)) ** 2 + ((y - (g.eye_y + 0.75 * nl)) / (0.5 * nl)) ** 2
    depth += 0.45 * g.fw * np.exp(-0.5 * nose)
    my = g.mouth[1]
    ramp = _smooth(my - 0.5 * g.u, g.chin_y - 1.0 * g.u, y)
    lateral = 1 - _smooth(0.55 * g.fw, 1.0 * g.fw, np.abs(x - g.cx))
    jaw = ramp * lateral
    return np.stack(np.broadcast_arrays(depth, jaw), -1).astype(np.float32)


# ----------------------------------------------------------------------------- assembly


@lru_cache(maxsize=8)
def static_layers(ident: FaceIdentity, size: int) -> StaticLayers:
    """Build (or fetch from the cache) the static layers of ``ident`` at ``size`` pixels."""
    g = face_geometry(ident, size)
    rng = np.random.default_rng([ident.seed, ident.identity_id, size, 0xB0D1])
    sh = _hair_shape(ident, g)
    # body layer
    cv = _Canvas(size)
    cv.paint(_background(ident, cv, rng), np.ones((cv.n, cv.n), np.float32))
    y_max = (sh.y_end if sh is not None else g.chin_y) + 4 * g.u
    hair_col = _hair_colour_field(ident, sh, g, cv, rng, y_max) if sh is not None else None
    _body(ident, g, cv, sh, hair_col)
    body_rgb, _ = cv.downsample()
    # head layer
    hv = _Canvas(size)
    if sh is not None:
        sil = _hair_silhouette(sh, g, hv, 0.3)
        cut = _sdf_mask(g.chin_y + 6 * g.u - hv.y, hv.ss) if ident.hair_style == "long" else 1.0
        neck_col = _sdf_mask(g.neck_w * 1.15 - np.abs(hv.x - g.cx), hv.ss) * (hv.y > g.cy)
        back = sil * cut * (1 - neck_col)
        hv.paint(hair_col * 0.72, back * (hv.y > g.eye_y - 8 * g.u))  # shadowed hair behind the head
        hv.paint(hair_col, back * (hv.y <= g.eye_y - 8 * g.u))
        if ident.hair_style == "bun":
            r = (6 + 3 * ident.hair_volume) * g.u
            hv.paint(hair_col, hv.ellipse((g.cx + ident.hair_part * 2 * g.u, sh.y_hair_top - 0.5 * r), (r, r * 0.9)))
    if not g.ears_hidden:
        _ears(ident, g, hv)
    face_m = _face_mask(ident, g, hv)
    skin_field = _skin_field(ident, g, hv, rng)
    hv.paint(skin_field, face_m)
    _freckles(ident, g, hv, rng, face_m)
    _nostrils(ident, g, hv)
    _facial_hair(ident, g, hv, face_m, rng)
    hair_front = np.zeros((hv.n, hv.n), np.float32)
    if sh is not None:
        hl = _hairline(ident, g, hv)
        front = _sdf_mask(hl, hv.ss)
        if ident.hair_style in ("long", "bob", "curly", "afro"):
            hw = g.half_width_at(hv.y, ident.jaw_power, ident.skull_power, ident.chin_w).astype(np.float32)
            side_d = np.abs(hv.x - g.cx) - np.maximum(hw - 1.8 * g.u, g.neck_w * 1.1)
            curtain = _sdf_mask(side_d, hv.ss) * (hv.y > g.eye_y - 10 * g.u)
            front = np.maximum(front, curtain)
        hair_front = front * sil * (1.0 if ident.hair_style != "buzz" else 0.8)
        # contact shadow of the hair on the forehead
        shadow = hv.blur(hair_front, 1.2 * g.u) * (1 - hair_front) * face_m * 0.35
        hv.rgb *= 1 - shadow[..., None]
        hv.paint(hair_col, hair_front)
    _hat(ident, g, hv, sh)
    if not g.ears_hidden:
        _earrings(ident, g, hv)
    head_rgb, head_a = hv.downsample()
    hair_front_s = cv2.resize(hair_front, (size, size), interpolation=cv2.INTER_AREA)
    head = np.dstack([np.clip(head_rgb, 0, 255), np.clip(head_a * 255, 0, 255)])
    lit = np.asarray(ident.skin, np.float32) * (1.0 - 0.42 * ident.light_strength * 0.2)
    return StaticLayers(
        geom=g,
        body=np.clip(body_rgb + 0.5, 0, 255).astype(np.uint8),
        head=np.round(head).astype(np.uint8),
        fields=_fields(g),
        skin=tuple(int(v) for v in lit),  # type: ignore[arg-type]
        hair_front=hair_front_s,
    )


def _freckles(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas, rng: np.random.Generator, face_m: np.ndarray) -> None:
    u = g.u
    dots = np.zeros((cv.n, cv.n), np.float32)
    if ident.freckles > 0:
        for _ in range(int(60 * ident.freckles)):
            side = rng.choice([-1.0, 1.0])
            px = g.cx + side * abs(rng.normal(0.35, 0.2)) * g.fw
            py = g.nose_tip[1] - 4 * u + rng.normal(0, 2.5) * u
            r = rng.uniform(0.35, 0.7) * u
            cv2.circle(dots, (int(((px + 0.5) * cv.ss - 0.5) * 16), int(((py + 0.5) * cv.ss - 0.5) * 16)),
                       int(r * cv.ss * 16), float(rng.uniform(0.3, 0.7)), -1, cv2.LINE_AA, _SHIFT)
    if ident.mole:
        side = 1.0 if ident.hair_part > 0 else -1.0
        px = g.cx + side * rng.uniform(0.3, 0.6) * g.fw
        py = g.mouth[1] + rng.uniform(-6, 1) * u
        cv2.circle(dots, (int(((px + 0.5) * cv.ss - 0.5) * 16), int(((py + 0.5) * cv.ss - 0.5) * 16)),
                   int(0.7 * u * cv.ss * 16), 1.0, -1, cv2.LINE_AA, _SHIFT)
    if dots.any():
        cv.paint(_col(ident.skin, 0.55) * np.array([1.0, 0.85, 0.8], np.float32), dots * face_m)


def _nostrils(ident: FaceIdentity, g: FaceGeometry, cv: _Canvas) -> None:
    u = g.u
    nt_x, nt_y = g.nose_tip
    nw = g.nose_w
    dark = _col(ident.skin, 0.4) * np.array([1.0, 0.8, 0.78], np.float32)
    for side in (-1.0, 1.0):
        m = cv.ellipse((nt_x + side * 0.42 * nw, nt_y + 1.4 * u), (0.3 * nw, 0.13 * nw + 0.2 * u), side * 18)
        cv.paint(dark, cv.blur(m, 0.3 * u) * 0.8)
