"""Inference: keyframe latents + schedule -> every output frame's latent, all pairs in parallel."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ..phonemes.track import PhonemeTrack
from .baselines import BASELINES
from .model import MambaInterpolator
from .schedule import FrameSchedule, PhoneTable, track_schedule


def frame_conditioning(schedule: FrameSchedule, frames: np.ndarray, phones: PhoneTable | None,
                       max_phones: int) -> dict[str, torch.Tensor]:
    """tau, interval and phone windows for the output frames ``frames`` of ``schedule``."""
    left, right = schedule.left[frames], schedule.right[frames]
    t_a, t_b = schedule.key_times[left], schedule.key_times[right]
    ids = np.zeros((len(frames), max_phones), dtype=np.int64)
    spans = np.zeros((len(frames), max_phones, 2), dtype=np.float32)
    if phones is not None:
        for i, (a, b) in enumerate(zip(t_a, t_b)):
            ids[i], spans[i] = phones.window(float(a), float(b), max_phones)
    return {
        "tau": torch.as_tensor(schedule.tau[frames], dtype=torch.float32),
        "interval": torch.as_tensor(t_b - t_a, dtype=torch.float32),
        "phone_ids": torch.from_numpy(ids),
        "phone_spans": torch.from_numpy(spans),
    }


@torch.no_grad()
def interpolate_frames(model: MambaInterpolator | str | Callable, key_latents: torch.Tensor,
                       schedule: FrameSchedule, phones: PhoneTable | None = None,
                       batch_size: int = 64, snap: bool = True) -> torch.Tensor:
    """Latents (N, C, h, w) for every frame of ``schedule`` from keyframe latents (K, C, h, w).

    ``model`` is a MambaInterpolator or a baseline name (``nearest``/``crossfade``).
    All (pair, target) combinations are batched together, ``batch_size`` at a time.
    With ``snap``, frames at tau 0/1 (and holds) copy their keyframe exactly.
    """
    k = key_latents.shape[0]
    if k != schedule.key_times.shape[0]:
        raise InputError(f"{k} keyframe latents but the schedule has {schedule.key_times.shape[0]} keyframe times",
                         "pass one latent per keyframe time")
    if isinstance(model, str):
        if model not in BASELINES:
            raise InputError(f"unknown interpolator {model!r}", f"use a model or one of {', '.join(BASELINES)}")
        fn = BASELINES[model]
        tau = torch.as_tensor(schedule.tau, dtype=key_latents.dtype, device=key_latents.device)
        left = torch.as_tensor(schedule.left, device=key_latents.device)
        right = torch.as_tensor(schedule.right, device=key_latents.device)
        return fn(key_latents[left], key_latents[right], tau)
    out = torch.empty((schedule.n_frames, *key_latents.shape[1:]), dtype=key_latents.dtype, device=key_latents.device)
    copy = schedule.is_keyframe_copy() if snap else np.zeros(schedule.n_frames, dtype=bool)
    if copy.any():
        idx = np.nonzero(copy)[0]
        src = np.where(schedule.tau[idx] >= 0.5, schedule.right[idx], schedule.left[idx])
        out[torch.as_tensor(idx)] = key_latents[torch.as_tensor(src, device=key_latents.device)]
    todo = np.nonzero(~copy)[0]
    max_phones = getattr(getattr(model, "cfg", None), "max_phones", 0)
    for start in range(0, len(todo), batch_size):
        frames = todo[start:start + batch_size]
        cond = {n: v.to(key_latents.device) for n, v in frame_conditioning(schedule, frames, phones, max_phones).items()}
        la = key_latents[torch.as_tensor(schedule.left[frames], device=key_latents.device)]
        lb = key_latents[torch.as_tensor(schedule.right[frames], device=key_latents.device)]
        out[torch.as_tensor(frames, device=key_latents.device)] = model(
            la, lb, cond["tau"], cond["interval"], cond["phone_ids"], cond["phone_spans"]).to(out.dtype)
    return out


def interpolate_track(model: MambaInterpolator | str, key_latents: torch.Tensor, track: PhonemeTrack,
                      fps: float = 25.0, duration: float | None = None, batch_size: int = 64) -> torch.Tensor:
    """Keyframe latents at the track's unit centres -> (round(duration * fps), C, h, w) frame latents."""
    schedule = track_schedule(track, fps, duration)
    return interpolate_frames(model, key_latents, schedule, PhoneTable.from_track(track), batch_size)
