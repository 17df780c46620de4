"""``TokenizerTask``: the tokenizer's side of the shared training loop (train/task.py).

Held-out metrics (``evaluate``): ``psnr`` and ``mouth_psnr`` (dB, images in
[-1, 1], higher is better), ``l1``, ``codebook_perplexity`` (exp of the
entropy of the code histogram over all evaluated tokens), ``codebook_usage``
(fraction of the codebook seen; bounded by tokens / codebook size) and
``codes_used``; with token factorization also ``factor_usage`` and
``factor_perplexity`` (mean over sub-codebooks). A reference-conditioned
tokenizer (``model.reference``) is evaluated on every frame but each clip's
first, decoded against that first frame (the portrait's role at inference);
``still_psnr`` / ``still_mouth_psnr`` score the reference frame itself as the
reconstruction, the baseline the tokens must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import save_config
from ..errors import CheckpointError, InputError
from ..perceptual import build_perceptual
from .checkpoint import save_tokenizer, unwrap_tokenizer
from .config import TokenizerConfig
from .data import (FrameDataset, PreparedFrames, TokenizerDataConfig, collate_frames, load_corpus_frames,
                   synthetic_frames)
from .losses import PatchDiscriminator, box_mask, discriminator_hinge, generator_hinge, psnr
from .tokenizer import VisualTokenizer


@dataclass
class TokenizerTaskConfig:
    """The task's part of a recipe: ``model`` (architecture, codebook, loss weights) and ``data``.

    A recipe file adds ``task: tokenizer`` and the loop's ``train:`` section (train/registry.py).
    """

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    # Start from a trained tokenizer folder: every weight whose name and shape match is loaded (a
    # reference decoder's new layers keep their start-as-plain initialisation).
    init_from: str = ""
    # Keep the encoder and quantizer fixed (needs init_from): the tokens stay exactly those of
    # init_from, so token caches and keyframe models trained on them stay valid; only decoding learns.
    freeze_encoder: bool = False


class TokenizerTrainModel(nn.Module):
    """What the loop optimises: the tokenizer, the optional discriminator, and a step counter."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.tokenizer = VisualTokenizer(cfg)
        loss = self.tokenizer.config.loss
        self.discriminator = PatchDiscriminator(loss.disc_channels) if loss.adversarial > 0 else None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, images: torch.Tensor):
        return self.tokenizer(images)


def codebook_stats(indices: torch.Tensor, size: int) -> dict[str, float]:
    """Perplexity and usage of a codebook of ``size`` codes from a tensor of ids."""
    counts = torch.bincount(indices.reshape(-1).long().cpu(), minlength=size).double()
    p = counts / counts.sum().clamp_min(1)
    ent = float(-(p[p > 0] * p[p > 0].log()).sum())
    used = int((counts > 0).sum())
    return {"perplexity": math.exp(ent), "usage": used / size, "used": float(used)}


