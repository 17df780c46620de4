"""Frame schedule: keyframe timestamps + audio duration -> output frames at a fixed fps.

Keyframes arrive at phoneme rate (one per unit, at the unit's centre). The
video needs ``round(duration * fps)`` frames at ``t_j = j / fps``. Each output
frame is assigned to exactly one keyframe pair ``(k, k + 1)`` with a relative
position ``tau = (t - t_k) / (t_{k+1} - t_k)`` in ``[0, 1]``. Frames before the
first keyframe hold it (pair 0, ``tau = 0``); frames at or after the last
keyframe hold the last one (pair K-2, ``tau = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..phonemes.track import SILENCE, PhonemeTrack, PhonemeUnit
from ..phonemes.visemes import VISEME_INDEX


class ScheduleError(InputError):
    """Keyframe times or a duration that no frame schedule can be built from."""


def n_output_frames(duration: float, fps: float = 25.0) -> int:
    """Frames covering ``duration`` seconds at ``fps``: ``duration * fps`` rounded half up.

    A relative tolerance absorbs float noise (``0.28 * 25 = 7.000000000000001``).
    """
    if not (math.isfinite(duration) and duration > 0):
        raise ScheduleError(f"audio duration must be a positive number of seconds, got {duration!r}",
                            "pass the length of the speech track")
    if not (math.isfinite(fps) and fps > 0):
        raise ScheduleError(f"fps must be positive, got {fps!r}", "use e.g. fps=25")
    x = duration * fps
    n = int(math.floor(x + 0.5 + 1e-9 * max(1.0, x)))
    if n < 1:
        raise ScheduleError(f"audio of {duration:.4f}s is shorter than half a frame at {fps} fps",
                            "give at least one frame's worth of audio")
    return n


def pad_to_frames(audio: np.ndarray, sample_rate: int, track: PhonemeTrack, fps: float) -> tuple[np.ndarray, PhonemeTrack, int]:
    """Pad audio with silence to a whole number of frames; extend the track to match."""
    n_frames = max(1, math.ceil(len(audio) / sample_rate * fps - 1e-9))
    n_samples = int(round(n_frames / fps * sample_rate))
    audio = np.pad(audio, (0, max(0, n_samples - len(audio))))[:n_samples]
    duration = n_samples / sample_rate

    def extend(units: list[PhonemeUnit]) -> list[PhonemeUnit]:
        if not units:
            return [PhonemeUnit(SILENCE, 0.0, duration, "rest")]
        last = units[-1]
        if last.end >= duration - 1e-9:
            return units
        if last.symbol == SILENCE:
            return units[:-1] + [PhonemeUnit(SILENCE, last.start, duration, "rest")]
        return units + [PhonemeUnit(SILENCE, last.end, duration, "rest")]

    new = PhonemeTrack(units=extend(list(track.units)), lang=track.lang, duration=duration,
                       source=track.source, phones=extend(list(track.phones)))
    return audio, new, n_frames


def keyframe_times(track: PhonemeTrack) -> np.ndarray:
    """Keyframe timestamps: the centre of each character-level unit, in seconds."""
    if not track.units:
        raise ScheduleError("the phoneme track has no units, so there are no keyframes",
                            "check the text/audio front end produced a non-empty track")
    return np.array([0.5 * (u.start + u.end) for u in track.units], dtype=np.float64)


@dataclass(frozen=True)
class FrameSchedule:
    """Assignment of every output frame to one keyframe pair.

    ``left[j]`` / ``right[j]`` are keyframe indices (equal only when there is a
    single keyframe); ``pair[j] == left[j]`` indexes pairs ``(k, k+1)``.
    """

    fps: float
    duration: float
    key_times: np.ndarray  # (K,) seconds, non-decreasing
    times: np.ndarray  # (N,) output frame times, (j + phase) / fps
    left: np.ndarray  # (N,) int64
    right: np.ndarray  # (N,) int64
    tau: np.ndarray  # (N,) float64 in [0, 1]

    @property
    def n_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def pair(self) -> np.ndarray:
        return self.left

    @property
    def interval(self) -> np.ndarray:
        """Seconds between each frame's two keyframes (0 for a single keyframe)."""
        return self.key_times[self.right] - self.key_times[self.left]

    @property
    def hold(self) -> np.ndarray:
        """True where a frame lies outside the keyframe span and just holds an end keyframe."""
        return (self.times < self.key_times[0]) | (self.times >= self.key_times[-1])

    def is_keyframe_copy(self, eps: float = 1e-6) -> np.ndarray:
        """Frames that equal a keyframe exactly (tau at 0 or 1, holds, single keyframe)."""
        return (self.left == self.right) | (self.tau <= eps) | (self.tau >= 1.0 - eps)


