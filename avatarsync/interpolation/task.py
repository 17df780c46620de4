"""``InterpTask``: the interpolator's side of the shared training loop (``avatarsync train interp``).

Loss: mean squared error between the predicted and the real in-between
frame's latent. Held-out metrics (``evaluate``): ``latent_mse`` and the same
for the two baselines (``crossfade_latent_mse``, ``nearest_latent_mse``), and
``gain_over_crossfade_db`` = 10 log10(crossfade MSE / model MSE), higher is better.
"""

from __future__ import annotations

import sys

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import save_config
from ..errors import InputError
from .baselines import linear_crossfade, nearest_keyframe
from .codec import LatentCodec, load_codec
from .data import (
    InterpDataConfig,
    InterpExamples,
    LatentCache,
    build_latent_cache,
    collate_examples,
    latent_cache_dir,
)
from .model import InterpModelConfig, MambaInterpolator


@dataclass
class InterpConfig:
    model: InterpModelConfig = field(default_factory=lambda: InterpModelConfig(latent_channels=0))  # 0 = from the cache
    data: InterpDataConfig = field(default_factory=InterpDataConfig)


def predict(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Call ``model`` (a MambaInterpolator or a wrapper such as a DeepSpeed engine) on a collated batch."""
    return model(batch["lat_a"], batch["lat_b"], batch["tau"], batch["interval"],
                 batch.get("phone_ids"), batch.get("phone_spans"))


class InterpTask:
    """TrainTask "interp": builds the latent cache on first use, then serves (pair, target) examples."""

    name = "interp"
    Config = InterpConfig

    def __init__(self, cfg: InterpConfig | None = None, codec: LatentCodec | None = None) -> None:
        self.cfg = cfg or InterpConfig()
        self._codec = codec
        self._cache: LatentCache | None = None
        self._datasets: dict[str, InterpExamples] = {}

    # -- data ----------------------------------------------------------------------------------
    @property
    def codec(self) -> LatentCodec:
        if self._codec is None:
            self._codec = load_codec(self.cfg.data.tokenizer, self.cfg.data.encode_device)
        return self._codec

    def cache(self) -> LatentCache:
        """The latent cache, built (or completed) on first use."""
        if self._cache is None:
            d = self.cfg.data
            folder = Path(d.latent_cache) if d.latent_cache else latent_cache_dir(d, self.codec)
            wanted = {d.train_split, d.val_split}
            have = LatentCache(folder) if (folder / "info.json").is_file() else None
            if have is None or not wanted <= set(have.info["splits"]):
                build_latent_cache(self.codec, d, splits=(d.train_split, d.val_split, "test"), folder=folder,
                                   progress=sys.stderr.isatty())
            self._cache = LatentCache(folder)
        return self._cache

    def _examples(self, split: str) -> InterpExamples:
        if split not in self._datasets:
            self._datasets[split] = self._load_examples(split)
        return self._datasets[split]

    def _load_examples(self, split: str) -> InterpExamples:
        from ..data.corpus import Corpus

        cache = self.cache()
        ids = set(cache.clip_ids(split))
        clips = [c for c in Corpus(self.cfg.data.corpus).clips(split) if c.clip_id in ids]
        if self.cfg.data.max_clips > 0:
            clips = clips[: self.cfg.data.max_clips]
        latents = [cache.load(c.clip_id)["latents"] for c in clips]
        return InterpExamples(clips, latents, self.cfg.model.max_phones, self.cfg.data.max_gap_frames)

    def train_dataset(self) -> InterpExamples:
        ds = self._examples(self.cfg.data.train_split)
        if len(ds) == 0:
            raise InputError(f"no keyframe pairs with in-between frames in split {self.cfg.data.train_split!r}",
                             "use a corpus with more/longer clips, or raise data.max_gap_frames")
        return ds

    def val_dataset(self) -> InterpExamples:
        return self._examples(self.cfg.data.val_split)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_examples(items)

    # -- model ---------------------------------------------------------------------------------
    def model_config(self) -> InterpModelConfig:
        """The model config with ``latent_channels`` filled in from the cache when it is 0."""
        mcfg = dataclasses.replace(self.cfg.model)
        channels = self.cache().channels
        if mcfg.latent_channels == 0:
            mcfg.latent_channels = channels
        elif mcfg.latent_channels != channels:
            raise InputError(f"model.latent_channels={mcfg.latent_channels} but the latent cache has {channels}",
                             "set model.latent_channels: 0 (take it from the data) or use the matching codec")
        return mcfg

    def build_model(self) -> MambaInterpolator:
        """A fresh model whose per-channel scales come from (up to 1024) training examples."""
        model = MambaInterpolator(self.model_config())
        ds = self.train_dataset()
        pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:1024].tolist()
        batch = self.collate([ds[i] for i in pick])
        lat = torch.cat([batch["lat_a"], batch["lat_b"]])
        resid = batch["target"] - linear_crossfade(batch["lat_a"], batch["lat_b"], batch["tau"])
        model.set_scales(lat.transpose(0, 1).flatten(1).std(1), resid.transpose(0, 1).flatten(1).std(1))
        return model

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        pred = predict(model, batch)
        loss = F.mse_loss(pred.float(), batch["target"].float())
        with torch.no_grad():
            base = F.mse_loss(linear_crossfade(batch["lat_a"], batch["lat_b"], batch["tau"]).float(),
                              batch["target"].float())
        return loss, {"mse": float(loss.detach()), "crossfade_mse": float(base)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        sums = {"latent_mse": 0.0, "crossfade_latent_mse": 0.0, "nearest_latent_mse": 0.0}
        n = 0
        for b in batches:
            t = b["target"].float()
            k = t.shape[0]
            sums["latent_mse"] += F.mse_loss(predict(model, b).float(), t).item() * k
            sums["crossfade_latent_mse"] += F.mse_loss(linear_crossfade(b["lat_a"], b["lat_b"], b["tau"]).float(), t).item() * k
            sums["nearest_latent_mse"] += F.mse_loss(nearest_keyframe(b["lat_a"], b["lat_b"], b["tau"]).float(), t).item() * k
            n += k
        if n == 0:
            return {}
        out = {key: v / n for key, v in sums.items()}
        out["gain_over_crossfade_db"] = 10 * math.log10(max(out["crossfade_latent_mse"], 1e-12) / max(out["latent_mse"], 1e-12))
        return out

    def export(self, model: nn.Module, folder: Path) -> None:
        """``config.yaml`` (resolved model + data sections) and ``model.safetensors``."""
        from ..train.checkpoint import save_weights

        inner = getattr(model, "module", model)
        save_weights(inner, Path(folder) / "model.safetensors")
        cfg = dataclasses.replace(self.cfg, model=dataclasses.replace(inner.cfg))
        save_config(cfg, Path(folder) / "config.yaml")
