"""Timestamp-aware Mamba interpolation: keyframe latents at phoneme rate -> frame latents at a fixed fps.

Modules: schedule (keyframe times + audio duration -> frames, pairs, tau), scan
(selective-scan backends: reference / torch / transformers / cuda), mamba
(Mamba-1 and Mamba-2 mixers, the bidirectional block), model
(MambaInterpolator), interpolate (all pairs in parallel), baselines (nearest
keyframe, linear cross-fade), codec (tokenizer latents), data + task
(InterpTask for ``avatarsync train interp``), evaluate (held-out PSNR and
stability). See docs/interpolation.md.
"""

from .baselines import linear_crossfade, nearest_keyframe
from .interpolate import interpolate_frames, interpolate_track
from .model import InterpModelConfig, MambaInterpolator
from .scan import SelectiveScan, SSDScan, available_backends
from .schedule import FrameSchedule, PhoneTable, frame_schedule, keyframe_times, track_schedule

__all__ = ["FrameSchedule", "InterpModelConfig", "MambaInterpolator", "PhoneTable", "SSDScan", "SelectiveScan",
           "available_backends", "frame_schedule", "interpolate_frames", "interpolate_track", "keyframe_times",
           "linear_crossfade", "nearest_keyframe", "track_schedule"]