def frame_schedule(key_times: np.ndarray | list[float], duration: float, fps: float = 25.0,
                   phase: float = 0.5) -> FrameSchedule:
    """Map keyframe timestamps and the audio duration to output frames at ``fps``.

    Frame j shows time ``(j + phase) / fps``.
    Keyframe times must be finite and non-decreasing; repeated times are allowed
    (a zero-length pair never receives frames).
    """
    kt = np.asarray(key_times, dtype=np.float64).reshape(-1)
    if kt.size == 0:
        raise ScheduleError("no keyframe times given", "pass at least one keyframe timestamp")
    if not np.all(np.isfinite(kt)):
        raise ScheduleError("keyframe times contain NaN or infinity", "pass finite timestamps in seconds")
    if np.any(np.diff(kt) < 0):
        raise ScheduleError("keyframe times must be non-decreasing", "sort the keyframes by time")
    n = n_output_frames(duration, fps)
    times = (np.arange(n, dtype=np.float64) + phase) / fps
    if kt.size == 1:
        zeros = np.zeros(n, dtype=np.int64)
        return FrameSchedule(fps, float(duration), kt, times, zeros, zeros.copy(), np.zeros(n))
    k = np.searchsorted(kt, times, side="right") - 1  # kt[k] <= t < kt[k+1]
    left = np.clip(k, 0, kt.size - 2)
    right = left + 1
    span = kt[right] - kt[left]
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(span > 0, (times - kt[left]) / np.where(span > 0, span, 1.0), 0.0)
    tau = np.where(k < 0, 0.0, np.where(k >= kt.size - 1, 1.0, tau))
    return FrameSchedule(fps, float(duration), kt, times, left.astype(np.int64), right.astype(np.int64),
                         np.clip(tau, 0.0, 1.0))


def track_schedule(track: PhonemeTrack, fps: float = 25.0, duration: float | None = None,
                   phase: float = 0.5) -> FrameSchedule:
    """Schedule for a phoneme track: keyframes at unit centres, length from the audio duration."""
    return frame_schedule(keyframe_times(track), track.duration if duration is None else duration, fps, phase)


def keyframe_frames(key_times: np.ndarray, n_frames: int, fps: float = 25.0, phase: float = 0.5) -> np.ndarray:
    """Distinct frame indices nearest to the keyframe times (training: real frames stand in for keyframes)."""
    idx = np.clip(np.rint(np.asarray(key_times) * fps - phase), 0, n_frames - 1).astype(np.int64)
    return np.unique(idx)


@dataclass(frozen=True)
class PhoneTable:
    """A track's phones as arrays, for fast per-interval look-ups.

    ``ids`` are viseme indices + 1 (0 is reserved for padding).
    """

    starts: np.ndarray
    ends: np.ndarray
    ids: np.ndarray

    @classmethod
    def from_track(cls, track: PhonemeTrack, level: str = "phones") -> "PhoneTable":
        seq = getattr(track, level)
        return cls(
            np.array([p.start for p in seq], dtype=np.float64),
            np.array([p.end for p in seq], dtype=np.float64),
            np.array([VISEME_INDEX[p.viseme] + 1 for p in seq], dtype=np.int64),
        )

    def window(self, t_a: float, t_b: float, max_phones: int, context: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Phones overlapping ``[t_a, t_b]`` plus ``context`` neighbours on each side (coarticulation reaches
        across the interval): ids ``(P,)`` and spans ``(P, 2)`` in tau units, clipped to [-1, 2].

        Padded with id 0 / span 0 to ``max_phones``; when there are more, the ones nearest the interval's
        middle are kept (in time order).
        """
        ids = np.zeros(max_phones, dtype=np.int64)
        spans = np.zeros((max_phones, 2), dtype=np.float32)
        n = self.ids.size
        if n == 0 or max_phones == 0:
            return ids, spans
        if t_b > t_a:
            inside = np.nonzero((self.ends > t_a) & (self.starts < t_b))[0]
        else:  # a held frame: the phone covering t_a
            inside = np.nonzero((self.starts <= t_a) & (self.ends > t_a))[0]
        if inside.size == 0:  # in a gap: the nearest phone
            inside = np.array([int(np.argmin(np.abs(0.5 * (self.starts + self.ends) - t_a)))])
        sel = np.arange(max(0, inside[0] - context), min(n, inside[-1] + 1 + context))
        if sel.size > max_phones:
            mid = 0.5 * (t_a + t_b)
            near = np.argsort(np.abs(0.5 * (self.starts[sel] + self.ends[sel]) - mid), kind="stable")[:max_phones]
            sel = np.sort(sel[near])
        length = max(t_b - t_a, 1e-6)
        ids[: sel.size] = self.ids[sel]
        spans[: sel.size, 0] = np.clip((self.starts[sel] - t_a) / length, -1.0, 2.0)
        spans[: sel.size, 1] = np.clip((self.ends[sel] - t_a) / length, -1.0, 2.0)
        return ids, spans
