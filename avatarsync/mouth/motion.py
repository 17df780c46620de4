"""``MouthMotion``: the phoneme track -> per-frame mouth shape ([gap, width change], shape.py).

The track is sampled ``steps_per_frame`` times per video frame; each step carries its unit's viseme
(one-hot), that viseme's articulation (``phonemes.visemes``: openness, width, rounding, teeth, lip
contact) and how far into the unit it lies. Dilated 1-D convolutions see about +-0.3 s of context
(coarticulation: lips move before the sound), and an average over each frame's steps gives one
prediction per frame. Visemes, not phone symbols, so any language the PVM maps works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..phonemes.visemes import VISEMES, VISEME_INDEX

ARTICULATION = ("openness", "width", "rounding", "teeth", "lip_contact")
N_FEATURES = len(VISEMES) + len(ARTICULATION) + 1


@dataclass
class MotionConfig:
    hidden: int = 64
    kernel: int = 9
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    steps_per_frame: int = 4
    target_scale: float = 10.0  # targets are learned times this (gaps are ~0.1 of the eye distance)


def track_features(track, n_frames: int, fps: float, steps_per_frame: int = 4) -> np.ndarray:
    """``(N_FEATURES, n_frames * steps_per_frame)`` float32 features of a ``PhonemeTrack``;
    time past the track's units reads as rest."""
    n = n_frames * steps_per_frame
    t = (np.arange(n) + 0.5) / (fps * steps_per_frame)
    rest = VISEME_INDEX["rest"]
    units = [u for u in track.units if u.end > u.start]
    starts = np.array([u.start for u in units] or [0.0])
    ends = np.array([u.end for u in units] or [0.0])
    vis = np.array([VISEME_INDEX.get(u.viseme, rest) for u in units] or [rest])
    idx = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(vis) - 1)
    inside = (t >= starts[idx]) & (t < ends[idx])
    which = np.where(inside, vis[idx], rest)
    table = np.array([[float(getattr(v, a)) for a in ARTICULATION] for v in VISEMES], np.float32)
    out = np.zeros((N_FEATURES, n), np.float32)
    out[which, np.arange(n)] = 1.0
    out[len(VISEMES):len(VISEMES) + len(ARTICULATION)] = table[which].T
    phase = (t - starts[idx]) / np.maximum(ends[idx] - starts[idx], 1e-3)
    out[-1] = np.where(inside, np.clip(phase, 0, 1), 0.0)
    return out


class MouthMotion(nn.Module):
    """Features ``(B, N_FEATURES, T * steps_per_frame)`` -> shape ``(B, 2, T)`` ([gap, width change])."""

    def __init__(self, cfg: MotionConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MotionConfig()
        layers: list[nn.Module] = []
        c_in = N_FEATURES
        for d in cfg.dilations:
            layers += [nn.Conv1d(c_in, cfg.hidden, cfg.kernel, padding=d * (cfg.kernel - 1) // 2, dilation=d),
                       nn.GELU()]
            c_in = cfg.hidden
        layers.append(nn.Conv1d(c_in, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        y = self.net(features)
        return nn.functional.avg_pool1d(y, self.cfg.steps_per_frame) / self.cfg.target_scale

    @torch.no_grad()
    def predict(self, track, n_frames: int, fps: float = 25.0) -> np.ndarray:
        """``(n_frames, 2)`` [gap, width change] for a track (gap clipped at 0)."""
        x = torch.from_numpy(track_features(track, n_frames, fps, self.cfg.steps_per_frame))[None]
        p = next(self.parameters())
        y = self(x.to(p.device, p.dtype))[0].T.float().cpu().numpy()
        y[:, 0] = np.maximum(y[:, 0], 0.0)
        return y

    def save_pretrained(self, folder: str | Path) -> None:
        from ..config import save_config
        from ..train.checkpoint import save_weights

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(self, folder / "model.safetensors")
        save_config(self.cfg, folder / "config.yaml")

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "MouthMotion":
        """Load a folder with ``config.yaml`` (the ``MotionConfig``, or a task config with a
        ``model:`` section) and ``model.safetensors``."""
        from ..config import from_dict, read_yaml
        from ..weights import read_state_dict

        folder = Path(folder)
        if not (folder / "config.yaml").is_file() or not (folder / "model.safetensors").is_file():
            raise CheckpointError(f"{folder} is not a mouth-motion folder (needs config.yaml and model.safetensors)",
                                  "train one with `avatarsync train mouth --config recipes/mouth_real.yaml`")
        data = read_yaml(folder / "config.yaml")
        model = cls(from_dict(MotionConfig, data.get("model", data)))
        try:
            model.load_state_dict(read_state_dict(folder / "model.safetensors"))
        except RuntimeError as e:
            raise CheckpointError(f"weights in {folder} do not fit its config: {e}", "re-export the model") from None
        return model.to(device).eval()