def init_from_tokenizer(tokenizer: VisualTokenizer, folder: str | Path) -> list[str]:
    """Load the weights of a trained tokenizer folder whose names and shapes match; returns the names
    of ``tokenizer``'s weights left at their initialisation. Raises when the encoders differ."""
    source = VisualTokenizer.from_pretrained(folder).state_dict()
    own = tokenizer.state_dict()
    enc = [k for k in own if k.startswith(("encoder.", "quantizer."))]
    bad = [k for k in enc if k not in source or source[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"tokenizer {folder} has a different encoder ({bad[0]} does not match)",
                              "use the same size, downsample, quantizer and codebook_bits as that tokenizer")
    loaded = {k: v for k, v in source.items() if k in own and v.shape == own[k].shape}
    tokenizer.load_state_dict(loaded, strict=False)
    return sorted(set(own) - set(loaded))


def change_weight(images: torch.Tensor, reference: torch.Tensor, gain: float, blur: int = 7) -> torch.Tensor:
    """Per-pixel loss weight ``[B, 1, H, W]``: 1 + gain * |images - reference| (channel mean, box-blurred so
    the neighbourhood of a change counts too), scaled to mean 1 per image."""
    change = (images - reference).abs().mean(1, keepdim=True)
    change = torch.nn.functional.avg_pool2d(change, blur, stride=1, padding=blur // 2, count_include_pad=False)
    weight = 1.0 + gain * change
    return weight / weight.mean(dim=(1, 2, 3), keepdim=True)


def reconstruction_terms(rec: torch.Tensor, images: torch.Tensor, reference: torch.Tensor | None, change: float,
                         mouth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The tokenizer's pixel loss terms of reconstructions ``rec`` against ``images`` ``[B, 3, H, W]``:
    ``l1`` and ``l2``, weighted by ``change_weight`` when ``change > 0`` and a ``reference`` is given, and
    with a ``mouth`` mask (``[B, 1, H, W]``) ``mouth_l1``, the mean L1 inside it."""
    diff = rec - images
    if change > 0 and reference is not None:
        weight = change_weight(images, reference.float(), change)
        terms = {"l1": (diff.abs() * weight).mean(), "l2": (diff ** 2 * weight).mean()}
    else:
        terms = {"l1": diff.abs().mean(), "l2": (diff ** 2).mean()}
    if mouth is not None:
        terms["mouth_l1"] = (diff.abs() * mouth).sum() / (mouth.sum() * 3).clamp_min(1)
    return terms


class TokenizerTask:
    """Implements ``TrainTask`` for ``name == "tokenizer"``."""

    name = "tokenizer"
    Config = TokenizerTaskConfig

    def __init__(self, cfg: TokenizerTaskConfig | None = None) -> None:
        self.cfg = cfg or TokenizerTaskConfig()
        self.cfg.model = self.cfg.model.resolved()
        self._frames: dict[str, PreparedFrames] = {}
        self._perceptual: nn.Module | None = None

    # -- TrainTask ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = TokenizerTrainModel(self.cfg.model)
        if self.cfg.freeze_encoder and not self.cfg.init_from:
            raise InputError("freeze_encoder needs init_from (a trained tokenizer whose tokens to keep)",
                             "set init_from: runs/<tokenizer>/final")
        if self.cfg.init_from:
            init_from_tokenizer(model.tokenizer, self.cfg.init_from)
        if self.cfg.freeze_encoder:
            for part in (model.tokenizer.encoder, model.tokenizer.quantizer):
                part.requires_grad_(False)
        return model

    def _split(self, which: str) -> PreparedFrames:
        if which not in self._frames:
            d = self.cfg.data
            if d.source == "synthetic":
                n, seed = (d.synthetic_train, d.seed) if which == "train" else (d.synthetic_val, d.seed + 10_000)
                self._frames[which] = synthetic_frames(d, n, seed)
            else:
                split, k = (d.train_split, d.frames_per_clip) if which == "train" else (d.val_split, d.val_frames_per_clip)
                self._frames[which] = load_corpus_frames(d, split, k, extra=which == "train")
        return self._frames[which]

    def train_dataset(self) -> FrameDataset:
        return FrameDataset(self._split("train"), hflip=self.cfg.data.hflip, crop=self.cfg.data.train_crop,
                            reference="random" if self.cfg.model.reference else "none",
                            augment=self.cfg.data.augment)

    def val_dataset(self) -> FrameDataset:
        return FrameDataset(self._split("val"), hflip=False, reference="first" if self.cfg.model.reference else "none")

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return collate_frames(items)

    def perceptual(self, device: torch.device) -> nn.Module | None:
        w = self.cfg.model.loss
        if w.perceptual <= 0:
            return None
        if self._perceptual is None:
            self._perceptual = build_perceptual(w.perceptual_kind, w.lpips_backbone)
        return self._perceptual.to(device)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        wrapper = getattr(model, "module", model)
        tok = unwrap_tokenizer(wrapper)
        w = tok.config.loss
        x = batch["image"]
        out = tok(x, batch.get("reference"))
        rec = out.recon.float()
        mouth = (box_mask(batch["mouth_box"], x.shape[-2], x.shape[-1])
                 if w.mouth > 0 and "mouth_box" in batch else None)
        terms = reconstruction_terms(rec, x.float(), batch.get("reference"), w.change, mouth)
        l1, l2 = terms["l1"], terms["l2"]
        loss = w.l1 * l1 + w.l2 * l2
        logs = {"l1": l1.item(), "l2": l2.item(), "psnr": psnr(rec.detach(), x).mean().item()}
        perc = self.perceptual(x.device)
        if perc is not None:
            p = perc(rec, x.float())
            loss = loss + w.perceptual * p
            logs["perceptual"] = p.item()
        if mouth is not None:
            loss = loss + w.mouth * terms["mouth_l1"]
            logs["mouth_l1"] = terms["mouth_l1"].item()
        if "entropy" in out.losses:
            loss = loss + w.entropy * out.losses["entropy"]
        if "commitment" in out.losses:
            loss = loss + w.commitment * out.losses["commitment"]
        for k, v in out.losses.items():
            logs[k] = float(v.detach())
        step = getattr(wrapper, "step", None)
        disc = getattr(wrapper, "discriminator", None)
        if disc is not None and (step is None or int(step) >= w.adversarial_start):
            g = generator_hinge(disc, rec)
            d = discriminator_hinge(disc, x.float(), rec)
            loss = loss + w.adversarial * g + d
            logs.update(gan_g=g.item(), gan_d=d.item())
        if step is not None and wrapper.training:
            step += 1
        logs["batch_usage"] = codebook_stats(out.indices, tok.codebook_size)["usage"]
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        tok = unwrap_tokenizer(model)
        p_all, pm_all, l1_all, ids, still, still_m = [], [], [], [], [], []
        for b in batches:
            x = b["image"].float()
            ref = b.get("reference")
            idx = tok.encode(x, reference=ref if tok.config.reference_encoder else None)
            rec = tok.decode(idx, reference=ref).float()
            p_all.append(psnr(rec, x))
            if ref is not None:
                still.append(psnr(ref.float(), x))
            if "mouth_box" in b:
                mask = box_mask(b["mouth_box"], x.shape[-2], x.shape[-1])
                pm_all.append(psnr(rec, x, mask))
                if ref is not None:
                    still_m.append(psnr(ref.float(), x, mask))
            l1_all.append((rec - x).abs().flatten(1).mean(1))
            ids.append(idx.reshape(-1).cpu())
        if not ids:
            return {}
        allids = torch.cat(ids)
        stats = codebook_stats(allids, tok.codebook_size)
        res = {"psnr": float(torch.cat(p_all).mean()), "l1": float(torch.cat(l1_all).mean()),
               "codebook_perplexity": stats["perplexity"], "codebook_usage": stats["usage"], "codes_used": stats["used"]}
        if pm_all:
            res["mouth_psnr"] = float(torch.cat(pm_all).mean())
        if still:
            res["still_psnr"] = float(torch.cat(still).mean())
        if still_m:
            res["still_mouth_psnr"] = float(torch.cat(still_m).mean())
        if tok.factors > 1:
            sub = tok.quantizer.split(allids)
            fs = [codebook_stats(sub[:, f], tok.factor_size) for f in range(tok.factors)]
            res["factor_usage"] = sum(s["usage"] for s in fs) / len(fs)
            res["factor_perplexity"] = sum(s["perplexity"] for s in fs) / len(fs)
        return res

    def export(self, model: nn.Module, folder: str | Path) -> None:
        """The loop's final folder: a loadable tokenizer (``VisualTokenizer.from_pretrained``) plus the whole recipe."""
        save_tokenizer(model, self.cfg.model, folder)
        save_config(self.cfg, Path(folder) / "recipe.yaml")
