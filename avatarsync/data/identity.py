"""Procedural face identities: every appearance parameter of a drawn face.

``sample_identity(identity_id, seed)`` maps a dense integer id to one face,
deterministically. Geometry is in "canonical units": pixels of a 128 px
frame (the renderer scales them with the output size). Colours are RGB
tuples of ints 0..255. Categorical choices are strings from the tuples
below, so a FaceIdentity prints readably and hashes (the renderer caches its
static layers per identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

RGB = tuple[int, int, int]

HAIR_STYLES = ("bald", "buzz", "short", "side_part", "quiff", "bob", "long", "bun", "ponytail", "curly", "afro")
EYE_SHAPES = ("almond", "round", "narrow", "hooded", "upturned")
BROW_SHAPES = ("straight", "arched", "angled", "soft")
NOSE_SHAPES = ("straight", "button", "broad", "long")
BACKGROUNDS = ("solid", "vgradient", "radial", "stripes", "diagonal", "bokeh", "room", "tiles")
CLOTHING = ("crew", "vneck", "collar", "hoodie", "turtleneck", "striped")
GLASSES = ("none", "round", "rect", "browline")
EARRINGS = ("none", "stud", "hoop")
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "full")
HATS = ("none", "beanie", "cap", "headband")

# Skin tone anchors from very light to very deep; sampled by interpolation.
_SKIN_ANCHORS = np.array(
    [
        [250, 222, 200],
        [238, 200, 170],
        [226, 180, 145],
        [205, 155, 115],
        [180, 128, 90],
        [150, 100, 68],
        [118, 78, 54],
        [88, 58, 42],
        [68, 45, 34],
    ],
    dtype=np.float64,
)
_HAIR_COLOURS: tuple[tuple[RGB, float], ...] = (
    ((22, 18, 18), 0.22),  # black
    ((52, 34, 24), 0.20),  # dark brown
    ((92, 60, 36), 0.14),  # brown
    ((140, 96, 60), 0.08),  # light brown
    ((128, 56, 30), 0.06),  # auburn
    ((178, 92, 44), 0.05),  # ginger
    ((206, 166, 104), 0.07),  # blonde
    ((228, 212, 172), 0.03),  # platinum
    ((128, 126, 124), 0.06),  # grey
    ((214, 212, 206), 0.04),  # white
    ((62, 72, 150), 0.025),  # dyed blue
    ((160, 58, 120), 0.025),  # dyed magenta
)
_IRIS_COLOURS: tuple[tuple[RGB, float], ...] = (
    ((70, 42, 24), 0.35),  # dark brown
    ((110, 70, 38), 0.2),  # brown
    ((120, 100, 50), 0.1),  # hazel
    ((70, 110, 150), 0.15),  # blue
    ((80, 120, 80), 0.1),  # green
    ((110, 120, 125), 0.1),  # grey
)


class IdentityError(InputError):
    """A bad identity id or seed."""


@dataclass(frozen=True)
class FaceIdentity:
    """All appearance parameters of one procedural face (canonical units: 128 px frame)."""

    identity_id: int
    seed: int
    # head geometry
    face_cx: float  # face centre x
    face_cy: float  # face centre y (eye line sits near here)
    face_w: float  # half-width at the cheekbones
    face_h: float  # half-height (skull top to chin is 2 * face_h)
    jaw_power: float  # superellipse exponent of the lower face: 1.7 pointed .. 3.2 square
    skull_power: float  # exponent of the upper head
    chin_w: float  # extra chin width 0..1
    neck_w: float  # neck half-width
    ear_size: float
    # skin
    skin: RGB
    blush: float  # cheek redness 0..1
    freckles: float  # 0 none .. 1 many
    mole: bool
    # hair
    hair_style: str
    hair_colour: RGB
    hair_volume: float  # 0..1
    hairline: float  # forehead height 0 low .. 1 high/receding
    hair_part: float  # -1 left .. 1 right
    fringe: float  # 0 none .. 1 heavy bangs
    # eyes and brows
    eye_shape: str
    eye_size: float  # half-width of the eye opening
    eye_gap: float  # half the distance between eye centres
    eye_y: float  # eye line offset from face_cy
    eye_tilt: float  # outer-corner lift, canonical px
    iris: RGB
    eyeliner: bool
    brow_shape: str
    brow_thickness: float
    brow_colour: RGB
    brow_y: float  # brow height above the eye
    # nose
    nose_shape: str
    nose_length: float  # eye line to nose tip
    nose_width: float  # half-width at the nostrils
    # mouth
    mouth_y: float  # mouth line offset below the eye line
    mouth_w: float  # half-width at rest
    lip_colour: RGB
    upper_lip: float  # upper lip thickness
    lower_lip: float  # lower lip thickness
    # scene
    background: str
    bg_colour1: RGB
    bg_colour2: RGB
    bg_param: float  # pattern scale / angle seed 0..1
    clothing: str
    cloth_colour: RGB
    cloth_colour2: RGB
    light_x: float  # key-light direction -1 (from image left) .. 1 (from right)
    light_strength: float
    # accessories
    glasses: str
    glasses_colour: RGB
    earrings: str
    earring_colour: RGB
    facial_hair: str
    hat: str
    hat_colour: RGB

    def describe(self) -> str:
        """One-line human-readable summary (for logs and contact sheets)."""
        acc = [a for a in (self.glasses, self.earrings, self.facial_hair, self.hat) if a != "none"]
        return (
            f"id{self.identity_id}: {self.hair_style} hair, {self.eye_shape} eyes, {self.brow_shape} brows, "
            f"{self.nose_shape} nose, {self.background} bg, {self.clothing}" + (f", {'+'.join(acc)}" if acc else "")
        )


def _pick(rng: np.random.Generator, options: tuple, weights: tuple[float, ...] | None = None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _weighted_colour(rng: np.random.Generator, table: tuple[tuple[RGB, float], ...], jitter: float) -> RGB:
    colour = _pick(rng, tuple(c for c, _ in table), tuple(w for _, w in table))
    return _jitter(rng, colour, jitter)


def _jitter(rng: np.random.Generator, colour, amount: float) -> RGB:
    c = np.asarray(colour, dtype=np.float64) * (1.0 + rng.uniform(-amount, amount)) + rng.normal(0, amount * 40, 3)
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))  # type: ignore[return-value]


def _hsv_colour(rng: np.random.Generator, s_range=(0.2, 0.7), v_range=(0.3, 0.9), hue: float | None = None) -> RGB:
    h = rng.uniform(0, 180) if hue is None else hue
    s = rng.uniform(*s_range) * 255
    v = rng.uniform(*v_range) * 255
    rgb = _hsv_to_rgb(h, s, v)
    return rgb


def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    import cv2

    px = np.array([[[h % 180, s, v]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0]
    return (int(r), int(g), int(b))


def _mix(a, b, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def sample_identity(identity_id: int, seed: int = 0) -> FaceIdentity:
    """Deterministically sample the face for ``identity_id`` (0..N-1) under ``seed``.

    The same (id, seed) always gives the same face; different ids give faces
    that differ in shape, colouring, hair, features, background and
    accessories.
    """
    if not isinstance(identity_id, (int, np.integer)) or identity_id < 0:
        raise IdentityError(f"identity_id must be a non-negative int, got {identity_id!r}", "use ids 0..N-1")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise IdentityError(f"seed must be a non-negative int, got {seed!r}", "pass a seed >= 0")
    rng = np.random.default_rng([int(seed), int(identity_id), 0x5EED_FACE])

    masc = rng.uniform()  # presentation: steers hair length, facial hair, jaw, accessories
    u = rng.uniform
    face_w = u(23.5, 28.5) + 1.0 * masc
    face_h = u(31.5, 36.0)
    jaw_power = float(np.clip(u(1.7, 2.6) + 0.7 * masc, 1.6, 3.3))

    t = rng.beta(1.3, 1.3) * (len(_SKIN_ANCHORS) - 1)
    i0 = int(np.floor(t))
    i1 = min(i0 + 1, len(_SKIN_ANCHORS) - 1)
    skin_arr = _SKIN_ANCHORS[i0] * (1 - (t - i0)) + _SKIN_ANCHORS[i1] * (t - i0)
    skin_arr = skin_arr * u(0.95, 1.04) + np.array([u(-6, 8), u(-6, 4), u(-8, 6)])
    skin = tuple(int(v) for v in np.clip(np.round(skin_arr), 0, 255))
    lightness = float(skin_arr.mean() / 255.0)

    if masc > 0.6:
        style_w = (0.14, 0.1, 0.24, 0.16, 0.12, 0.02, 0.03, 0.01, 0.02, 0.09, 0.07)
    elif masc > 0.4:
        style_w = (0.04, 0.06, 0.14, 0.1, 0.08, 0.12, 0.12, 0.08, 0.08, 0.1, 0.08)
    else:
        style_w = (0.01, 0.02, 0.05, 0.05, 0.03, 0.18, 0.24, 0.13, 0.12, 0.1, 0.07)
    hair_style = _pick(rng, HAIR_STYLES, style_w)
    hair_colour = _weighted_colour(rng, _HAIR_COLOURS, 0.08)
    if lightness < 0.45 and rng.uniform() < 0.7:  # darker skin: mostly dark hair
        hair_colour = _jitter(rng, (24 + rng.integers(0, 25), 18 + rng.integers(0, 15), 16), 0.05)
    brow_colour = _mix(hair_colour, (30, 22, 18), 0.45 if sum(hair_colour) > 350 else 0.15)

    lip_base = _mix(skin, (175, 72, 82), u(0.5, 0.72))
    if masc < 0.45 and rng.uniform() < 0.45:  # lipstick
        lip_base = _pick(rng, ((185, 48, 66), (190, 80, 100), (165, 62, 76), (200, 100, 110), (170, 70, 90)))
        lip_base = _jitter(rng, lip_base, 0.06)
    lip_colour = _mix(lip_base, (0, 0, 0), 0.1) if lightness < 0.4 else lip_base
    # keep lips clearly lighter than the dark mouth interior
    lum = 0.299 * lip_colour[0] + 0.587 * lip_colour[1] + 0.114 * lip_colour[2]
    if lum < 88:
        lip_colour = _mix(lip_colour, (196, 116, 122), min(1.0, (88 - lum) / (150 - lum)))

    background = _pick(rng, BACKGROUNDS, (0.14, 0.18, 0.14, 0.1, 0.08, 0.14, 0.12, 0.1))
    bg_colour1 = _hsv_colour(rng, (0.05, 0.55), (0.35, 0.95))
    bg_colour2 = _hsv_colour(rng, (0.05, 0.6), (0.15, 0.9))

    facial_hair = "none"
    if masc > 0.55:
        facial_hair = _pick(rng, FACIAL_HAIR, (0.45, 0.2, 0.1, 0.1, 0.15))
    glasses = _pick(rng, GLASSES, (0.66, 0.12, 0.14, 0.08))
    earrings = _pick(rng, EARRINGS, (0.5, 0.25, 0.25) if masc < 0.5 else (0.88, 0.1, 0.02))
    hat = _pick(rng, HATS, (0.82, 0.07, 0.07, 0.04))
    if hair_style in ("afro", "bun") and hat in ("beanie", "cap"):
        hat = "none"

    return FaceIdentity(
        identity_id=int(identity_id),
        seed=int(seed),
        face_cx=64.0 + u(-2.0, 2.0),
        face_cy=60.0 + u(-2.5, 2.5),
        face_w=float(face_w),
        face_h=float(face_h),
        jaw_power=jaw_power,
        skull_power=u(2.0, 2.4),
        chin_w=u(0.0, 1.0),
        neck_w=face_w * u(0.5, 0.6) + 1.5 * masc,
        ear_size=u(0.85, 1.15),
        skin=skin,  # type: ignore[arg-type]
        blush=u(0.1, 0.8),
        freckles=float(u(0.3, 1.0)) if (lightness > 0.6 and rng.uniform() < 0.25) else 0.0,
        mole=bool(rng.uniform() < 0.12),
        hair_style=hair_style,
        hair_colour=hair_colour,
        hair_volume=u(0.2, 1.0),
        hairline=u(0.0, 1.0) * (0.5 + 0.5 * masc),
        hair_part=u(-1.0, 1.0),
        fringe=u(0.0, 1.0) if rng.uniform() < 0.35 else 0.0,
        eye_shape=_pick(rng, EYE_SHAPES),
        eye_size=u(6.0, 7.3),
        eye_gap=face_w * u(0.42, 0.5),
        eye_y=u(-1.5, 2.0),
        eye_tilt=u(-0.6, 1.2),
        iris=_weighted_colour(rng, _IRIS_COLOURS, 0.1) if lightness > 0.55 else _jitter(rng, (55, 34, 22), 0.15),
        eyeliner=bool(masc < 0.45 and rng.uniform() < 0.5),
        brow_shape=_pick(rng, BROW_SHAPES),
        brow_thickness=u(1.1, 2.6) + 0.6 * masc,
        brow_colour=brow_colour,
        brow_y=u(5.0, 7.5),
        nose_shape=_pick(rng, NOSE_SHAPES),
        nose_length=u(13.0, 17.0),
        nose_width=u(4.2, 6.2),
        mouth_y=u(21.0, 25.0),
        mouth_w=u(9.5, 12.0),
        lip_colour=lip_colour,
        upper_lip=u(2.2, 3.6),
        lower_lip=u(2.9, 4.6),
        background=background,
        bg_colour1=bg_colour1,
        bg_colour2=bg_colour2,
        bg_param=u(0.0, 1.0),
        clothing=_pick(rng, CLOTHING),
        cloth_colour=_hsv_colour(rng, (0.1, 0.8), (0.2, 0.85)),
        cloth_colour2=_hsv_colour(rng, (0.0, 0.3), (0.6, 0.95)),
        light_x=u(-1.0, 1.0),
        light_strength=u(0.55, 1.0),
        glasses=glasses,
        glasses_colour=_pick(rng, ((20, 20, 22), (70, 40, 25), (150, 150, 155), (120, 30, 30), (190, 160, 90))),
        earrings=earrings,
        earring_colour=_pick(rng, ((215, 180, 80), (200, 200, 205), (230, 230, 235), (40, 40, 40))),
        facial_hair=facial_hair,
        hat=hat,
        hat_colour=_hsv_colour(rng, (0.2, 0.8), (0.2, 0.8)),
    )
