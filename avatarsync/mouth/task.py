"""``MouthTask``: the mouth-motion model's side of the shared training loop (``avatarsync train mouth``).

Data: prepared real video (``avatarsync prepare``): each clip's phoneme track and its tracked
landmarks' mouth shape (``shape.shape_targets``). Loss: mean squared error of [gap, width change]
(frames where the face was tracked). Held-out metrics (``evaluate``): ``gap_r`` (Pearson r of the
predicted and real lip gap, all held-out frames pooled), ``clip_gap_r`` (mean over clips),
``gap_mae`` (fraction of the eye distance) and ``rule_gap_r``, the same r for the procedural
renderer's hand-set viseme openness (``data.articulation``), the baseline to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import InputError
from .motion import MotionConfig, MouthMotion, track_features
from .shape import shape_targets


@dataclass
class MouthDataConfig:
    corpus: str = "runs/grid_s1"  # a prepared real corpus (its truth.npz holds face-mesh landmarks)
    extra_corpora: list[str] = field(default_factory=list)  # more prepared corpora (their training clips)
    train_split: str = "train"
    val_split: str = "val"
    fps: float = 25.0
    interior_frames: int = 3  # open-mouth frames per training clip sampled for the interior atlas
    jitter_ms: float = 0.0  # training only: each unit boundary moved by N(0, jitter) ms (aligner error)


@dataclass
class MouthConfig:
    model: MotionConfig = field(default_factory=MotionConfig)
    data: MouthDataConfig = field(default_factory=MouthDataConfig)
    init_from: str | None = None  # a mouth-motion folder to start from (its architecture is kept)


class ClipShapes(Dataset):
    """(features, targets, mask) per clip of the given corpora's split."""

    def __init__(self, roots: list[str], split: str, fps: float, steps_per_frame: int, jitter_ms: float = 0.0) -> None:
        from ..data.corpus import Corpus

        self.fps, self.steps_per_frame, self.jitter = fps, steps_per_frame, jitter_ms / 1000.0
        self.tracks: list = []
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.rule: list[np.ndarray] = []
        for root in roots:
            for clip in Corpus(root).clips(split):
                lm = clip.truth().get("landmarks")
                if lm is None or lm.ndim != 3 or lm.shape[1] < 468:
                    raise InputError(f"{root} has no face-mesh landmarks in its truth.npz",
                                     "train the mouth model on a corpus made by `avatarsync prepare`")
                target = shape_targets(lm)
                mask = np.isfinite(target).all(1)
                target = np.nan_to_num(target)
                track = clip.track()
                self.tracks.append(track)
                self.items.append((track_features(track, len(target), fps, steps_per_frame),
                                   target.astype(np.float32), mask))
                self.rule.append(_rule_openness(track, len(target), fps))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if not self.jitter:
            return self.items[i]
        _, target, mask = self.items[i]
        return track_features(_jittered(self.tracks[i], self.jitter), len(target), self.fps,
                              self.steps_per_frame), target, mask


def _jittered(track, std: float):
    """The track with each inner unit boundary moved by N(0, std) s (kept in order)."""
    import dataclasses

    units = list(track.units)
    if len(units) < 2:
        return track
    bounds = np.array([u.end for u in units[:-1]]) + np.random.normal(0.0, std, len(units) - 1)
    lo = np.array([u.start for u in units[:-1]])
    hi = np.array([u.end for u in units[1:]])
    bounds = np.clip(bounds, lo, hi)
    bounds = np.maximum.accumulate(bounds)
    starts = np.r_[units[0].start, bounds]
    ends = np.r_[bounds, units[-1].end]
    moved = [dataclasses.replace(u, start=float(a), end=float(b)) for u, a, b in zip(units, starts, ends)]
    return dataclasses.replace(track, units=moved)


def _rule_openness(track, n: int, fps: float) -> np.ndarray:
    from ..data.articulation import articulate

    return np.array([s.openness for s in articulate(track, n, fps, seed=0)], np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class MouthTask:
    """TrainTask "mouth"."""

    name = "mouth"
    Config = MouthConfig

    def __init__(self, cfg: MouthConfig | None = None) -> None:
        self.cfg = cfg or MouthConfig()
        self._data: dict[str, ClipShapes] = {}

    def _dataset(self, split: str) -> ClipShapes:
        if split not in self._data:
            d = self.cfg.data
            roots = [d.corpus] + (list(d.extra_corpora) if split == d.train_split else [])
            jitter = d.jitter_ms if split == d.train_split else 0.0
            self._data[split] = ClipShapes(roots, split, d.fps, self.cfg.model.steps_per_frame, jitter)
        return self._data[split]

    def build_model(self) -> nn.Module:
        if self.cfg.init_from:
            model = MouthMotion.from_pretrained(self.cfg.init_from)
            self.cfg.model = model.cfg  # exported with the architecture it has
            return model.train()
        return MouthMotion(self.cfg.model)

    def train_dataset(self) -> Dataset:
        return self._dataset(self.cfg.data.train_split)

    def val_dataset(self) -> Dataset:
        return self._dataset(self.cfg.data.val_split)

    def collate(self, items) -> dict[str, torch.Tensor]:
        spf = self.cfg.model.steps_per_frame
        t = max(len(y) for _, y, _ in items)
        x = torch.zeros(len(items), items[0][0].shape[0], t * spf)
        y = torch.zeros(len(items), 2, t)
        m = torch.zeros(len(items), t, dtype=torch.bool)
        for i, (f, target, mask) in enumerate(items):
            x[i, :, :f.shape[1]] = torch.from_numpy(f)
            y[i, :, :len(target)] = torch.from_numpy(target.T)
            m[i, :len(mask)] = torch.from_numpy(mask)
        return {"features": x, "target": y, "mask": m}

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        pred = model(batch["features"])
        scale = self.cfg.model.target_scale
        err = ((pred - batch["target"]) * scale) ** 2
        m = batch["mask"][:, None].expand_as(err).float()
        loss = (err * m).sum() / m.sum().clamp(min=1)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches) -> dict[str, float]:
        """Held-out metrics over the whole validation split (``batches`` is not needed: every clip counts)."""
        ds = self.val_dataset()
        p = next(model.parameters())
        preds, reals, rules, per = [], [], [], []
        for (f, target, mask), rule in zip(ds.items, ds.rule):
            y = model(torch.from_numpy(f)[None].to(p.device, p.dtype))[0, 0].float().cpu().numpy()[:len(target)]
            g, r = y[mask], target[mask, 0]
            preds.append(g)
            reals.append(r)
            rules.append(rule[mask])
            per.append(_pearson(g, r))
        if not preds:
            return {}
        g, r = np.concatenate(preds), np.concatenate(reals)
        return {"gap_r": _pearson(g, r), "clip_gap_r": float(np.nanmean(per)),
                "gap_mae": float(np.abs(g - r).mean()), "rule_gap_r": _pearson(np.concatenate(rules), r)}

    def export(self, model: nn.Module, folder) -> None:
        """``config.yaml`` (the task config), ``model.safetensors`` and the training footage's inner
        mouths, ``interior.safetensors`` (``interior.build_interior``)."""
        from pathlib import Path

        from ..config import save_config
        from ..train.checkpoint import save_weights
        from .interior import build_interior

        inner = getattr(model, "module", model)
        save_weights(inner, Path(folder) / "model.safetensors")
        save_config(self.cfg, Path(folder) / "config.yaml")
        d = self.cfg.data
        build_interior([d.corpus, *d.extra_corpora], d.train_split,
                       frames_per_clip=d.interior_frames).save(Path(folder) / "interior.safetensors")
