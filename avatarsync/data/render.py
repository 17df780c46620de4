"""Procedural talking-face renderer: (identity, frame state) -> RGB frame + landmarks.

Static parts (background, body, shaded head, hair, accessories) are built
once per identity and size (``face_layers.static_layers``). Per frame the
renderer draws the eyes (blink), brows, mouth and glasses onto a copy of the
canonical head, warps it by the head pose (roll/shift as a similarity,
yaw/pitch as depth parallax, jaw drop as a vertical stretch of the lower
face) with one ``cv2.remap`` and composites it over the body layer.

Landmarks (``RenderedFrame.landmarks``, pixel x, y) follow the order of
``LANDMARK_NAMES``; "left" means image-left (smaller x).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from ..phonemes.visemes import VISEME_INDEX
from .articulation import FrameState
from .face_geometry import FaceGeometry
from .face_layers import StaticLayers, static_layers
from .identity import FaceIdentity

LANDMARK_NAMES = (
    "left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right", "upper_lip", "lower_lip", "chin",
    "upper_lip_inner", "lower_lip_inner", "left_brow", "right_brow", "jaw_left", "jaw_right", "nose_bridge",
    "forehead",
)
LM_LEFT_EYE, LM_RIGHT_EYE, LM_NOSE_TIP, LM_MOUTH_LEFT, LM_MOUTH_RIGHT = 0, 1, 2, 3, 4
LM_UPPER_LIP, LM_LOWER_LIP, LM_CHIN, LM_UPPER_LIP_INNER, LM_LOWER_LIP_INNER = 5, 6, 7, 8, 9
LM_LEFT_BROW, LM_RIGHT_BROW, LM_JAW_LEFT, LM_JAW_RIGHT, LM_NOSE_BRIDGE, LM_FOREHEAD = 10, 11, 12, 13, 14, 15
NUM_LANDMARKS = len(LANDMARK_NAMES)
# Index groups for avatarsync.faces.landmarks (registered there as the "procedural" layout).
LANDMARK_LAYOUT = {
    "left_eye": (LM_LEFT_EYE,), "right_eye": (LM_RIGHT_EYE,), "nose": (LM_NOSE_TIP,),
    "mouth_left": (LM_MOUTH_LEFT,), "mouth_right": (LM_MOUTH_RIGHT,),
    "mouth": (LM_MOUTH_LEFT, LM_UPPER_LIP, LM_MOUTH_RIGHT, LM_LOWER_LIP),
}

MIN_SIZE, MAX_SIZE = 32, 1024
_SHIFT = 4
_ONE = 1 << _SHIFT
_INTERIOR = np.array([42, 16, 22], np.float32)  # mouth cavity: dark and much less red than any lip (measure.py)
_TONGUE = np.array([176, 88, 92], np.float32)
_TEETH = np.array([236, 232, 220], np.float32)
_SCLERA = np.array([236, 230, 224], np.float32)
_INTERIOR_T = tuple(float(v) for v in _INTERIOR)
_TONGUE_T = tuple(float(v) * 0.8 for v in _TONGUE)
_TEETH_T = tuple(float(v) for v in _TEETH)
_TEETH_EDGE = tuple(float(v) * 0.78 for v in _TEETH) + (255.0,)
_LOWER_TEETH = tuple(float(v) * 0.85 for v in _TEETH) + (255.0,)
_TONGUE_TIP = tuple(float(v) * 0.95 for v in _TONGUE) + (255.0,)
_DENTAL = VISEME_INDEX["dental"]
_TUCK_TEETH = tuple(float(v) * 0.95 for v in _TEETH) + (255.0,)
_GAP = 0.9  # lip gap at openness 1, in units of the rest mouth half-width


class RenderError(InputError):
    """Bad arguments to the renderer."""


@dataclass
class RenderedFrame:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (NUM_LANDMARKS, 2) float32 pixel (x, y)


def _p(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _fill(img: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_p(pts)], _c4(colour), cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    cv2.polylines(img, [_p(pts)], closed, _c4(colour), max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _circle(img: np.ndarray, c, r: float, colour) -> None:
    cv2.circle(img, (int(round(c[0] * _ONE)), int(round(c[1] * _ONE))), max(1, int(round(r * _ONE))),
               _c4(colour), -1, cv2.LINE_AA, _SHIFT)


def _c4(colour) -> tuple[float, float, float, float]:
    r, g, b = colour[0], colour[1], colour[2]
    return (min(max(float(r), 0.0), 255.0), min(max(float(g), 0.0), 255.0), min(max(float(b), 0.0), 255.0), 255.0)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else float(x)


def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.empty((len(x), 2))
    out[:, 0] = x
    out[:, 1] = y
    return out


class _Roi:
    """A clipped rectangle of the head image, for mask-blended drawing."""

    def __init__(self, img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> None:
        h, w = img.shape[:2]
        self.x0, self.y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        self.x1, self.y1 = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
        self.img = img
        self.ok = self.x1 > self.x0 and self.y1 > self.y0

    @property
    def view(self) -> np.ndarray:
        return self.img[self.y0:self.y1, self.x0:self.x1]

    def local(self, pts: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.asarray(pts, np.float64)) - np.array([self.x0, self.y0])

    def mask(self, pts: np.ndarray) -> np.ndarray:
        m = np.zeros((self.y1 - self.y0, self.x1 - self.x0), np.uint8)
        cv2.fillPoly(m, [_p(self.local(pts))], 255, cv2.LINE_AA, _SHIFT)
        return m


def _blend(dst: np.ndarray, src: np.ndarray, mask_u8: np.ndarray, opacity: float = 1.0) -> None:
    """dst[..., :3] = lerp(dst, src, mask * opacity) in place (uint8 images)."""
    m = mask_u8.astype(np.float32) * (opacity / 255.0)
    m = m[..., None]
    d = dst[..., :3].astype(np.float32)
    dst[..., :3] = (d + (src[..., :3].astype(np.float32) - d) * m + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- per-identity rig

_S_EYE = np.linspace(-1.0, 1.0, 13)  # -1 inner corner, +1 outer corner
_S_BROW = np.linspace(-1.0, 1.0, 11)
_S_MOUTH = np.linspace(-1.0, 1.0, 21)
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 25)[:-1]), np.sin(np.linspace(0, 2 * np.pi, 25)[:-1])], 1)
_EYE_SHAPES = {"almond": (0.62, 0.36), "round": (0.78, 0.5), "narrow": (0.46, 0.28), "hooded": (0.5, 0.34),
               "upturned": (0.6, 0.3)}


class _Rig:
    """Everything about one identity at one size that does not change per frame."""

    def __init__(self, ident: FaceIdentity, layers: StaticLayers) -> None:
        g = layers.geom
        self.ident, self.layers, self.g = ident, layers, g
        u, ew = g.u, g.eye_w
        skin = np.asarray(layers.skin, np.float64)
        lip = np.asarray(ident.lip_colour, np.float64)
        # eyes
        up, lo = _EYE_SHAPES[ident.eye_shape]
        s = _S_EYE
        tilt = (ident.eye_tilt + (1.2 if ident.eye_shape == "upturned" else 0.0)) * u
        self.eyes = []
        for (cx, cy), side in ((g.eye_l, -1.0), (g.eye_r, 1.0)):
            # side: direction from the nose outwards (the image-left eye's outer corner is to the left)
            x = cx + side * s * ew
            base = cy - tilt * (s + 1) / 2 + 0.4 * u * np.clip(-s, 0, None)
            bump_u = up * ew * np.clip(1 - ((s + 0.15) / 1.15) ** 2, 0, 1) ** 0.75
            bump_l = lo * ew * np.clip(1 - ((s - 0.15) / 1.15) ** 2, 0, 1) ** 0.9
            iris = (cx + side * 0.04 * ew, cy - 0.08 * ew)
            self.eyes.append((side, x, base, bump_u, bump_l, iris))
        self.iris_r = 0.52 * ew
        self.iris_dark = _c4(np.asarray(ident.iris) * 0.75)
        self.iris_col = _c4(ident.iris)
        self.sclera = _c4(_SCLERA * 0.84 + skin * 0.08)
        self.sclera_shadow = _c4(_SCLERA * 0.6)
        self.crease_col = _c4(skin * 0.72)
        self.lower_lid_col = _c4(skin * 0.7)
        self.crease_gap = (0.18 if ident.eye_shape != "hooded" else 0.08) * ew + 0.9 * u
        self.lash_w = (1.1 if not ident.eyeliner else 1.6) * u
        # brows (at brow = smile = 0; shifted vertically per frame)
        self.brows = []
        sb = _S_BROW
        arch = {
            "straight": 0.4 * (1 - sb**2),
            "arched": 2.2 * np.clip(1 - ((sb - 0.15) / 1.1) ** 2, 0, None),
            "angled": 2.0 * np.where(sb < 0.35, (sb + 1) / 1.35, (1 - sb) / 0.65),
            "soft": 1.2 * (1 - sb**2),
        }[ident.brow_shape] * u
        th = ident.brow_thickness * u * (1.15 - 0.6 * (sb + 1) / 2)
        for (cx, cy), side in ((g.eye_l, -1.0), (g.eye_r, 1.0)):
            x = cx + side * (sb * ew * 1.25 + 0.15 * ew)
            yc = cy - ident.brow_y * u - ew * 0.25 - arch + 0.6 * u * (sb + 1) / 2
            poly = np.concatenate([_xy(x, yc - th / 2), _xy(x, yc + th / 2)[::-1]])
            self.brows.append(poly)
        self.brow_col = _c4(np.asarray(ident.brow_colour) * 0.85 + skin * 0.15)
        allb = np.concatenate(self.brows)
        ys, xs = slice(max(0, int(allb[:, 1].min() - 3 * u)), int(allb[:, 1].max() + 3 * u) + 1), \
            slice(max(0, int(allb[:, 0].min() - 1)), int(allb[:, 0].max() + 2))
        self.brow_occluded = bool(layers.hair_front[ys, xs].max() > 0.05) if allb.size else False
        # mouth
        self.lip = lip
        self.lip_col = _c4(lip)
        self.upper_lip_col = _c4(lip * np.array([0.9, 0.8, 0.82]))
        self.lip_edge_col = _c4(skin * 0.5 + lip * 0.47)
        self.lip_gloss_col = _c4(np.minimum(lip * 1.07 + 9, 255))
        self.corner_col = _c4(lip * 0.5)
        self.inner_edge_col = _c4(lip * 0.6)
        sm = _S_MOUTH
        self.one_m_s2 = 1 - sm**2
        self.bow_dip = np.exp(-((sm / 0.12) ** 2))
        self.bow_peaks = np.exp(-(((np.abs(sm) - 0.22) / 0.12) ** 2))
        self.glasses = self._glasses()
        self.sprites: dict = {}

    def _glasses(self) -> list[tuple[np.ndarray, tuple, int, bool]]:
        ident, g = self.ident, self.g
        if ident.glasses == "none":
            return []
        u = g.u
        col = _c4(ident.glasses_colour)
        r = g.eye_w * 1.4
        y = g.eye_y + 0.4 * u
        thick = max(1, int(round(1.0 * u if ident.glasses != "browline" else 0.7 * u)))
        out = []
        centres = []
        for (ex, _), side in ((g.eye_l, -1.0), (g.eye_r, 1.0)):
            c = (ex + side * 0.6 * u, y)
            centres.append(c)
            if ident.glasses == "round":
                rim = _CIRCLE * [r, r * 0.92] + c
            else:
                k = np.linspace(0, 2 * np.pi, 33)
                sx, sy = np.cos(k), np.sin(k)
                rim = _xy(c[0] + r * 1.08 * np.sign(sx) * np.abs(sx) ** 0.4,
                          c[1] + r * 0.72 * np.sign(sy) * np.abs(sy) ** 0.5)
            out.append((_p(rim), col, thick, True))
            if ident.glasses == "browline":
                out.append((_p(rim[rim[:, 1] < c[1] - 0.2 * r]), col, max(1, int(round(2.0 * u))), False))
            xe = g.cx + side * (g.fw * 0.98)
            out.append((_p([[c[0] + side * r * 1.02, c[1] - 0.35 * r], [xe, c[1] - 0.45 * r]]), col, thick, False))
            out.append((_p([[c[0] - 0.5 * r, c[1] - 0.1 * r], [c[0] - 0.15 * r, c[1] - 0.55 * r]]),
                        _c4((235, 240, 245)), max(1, int(round(0.5 * u))), False))
        out.append((_p([[centres[0][0] + r * 0.95, y - 0.3 * r], [g.cx, y - 0.45 * r],
                        [centres[1][0] - r * 0.95, y - 0.3 * r]]), col, thick, False))
        return out


_RIGS: dict[tuple[FaceIdentity, int], _Rig] = {}


def _rig(ident: FaceIdentity, size: int) -> _Rig:
    key = (ident, size)
    rig = _RIGS.get(key)
    if rig is None:
        if len(_RIGS) >= 8:
            _RIGS.pop(next(iter(_RIGS)))
        rig = _RIGS[key] = _Rig(ident, static_layers(ident, size))
    return rig


# ----------------------------------------------------------------------------- features


def _clamp_between(pts: np.ndarray, xs: np.ndarray, top: np.ndarray, bot: np.ndarray) -> np.ndarray:
    """Clamp polygon y between two curves sampled at ascending or descending ``xs`` (clips a shape to a lens)."""
    if xs[0] > xs[-1]:
        xs, top, bot = xs[::-1], top[::-1], bot[::-1]
    lo = np.interp(pts[:, 0], xs, top)
    hi = np.interp(pts[:, 0], xs, bot)
    out = pts.copy()
    out[:, 1] = np.minimum(np.maximum(pts[:, 1], lo), np.maximum(hi, lo))
    return out


def _draw_eyes(img: np.ndarray, rig: _Rig, st: FrameState) -> None:
    key = (round(_clip01(st.blink) * 24), round(_clip01(st.smile) * 12))
    g, u = rig.g, rig.g.u
    ew = g.eye_w
    box = rig.sprites.get("eye_box")
    if box is None:
        pad = 3 * u
        ys = [e[2].min() - ew - pad for e in rig.eyes] + [e[2].max() + ew + pad for e in rig.eyes]
        xs = [e[1].min() - pad for e in rig.eyes] + [e[1].max() + pad for e in rig.eyes]
        box = rig.sprites["eye_box"] = (max(0, int(min(ys))), min(g.size, int(max(ys)) + 1),
                                         max(0, int(min(xs))), min(g.size, int(max(xs)) + 1))
    y0, y1, x0, x1 = box
    cached = rig.sprites.get(key)
    if cached is not None:
        img[y0:y1, x0:x1] = cached
        return
    blink, smile = key[0] / 24, key[1] / 12
    open_ = 1.0 - blink
    for side, x, base, bump_u, bump_l, (icx, icy) in rig.eyes:
        lower = base + bump_l * (1 - 0.7 * blink - 0.17 * smile)
        upper_open = base - bump_u * (1 - 0.12 * smile)
        upper = lower + (upper_open - lower) * open_
        up_pts, lo_pts = _xy(x, upper), _xy(x, lower)
        if float((lower - upper).max()) > 0.25:
            _fill(img, np.concatenate([up_pts, lo_pts[::-1]]), rig.sclera)
            r = rig.iris_r
            for rad, col in ((r, rig.iris_dark), (r * 0.8, rig.iris_col), (r * 0.45, (12.0, 10.0, 10.0, 255.0))):
                _fill(img, _clamp_between(_CIRCLE * rad + (icx, icy), x, upper, lower), col)
            hl = _CIRCLE[::3] * max(0.18 * r, 0.45 * u) + (icx - 0.3 * r, icy - 0.35 * r)
            _fill(img, _clamp_between(hl, x, upper, lower), (250.0, 250.0, 250.0, 255.0))
            car = _CIRCLE[::3] * 0.15 * ew + (x[0] + side * 0.12 * ew, (upper[0] + lower[0]) / 2)
            _fill(img, _clamp_between(car, x, upper, lower), (222.0, 172.0, 165.0, 255.0))
            shadow = np.concatenate([up_pts, _xy(x, np.minimum(upper + 0.22 * ew, lower))[::-1]])
            _fill(img, shadow, rig.sclera_shadow)
        crease = upper + (upper_open - rig.crease_gap - upper) * (1.0 - 0.6 * blink)
        _line(img, _xy(x[2:-1], crease[2:-1]), rig.crease_col, 0.6 * u)
        _line(img, up_pts, (28.0, 20.0, 18.0, 255.0), rig.lash_w)
        if rig.ident.eyeliner:
            flick = np.array([up_pts[-1], up_pts[-1] + (side * 1.8 * u, -1.2 * u)])
            _line(img, flick, (20.0, 15.0, 15.0, 255.0), 0.9 * u)
        _line(img, lo_pts[1:-1], rig.lower_lid_col, 0.5 * u)
    if len(rig.sprites) > 300:
        rig.sprites = {"eye_box": box}
    rig.sprites[key] = img[y0:y1, x0:x1].copy()


def _draw_brows(img: np.ndarray, rig: _Rig, st: FrameState) -> tuple[np.ndarray, np.ndarray]:
    dy = -(st.brow * 1.6 + st.smile * 0.5) * rig.g.u
    polys = [b + (0.0, dy) for b in rig.brows]
    if not rig.brow_occluded:
        for poly in polys:
            _fill(img, poly, rig.brow_col)
    else:  # a fringe covers the brows: draw them under the hair
        hair = rig.layers.hair_front
        for poly in polys:
            lo, hi = poly.min(0) - 1, poly.max(0) + 1
            roi = _Roi(img, lo[0], lo[1], hi[0], hi[1])
            if not roi.ok:
                continue
            patch = roi.view.copy()
            _fill(patch, roi.local(poly), rig.brow_col)
            m = roi.mask(poly).astype(np.float32) * (1.0 - hair[roi.y0:roi.y1, roi.x0:roi.x1])
            _blend(roi.view, patch, m.astype(np.uint8))
    return polys[0].mean(0), polys[1].mean(0)


@dataclass
class _MouthShape:
    upper_outer: np.ndarray
    upper_inner: np.ndarray
    lower_inner: np.ndarray
    lower_outer: np.ndarray
    corners: np.ndarray  # (2, 2) left, right
    gap: float


def _mouth_shape(rig: _Rig, st: FrameState) -> _MouthShape:
    ident, g = rig.ident, rig.g
    u = g.u
    mx, my = g.mouth
    o, w, r = _clip01(st.openness), _clip01(st.width), _clip01(st.rounding)
    t, c, sm = _clip01(st.teeth), _clip01(st.lip_contact), _clip01(st.smile)
    press = c * (1 - t) * (1 - o)
    tuck = c * t
    hw = g.mouth_w * (0.72 + 0.6 * w) * (1 - 0.3 * r) + sm * 1.6 * u
    gap = o * _GAP * g.mouth_w
    s = _S_MOUTH
    k = rig.one_m_s2
    x = mx + s * hw
    lift = sm * 2.0 * u - 0.5 * u * o
    yc = my - lift * (1 - k) + 0.25 * u * k * o
    sw = 1.0 - 0.28 * r  # fraction of the width that opens
    q = np.clip(1 - (np.abs(s) / sw) ** (2.0 + 1.5 * r), 0, None) ** (0.55 + 0.25 * (1 - r))
    U = ident.upper_lip * u * (1 + 0.35 * r - 0.35 * press - 0.2 * sm)
    L = ident.lower_lip * u * (1 + 0.3 * r - 0.4 * press - 0.35 * tuck - 0.15 * sm)
    bow = k ** (0.8 - 0.4 * r) * (1 - (0.25 * rig.bow_dip - 0.12 * rig.bow_peaks) * (1 - r))
    up_in = yc - 0.32 * gap * q
    lo_in = yc + 0.68 * gap * q - tuck * 0.8 * u * k
    up_out = up_in - U * bow - r * 0.6 * u * k
    lo_out = lo_in + L * k ** (0.6 - 0.3 * r)
    return _MouthShape(
        upper_outer=_xy(x, up_out), upper_inner=_xy(x, up_in), lower_inner=_xy(x, lo_in), lower_outer=_xy(x, lo_out),
        corners=np.array([[x[0], yc[0]], [x[-1], yc[-1]]]), gap=gap,
    )


def _draw_mouth(img: np.ndarray, rig: _Rig, st: FrameState, ms: _MouthShape) -> None:
    u = rig.g.u
    t, c = _clip01(st.teeth), _clip01(st.lip_contact)
    tuck = c * t
    uo, ui, li, lo = ms.upper_outer, ms.upper_inner, ms.lower_inner, ms.lower_outer
    # soft edge (a slightly larger half-tone outline), lower lip, upper lip, gloss
    _fill(img, np.concatenate([uo + (0, -0.35 * u), lo[::-1] + (0, 0.45 * u)]), rig.lip_edge_col)
    _fill(img, np.concatenate([uo, lo[::-1]]), rig.lip_col)
    _fill(img, np.concatenate([uo, ui[::-1]]), rig.upper_lip_col)
    lh = float(lo[10, 1] - li[10, 1])
    if lh > 1.2 * u:
        hw = 0.5 * (ms.corners[1, 0] - ms.corners[0, 0])
        cx, cy = lo[10, 0], li[10, 1] * 0.45 + lo[10, 1] * 0.55
        cv2.ellipse(img, (int(round(cx * _ONE)), int(round(cy * _ONE))),
                    (max(1, int(0.4 * hw * _ONE)), max(1, int(0.16 * lh * _ONE))), 0, 0, 360,
                    rig.lip_gloss_col, -1, cv2.LINE_AA, _SHIFT)
    top, bot = ui[:, 1], li[:, 1]
    opening = float((bot - top).max())
    if opening > 0.3:
        x = ui[:, 0]
        _fill(img, np.concatenate([ui, li[::-1]]), (*_INTERIOR_T, 255.0))
        # tongue resting at the bottom of the cavity
        tongue_h = 0.3 * max(0.0, opening - 4.0 * u) * np.clip(rig.one_m_s2 * 1.6, 0, 1)
        if tongue_h.max() > 0.2:
            _fill(img, np.concatenate([li, _xy(x, np.maximum(bot - tongue_h, top))[::-1]]), (*_TONGUE_T, 255.0))
        th = t * min(0.75 * opening + 0.8 * u, 3.8 * u)
        if th > 0.2:  # upper teeth hang from the upper lip
            tb = np.minimum(top + th, bot)
            _fill(img, np.concatenate([ui[3:18], _xy(x[3:18], tb[3:18])[::-1]]), (*_TEETH_T, 255.0))
            _line(img, _xy(x[4:17], tb[4:17]), _TEETH_EDGE, 0.5 * u)
        if st.viseme == _DENTAL and opening > 0.8 * u:  # tongue tip between the teeth (th)
            hw = 0.5 * (x[-1] - x[0])
            tip = _CIRCLE * (0.3 * hw, 0.5 * opening) + (0.5 * (x[0] + x[-1]), float(bot[10]) - 0.2 * opening)
            _fill(img, _clamp_between(tip, x, top, bot), _TONGUE_TIP)
        if st.openness > 0.5 and t > 0.2:  # lower teeth when the jaw is wide open
            lt = np.maximum(bot - 0.12 * opening * t, top)
            _fill(img, np.concatenate([li[6:15], _xy(x[6:15], lt[6:15])[::-1]]), _LOWER_TEETH)
    if tuck > 0.3:  # labiodental: upper teeth rest on the tucked lower lip
        x = ui[5:16, 0]
        _fill(img, np.concatenate([_xy(x, top[5:16] - 0.2 * u), _xy(x, top[5:16] + tuck * 1.0 * u)[::-1]]),
              _TUCK_TEETH)
    if opening <= 0.6:  # lip junction
        press = c * (1 - t)
        _line(img, (ui + li) / 2, _c4(rig.lip * (0.55 - 0.15 * press)), (0.6 + 0.4 * press) * u)
    else:
        _line(img, ui, rig.inner_edge_col, 0.5 * u)
    for k in (0, -1):  # corner dimples
        _circle(img, (ui[k, 0], ui[k, 1]), 0.55 * u, rig.corner_col)


def _draw_glasses(img: np.ndarray, rig: _Rig) -> None:
    for pts, col, thick, closed in rig.glasses:
        cv2.polylines(img, [pts], closed, col, thick, cv2.LINE_AA, _SHIFT)


# ----------------------------------------------------------------------------- pose


def _pose(g: FaceGeometry, st: FrameState) -> tuple[np.ndarray, np.ndarray, float]:
    """Forward similarity matrix (2x3), parallax vector per depth pixel, jaw drop in pixels."""
    u = g.u
    a = np.deg2rad(st.roll)
    ca, sa = np.cos(a), np.sin(a)
    px, py = g.pivot
    tx, ty = st.tx * u, st.ty * u
    fwd = np.array([[ca, -sa, px - ca * px + sa * py + tx], [sa, ca, py - sa * px - ca * py + ty]])
    v = np.array([np.sin(np.deg2rad(st.yaw)), -np.sin(np.deg2rad(st.pitch))])
    drop = 0.45 * float(np.clip(st.openness, 0, 1)) * _GAP * g.mouth_w
    return fwd, v, drop


def _sample_fields(fields: np.ndarray, pts: np.ndarray) -> np.ndarray:
    mx = pts[:, 0].astype(np.float32).reshape(1, -1)
    my = pts[:, 1].astype(np.float32).reshape(1, -1)
    return cv2.remap(fields, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[0]


def _forward(layers: StaticLayers, pts: np.ndarray, fwd: np.ndarray, v: np.ndarray, drop: float) -> np.ndarray:
    """Canonical points -> output pixels (inverse of the remap used for the image)."""
    pts = np.asarray(pts, np.float64)
    q = pts.copy()
    for _ in range(4):  # q = pts + F(q): fixed point of the parallax / jaw displacement
        f = _sample_fields(layers.fields, q)
        q = pts + np.stack([v[0] * f[:, 0], v[1] * f[:, 0] + drop * f[:, 1]], 1)
    return q @ fwd[:, :2].T + fwd[:, 2]


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _GRIDS:
        c = np.arange(size, dtype=np.float32)
        _GRIDS[size] = (np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size))),
                        np.ascontiguousarray(np.broadcast_to(c[:, None], (size, size))))
    return _GRIDS[size]


def _warp(layers: StaticLayers, head: np.ndarray, fwd: np.ndarray, v: np.ndarray, drop: float) -> np.ndarray:
    size = head.shape[0]
    X, Y = _grid(size)
    inv = cv2.invertAffineTransform(fwd).astype(np.float32)
    mx = inv[0, 0] * X + inv[0, 1] * Y + inv[0, 2]
    my = inv[1, 0] * X + inv[1, 1] * Y + inv[1, 2]
    f = cv2.remap(layers.fields, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    depth, jaw = f[..., 0], f[..., 1]
    mx -= np.float32(v[0]) * depth
    my -= np.float32(v[1]) * depth + np.float32(drop) * jaw
    return cv2.remap(head, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))


# ----------------------------------------------------------------------------- public API


def render_frame(identity: FaceIdentity, state: FrameState, size: int = 128) -> RenderedFrame:
    """Draw ``identity`` in ``state`` as a (size, size, 3) uint8 RGB frame with landmarks."""
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise RenderError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}", "use e.g. 128 or 256")
    rig = _rig(identity, int(size))
    layers, g = rig.layers, rig.g
    head = layers.head.copy()
    _draw_eyes(head, rig, state)
    brow_l, brow_r = _draw_brows(head, rig, state)
    ms = _mouth_shape(rig, state)
    _draw_mouth(head, rig, state, ms)
    _draw_glasses(head, rig)

    fwd, v, drop = _pose(g, state)
    warped = _warp(layers, head, fwd, v, drop)
    alpha = cv2.cvtColor(warped[..., 3], cv2.COLOR_GRAY2RGB)
    image = cv2.add(warped[..., :3], cv2.multiply(layers.body, 255 - alpha, scale=1.0 / 255.0))

    mid = len(ms.upper_outer) // 2
    jaw_y = g.mouth[1] + 2 * g.u
    jaw_hw = float(g.half_width_at(jaw_y, identity.jaw_power, identity.skull_power, identity.chin_w))
    canon = np.array([
        g.eye_l, g.eye_r, g.nose_tip, ms.corners[0], ms.corners[1], ms.upper_outer[mid], ms.lower_outer[mid],
        (g.cx, g.chin_y), ms.upper_inner[mid], ms.lower_inner[mid], brow_l, brow_r,
        (g.cx - jaw_hw, jaw_y), (g.cx + jaw_hw, jaw_y), (g.cx, g.eye_y), (g.cx, g.cy - 0.6 * g.fh),
    ], dtype=np.float64)
    landmarks = _forward(layers, canon, fwd, v, drop).astype(np.float32)
    return RenderedFrame(image=image, landmarks=landmarks)


def render_portrait(identity: FaceIdentity, size: int = 256) -> np.ndarray:
    """A neutral frame at rest (mouth closed, eyes open, head straight): the default avatar image."""
    return render_frame(identity, FrameState(), size).image
