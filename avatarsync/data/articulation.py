"""From a phoneme track to per-frame face states (mouth, eyes, head pose, expression).

Mouth parameters follow a dominance-function coarticulation model (after
Cohen & Massaro): every phone pulls each parameter towards its viseme's
target with a weight that is flat over the phone and decays exponentially
outside it; a frame's value is the weighted mean of the targets. Bilabials
and labiodentals are highly dominant over the jaw and lip contact (so p/b/m
close the lips even when short), rounded vowels spread their rounding far
ahead (anticipatory rounding), and silence pulls to rest. A closure the
frame grid would miss is put on the nearest frame. Blinks, head motion and
expression drift come from a seeded generator, so ``articulate`` is
deterministic for (track, n_frames, fps, seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import InputError
from ..phonemes.track import PhonemeTrack
from ..phonemes.visemes import VISEME_INDEX, VISEMES

MOUTH_PARAMS = ("openness", "width", "rounding", "teeth", "lip_contact")
# contact strength per class: 1 for lips pressed (bilabial) or lip on teeth (labiodental);
# silence keeps the lips relaxed-closed (lightly touching).
_CONTACT = {"bilabial": 1.0, "labiodental": 1.0, "rest": 0.35}
# (alpha, tau seconds) of the dominance function per viseme class and parameter group
_JAW, _LIPS, _TOUCH = 0, 1, 2
_DOMINANCE: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "rest": ((1.0, 0.04), (0.8, 0.06), (1.0, 0.04)),
    "bilabial": ((6.0, 0.02), (0.6, 0.03), (6.0, 0.02)),
    "labiodental": ((4.0, 0.02), (0.6, 0.03), (4.0, 0.02)),
    "dental": ((0.9, 0.03), (0.35, 0.03), (0.9, 0.03)),
    "alveolar": ((0.7, 0.03), (0.3, 0.03), (0.7, 0.03)),
    "postalveolar": ((0.8, 0.03), (1.6, 0.08), (0.8, 0.03)),
    "velar": ((0.6, 0.03), (0.3, 0.03), (0.6, 0.03)),
    "open_vowel": ((1.1, 0.04), (1.0, 0.05), (1.0, 0.04)),
    "mid_vowel": ((1.0, 0.04), (1.0, 0.05), (1.0, 0.04)),
    "spread_vowel": ((1.0, 0.04), (1.2, 0.06), (1.0, 0.04)),
    "rounded_vowel": ((1.0, 0.04), (2.0, 0.1), (1.0, 0.04)),
}
_PARAM_GROUP = {"openness": _JAW, "teeth": _JAW, "width": _LIPS, "rounding": _LIPS, "lip_contact": _TOUCH}
_CLOSED = 0.02  # openness forced on the frame nearest a bilabial


class ArticulationError(InputError):
    """Bad arguments to ``articulate``."""


@dataclass
class FrameState:
    """Everything the renderer needs for one frame.

    Mouth parameters are in viseme units (see ``phonemes.visemes``);
    ``lip_contact`` 0..1 (1 pressed lips / lip on teeth); ``blink`` 0 open ..
    1 closed; ``yaw`` (positive: face turns towards image right), ``pitch``
    (positive: chin up) and ``roll`` (positive: clockwise on screen) in
    degrees; ``tx``, ``ty`` head shift in pixels of a 128 px frame (scaled
    with the output size); ``smile`` 0..1; ``brow`` raise -1..1;
    ``viseme`` index of the dominant viseme class (``VISEME_INDEX``).
    """

    openness: float = 0.0
    width: float = VISEMES[0].width
    rounding: float = 0.0
    teeth: float = 0.0
    lip_contact: float = _CONTACT["rest"]
    blink: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    smile: float = 0.0
    brow: float = 0.0
    viseme: int = 0

    @classmethod
    def for_viseme(cls, name: str, **overrides: float) -> "FrameState":
        """The state showing viseme class ``name`` fully articulated (neutral pose)."""
        v = VISEMES[VISEME_INDEX[name]]
        st = cls(openness=v.openness, width=v.width, rounding=v.rounding, teeth=v.teeth,
                 lip_contact=_CONTACT.get(name, 0.0), viseme=VISEME_INDEX[name])
        for k, val in overrides.items():
            setattr(st, k, val)
        return st


_FLOAT_KEYS = tuple(f.name for f in fields(FrameState) if f.name != "viseme")


def _segments(track: PhonemeTrack, t_end: float) -> list[tuple[float, float, str]]:
    """Phones plus explicit rest segments for every gap, covering [0, t_end]."""
    phones = sorted(track.phones or track.units, key=lambda p: p.start)
    segs: list[tuple[float, float, str]] = []
    t = 0.0
    for p in phones:
        if p.viseme not in VISEME_INDEX:
            raise ArticulationError(f"phone {p.symbol!r} has unknown viseme {p.viseme!r}",
                                    "use a class name from avatarsync.phonemes.visemes.VISEME_NAMES")
        if p.start > t + 1e-6:
            segs.append((t, p.start, "rest"))
        start = max(p.start, t)
        if p.end > start:
            segs.append((start, p.end, p.viseme))
            t = p.end
    if t_end > t + 1e-6:
        segs.append((t, t_end, "rest"))
    return segs


def _mouth_tracks(segs: list[tuple[float, float, str]], times: np.ndarray) -> dict[str, np.ndarray]:
    starts = np.array([s for s, _, _ in segs])
    ends = np.array([e for _, e, _ in segs])
    names = [v for _, _, v in segs]
    targets = {
        "openness": np.array([VISEMES[VISEME_INDEX[v]].openness for v in names]),
        "width": np.array([VISEMES[VISEME_INDEX[v]].width for v in names]),
        "rounding": np.array([VISEMES[VISEME_INDEX[v]].rounding for v in names]),
        "teeth": np.array([VISEMES[VISEME_INDEX[v]].teeth for v in names]),
        "lip_contact": np.array([_CONTACT.get(v, 0.0) for v in names]),
    }
    alpha = np.array([[_DOMINANCE[v][g][0] for g in range(3)] for v in names])  # (S, 3)
    tau = np.array([[_DOMINANCE[v][g][1] for g in range(3)] for v in names])
    out = {k: np.zeros(len(times)) for k in MOUTH_PARAMS}
    for lo in range(0, len(times), 256):  # chunk frames to bound memory on long tracks
        t = times[lo:lo + 256, None]
        dist = np.maximum(0.0, np.maximum(starts[None] - t, t - ends[None]))  # (T, S)
        for g in range(3):
            w = alpha[None, :, g] * np.exp(-dist / tau[None, :, g])
            wsum = w.sum(1) + 1e-12
            for name, grp in _PARAM_GROUP.items():
                if grp == g:
                    out[name][lo:lo + 256] = (w * targets[name][None]).sum(1) / wsum
    return out


def _smooth_noise(rng: np.random.Generator, times: np.ndarray, std: float, fmin: float, fmax: float,
                  n: int = 4) -> np.ndarray:
    """Sum of a few random sinusoids: smooth, zero-mean, roughly ``std`` standard deviation."""
    freqs = rng.uniform(fmin, fmax, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.5, 1.0, n)
    sig = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * times[None] + phases[:, None])).sum(0)
    return sig * std / np.sqrt(0.5 * (amps**2).sum())


def _blinks(rng: np.random.Generator, times: np.ndarray, t_end: float) -> np.ndarray:
    blink = np.zeros_like(times)
    t = rng.uniform(0.4, 2.5)
    while t < t_end:
        close, hold, open_ = rng.uniform(0.045, 0.07), rng.uniform(0.02, 0.05), rng.uniform(0.08, 0.12)
        dt = times - t
        up = 0.5 - 0.5 * np.cos(np.pi * np.clip(dt / close, 0, 1))
        down = 0.5 + 0.5 * np.cos(np.pi * np.clip((dt - close - hold) / open_, 0, 1))
        b = np.where(dt < close + hold, up, down) * (dt >= 0) * (dt <= close + hold + open_)
        blink = np.maximum(blink, b)
        if rng.uniform() < 0.1:  # occasional double blink
            t += close + hold + open_ + rng.uniform(0.12, 0.25)
        else:
            t += rng.uniform(2.0, 6.0)
    return blink


def articulate(track: PhonemeTrack, n_frames: int, fps: float = 25.0, seed: int = 0) -> list[FrameState]:
    """Per-frame face states for ``track`` sampled at frame centres ``(k + 0.5) / fps``."""
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
        raise ArticulationError(f"n_frames must be a non-negative int, got {n_frames!r}")
    if not fps > 0:
        raise ArticulationError(f"fps must be positive, got {fps!r}")
    if n_frames == 0:
        return []
    rng = np.random.default_rng([int(seed), 0xA271C])
    times = (np.arange(n_frames) + 0.5) / fps
    t_end = max(float(track.duration), n_frames / fps)
    segs = _segments(track, t_end)
    mouth = _mouth_tracks(segs, times)

    gain = rng.uniform(0.85, 1.08)  # speaker's articulation strength
    mouth["openness"] = np.clip(mouth["openness"] * gain, 0, 1)

    # dominant class: the segment covering the frame centre
    starts = np.array([s for s, _, _ in segs])
    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segs) - 1)
    visemes = np.array([VISEME_INDEX[segs[i][2]] for i in idx], dtype=np.int64)
    # closures the frame grid would miss: force the nearest frame
    for s, e, v in segs:
        if v not in ("bilabial", "labiodental"):
            continue
        inside = np.nonzero((times >= s) & (times < e))[0]
        ks = inside if len(inside) else np.array([int(np.clip(np.floor((s + e) / 2 * fps), 0, n_frames - 1))])
        target = VISEMES[VISEME_INDEX[v]]
        for k in ks:
            if v == "bilabial":
                mouth["openness"][k] = min(mouth["openness"][k], _CLOSED)
            else:
                mouth["openness"][k] = min(mouth["openness"][k], target.openness + 0.03)
                mouth["teeth"][k] = max(mouth["teeth"][k], 0.7)
            mouth["lip_contact"][k] = max(mouth["lip_contact"][k], 0.9)
            visemes[k] = VISEME_INDEX[v]

    # speech energy (smoothed openness) drives small nods and brow raises
    energy = np.convolve(mouth["openness"], np.ones(7) / 7, mode="same")
    blink = _blinks(rng, times, t_end)
    yaw = np.clip(_smooth_noise(rng, times, 1.8, 0.04, 0.35), -6, 6)
    pitch = np.clip(_smooth_noise(rng, times, 1.2, 0.05, 0.4) + 1.2 * (energy - energy.mean()), -5, 5)
    roll = np.clip(_smooth_noise(rng, times, 1.0, 0.03, 0.3), -4, 4)
    tx = np.clip(_smooth_noise(rng, times, 0.9, 0.03, 0.3), -3, 3)
    ty = np.clip(_smooth_noise(rng, times, 0.6, 0.05, 0.4), -2, 2)
    smile = np.clip(rng.uniform(0.0, 0.3) + _smooth_noise(rng, times, 0.12, 0.02, 0.1, 3), 0, 1)
    brow = np.clip(_smooth_noise(rng, times, 0.25, 0.05, 0.3, 3) + 0.6 * (energy - energy.mean()), -1, 1)

    cols = {**mouth, "blink": blink, "yaw": yaw, "pitch": pitch, "roll": roll, "tx": tx, "ty": ty,
            "smile": smile, "brow": brow}
    return [FrameState(**{k: float(cols[k][i]) for k in _FLOAT_KEYS}, viseme=int(visemes[i])) for i in range(n_frames)]


def truth_arrays(states: list[FrameState]) -> dict[str, np.ndarray]:
    """Per-frame ground truth: ``viseme`` int64, every other FrameState field float32, each shape (N,)."""
    out: dict[str, np.ndarray] = {"viseme": np.array([s.viseme for s in states], dtype=np.int64)}
    for k in _FLOAT_KEYS:
        out[k] = np.array([getattr(s, k) for s in states], dtype=np.float32)
    return out


def state_dict(state: FrameState) -> dict:
    """A FrameState as a plain dict (for JSON)."""
    return asdict(state)
