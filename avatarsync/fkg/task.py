"""``FKGTask``: the keyframe model plugged into the shared training loop (``avatarsync train fkg``).

Stage 1 minimises token cross-entropy (paper Eq. 6). Stage 2 adds LPIPS,
identity and facial-similarity losses on keyframes decoded differentiably by
the visual tokenizer (Eq. 7-10), weighted by ``loss.lambda1..lambda4``;
start it from a stage-1 model with ``init_from``.

Held-out metrics (``evaluate``), higher is better unless noted:
``ce`` (lower), ``acc`` (teacher-forced code accuracy), ``gen_code_acc``
(greedy parallel decoding vs ground-truth codes) and, with a tokenizer,
``kf_psnr`` / ``kf_ssim`` of generated keyframes against the real frames next
to ``still_psnr`` / ``still_ssim`` of the still reference image, and with a
corpus, ``mouth_viseme_acc`` / ``mouth_open_acc`` (mouth state measured from
the generated pixels, metrics.py) next to ``still_mouth_viseme_acc``.
"""

from __future__ import annotations

import sys

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset

from ..config import save_config
from ..data.corpus import check_extra_corpus
from ..errors import BackendUnavailable, CheckpointError, InputError
from .data import CacheDataset, ExampleDataset, FKGExample, build_token_cache, crop_config, read_cache_index
from .aperture import bin_centres, openness_bins, segment_apertures
from .generate import SamplingConfig, generate_keyframes
from .keyframe_codes import as_code_vectors, check_keyframe_decode, code_vectors_from_logits, keyframe_code_vectors
from .layout import (
    FRAME_OFFSET, IGNORE, KIND_FRAME, KIND_UNIT, TokenMeta, collate_packed, crop_window, pack_utterance, paste_window,
    layout_context, neighbour_ids, prefix_length, segment_length, window_cells,
)
from .masks import canonical_variant, default_stride, packed_mask
from .metrics import mouth_accuracy, mouth_states, pixel_openness, psnr, ssim, to_unit
from .model import FKGModel, code_cross_entropy
from .vocab import DEFAULT_DURATION_EDGES, UNK_UNIT, FKGVocab, build_unit_list

log = logging.getLogger("avatarsync.fkg")


@dataclass
class FKGDataConfig:
    corpus: str = ""  # corpus folder written by `avatarsync synth-data` (for the cache and mouth metrics)
    token_cache: str = ""  # token cache folder; built from corpus + tokenizer when missing
    tokenizer: str = ""  # exported tokenizer folder (needed to build the cache, for stage 2 and pixel metrics)
    # More corpora (e.g. `synth-data --train-only` with new identities) whose train-split clips join the
    # training set; each is tokenized into its own <corpus>/fkg_token_cache with data.tokenizer.
    extra_corpora: list[str] = field(default_factory=list)
    max_units: int = 8  # units per training sequence; longer utterances are split into chunks
    unit_key: Literal["symbol", "viseme"] = "symbol"  # what a unit token stands for
    val_split: Literal["val", "test"] = "val"
    cache_device: str = "auto"  # device used to encode frames into the cache
    # How frames are cropped before tokenization; empty / 0 = as the tokenizer was trained (its run's
    # data section), else these values (see tokenizers.data.TokenizerDataConfig).
    align: str = ""  # none | clip | stable | frame (empty: as the tokenizer was trained)
    crop_size: int = 0
    landmark_layout: str = ""


@dataclass
class FKGLossConfig:
    stage: Literal[1, 2] = 1  # 1: token cross-entropy; 2: + pixel losses through the tokenizer
    lambda1: float = 1.0  # token cross-entropy (recon)
    lambda2: float = 1.0  # LPIPS
    lambda3: float = 0.5  # identity consistency
    lambda4: float = 0.5  # facial similarity
    # Extra cross-entropy weight on the token cells inside mouth_box (fractions of the grid): most cells
    # repeat the reference, and without it the few that carry the phoneme hardly steer training.
    mouth_ce: float = 0.0
    mouth_box: list[float] = field(default_factory=lambda: [0.3, 0.58, 0.7, 0.88])
    # Probability that a training segment's unit reads <unk>: the model also learns the keyframe
    # without its unit, which classifier-free guidance (eval.guidance, speak --guidance) needs.
    unit_dropout: float = 0.0
    # Models with aperture_bins: each keyframe's [B] and frame tokens read no plan with this probability
    # (the unit token still learns to predict it), which plan guidance (eval.plan_guidance) needs.
    plan_dropout: float = 0.0
    # Probability that a keyframe's input code (never its label) is swapped for a code from elsewhere in
    # the batch, so the model learns not to trust its own earlier cells blindly: decoding feeds it its
    # own guesses, training the true codes (exposure bias).
    code_noise: float = 0.0
    aperture: float = 1.0  # weight of the mouth-aperture plan's cross-entropy (models with aperture_bins)
    decode_mode: Literal["st", "soft"] = "st"  # differentiable decode: straight-through or soft
    max_frames: int = 4  # keyframes decoded per step for the pixel losses
    lpips_weights: str | None = None  # local torchvision backbone state dict for LPIPS (else fallback)
    lpips_net: Literal["vgg", "alex", "squeeze"] = "vgg"
    facenet_weights: str | None = None  # local InceptionResnetV1 (vggface2) state dict (else fallback)


@dataclass
class FKGEvalConfig:
    generate: bool = True  # decode keyframes during evaluation (slower, gives the pixel metrics)
    max_utterances: int = 4  # utterances decoded per evaluation
    guidance: float = 1.0  # classifier-free guidance scale of the evaluation's decoding (1 = off)
    plan_guidance: float = 1.0  # guidance scale on the aperture plan (models with aperture_bins; 1 = off)
    plan_pick: str = "argmax"  # how the plan's bin is read: argmax, median or mean (generate.pick_bins)
    # How generated keyframes become pixels: "argmax" (the decoded codes) or "expected" (each cell's
    # softmax-expected code vector under the decoding logits; keyframe_codes.py).
    keyframe_decode: str = "argmax"
    openness_tol: float = 0.15  # truth-openness tolerance of mouth_open_acc (0 closed .. 1 widest)
    pixel_openness_tol: float = 0.075  # tolerance of mouth_open_px_acc, in inter-ocular distances
    # Diagnostics of models with aperture_bins: decode with the true aperture bins instead of the predicted
    # ones (how well the model renders a right plan), or with this one bin for every keyframe (>= 0: how far
    # the plan steers the mouth).
    oracle_aperture: bool = False
    force_aperture: int = -1


@dataclass
class FKGConfig:
    size: Literal["tiny", "cpu", "cpu_wide", "small", "base", "large"] = "small"
    mask: str = "one_to_one"  # global | accumulative | window | one_to_one
    window: int = 2  # units visible to the 'window' variant
    position_stride: int | None = None  # None: 0 for one_to_one, 3 otherwise (layout.py)
    # Grid cells a keyframe generates, as (x0, y0, x1, y1) fractions of the token grid; the other cells
    # are the reference's codes. Empty: the whole grid (the paper's layout). A mouth window cuts the
    # sequential decoding steps per keyframe (bench/fkg_window.py measures what it costs in pixels).
    frame_window: list[float] = field(default_factory=list)
    # Each unit token also carries its previous and next unit (model.unit_context): the keyframe of a
    # unit can follow coarticulation while the mask stays one-to-one.
    unit_context: bool = False
    # Mouth-aperture plan (aperture.py): > 0 makes each unit token predict its keyframe's mouth opening as
    # one of this many bins, and the keyframe's codes follow the chosen bin. Needs truth openness (corpus).
    aperture_bins: int = 0
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    dropout: float = 0.0
    units: list[str] = field(default_factory=list)  # unit vocabulary; empty = every unit of the training split
    duration_edges: list[float] = field(default_factory=lambda: list(DEFAULT_DURATION_EDGES))
    codebook_size: int = 0  # 0 = from the token cache
    factorize_above: int = 4096  # larger codebooks are predicted as two digits
    init_from: str | None = None  # FKG model folder to start from (stage 2 after stage 1); its vocab is kept
    data: FKGDataConfig = field(default_factory=FKGDataConfig)
    loss: FKGLossConfig = field(default_factory=FKGLossConfig)
    eval: FKGEvalConfig = field(default_factory=FKGEvalConfig)


# -- model folders ---------------------------------------------------------------------------
def save_fkg(model: FKGModel, folder: str | Path, config: FKGConfig | None = None) -> None:
    """``model.safetensors`` + ``model.json`` (size, mask, stride, vocab) [+ ``config.yaml``]."""
    from ..train.checkpoint import save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    (folder / "model.json").write_text(json.dumps(model.describe(), ensure_ascii=False, indent=1), encoding="utf-8")
    if config is not None:
        save_config(config, folder / "config.yaml")


def load_fkg(folder: str | Path, device: torch.device | str = "cpu", attn_implementation: str = "sdpa") -> FKGModel:
    """A trained keyframe model from a folder written by ``save_fkg`` / the training loop."""
    from ..train.checkpoint import load_weights

    folder = Path(folder)
    if not (folder / "model.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder} is not an FKG model folder (needs model.json and model.safetensors)",
                              "point at the 'final' folder of an `avatarsync train fkg` run")
    model = FKGModel.from_description(json.loads((folder / "model.json").read_text(encoding="utf-8")),
                                      attn_implementation)
    load_weights(model, folder / "model.safetensors")
    return model.to(device).eval()


def load_tokenizer(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """An exported visual tokenizer, frozen, in eval mode."""
    from .. import tokenizers

    loader = getattr(tokenizers, "load_tokenizer", None)
    if loader is None:
        raise BackendUnavailable("avatarsync.tokenizers has no load_tokenizer(path) yet",
                                 "export a tokenizer with `avatarsync train tokenizer` and use a version "
                                 "of avatarsync that provides load_tokenizer")
    tok = loader(str(path), device=device) if "device" in loader.__code__.co_varnames else loader(str(path))
    tok = tok.to(device).eval()
    for p in tok.parameters():
        p.requires_grad_(False)
    return tok


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class FKGTask:
    """TrainTask for the keyframe model. ``train_examples``/``val_examples``/``tokenizer`` may be
    given directly (tests, scripts); otherwise they come from ``config.data``."""

    name = "fkg"
    Config = FKGConfig

    def __init__(self, config: FKGConfig | None = None, *, train_examples: list[FKGExample] | None = None,
                 val_examples: list[FKGExample] | None = None, tokenizer: nn.Module | None = None) -> None:
        self.cfg = config or FKGConfig()
        self.variant = canonical_variant(self.cfg.mask)
        self.stride = default_stride(self.variant) if self.cfg.position_stride is None else self.cfg.position_stride
        self._train_examples, self._val_examples = train_examples, val_examples
        self._tokenizer = tokenizer
        self._train_ds = self._val_ds = None
        self._cache_index: dict | None = None
        self._vocab: FKGVocab | None = None
        self._pixel_losses: nn.Module | None = None
        self._init_meta: dict[str, Any] | None = None

    # -- data ----------------------------------------------------------------------------------
    def _cache_dir(self) -> Path:
        d = self.cfg.data
        if d.token_cache:
            return Path(d.token_cache)
        if d.corpus:
            return Path(d.corpus) / "fkg_token_cache"
        raise InputError("the fkg recipe names no data", "set data.corpus (and data.tokenizer) or data.token_cache")

    def _stale_cache(self, cache: Path) -> bool:
        """Whether an existing cache holds other tokens than data.tokenizer makes (then rebuild it).
        Tokenizers that share an encoder (stage 1 and its frozen-encoder stage 2) share caches."""
        if not (cache / "index.json").is_file() or not self.cfg.data.tokenizer:
            return False
        built_by = json.loads((cache / "index.json").read_text(encoding="utf-8")).get("token_fingerprint")
        if built_by is None:
            return False
        from ..tokenizers import token_fingerprint

        current = token_fingerprint(self.tokenizer())
        if built_by != current:
            log.warning("token cache %s was built by tokenizer %s, not %s: rebuilding it", cache, built_by, current)
            return True
        return False

    def _ensure_cache(self) -> Path:
        cache = self._cache_dir()
        self._build_cache(cache, self.cfg.data.corpus)
        self._cache_index = read_cache_index(cache)
        return cache

    def _build_cache(self, cache: Path, corpus: str) -> None:
        """Tokenize ``corpus`` into ``cache`` unless a cache of the same tokens is there."""
        if (cache / "index.json").is_file() and not self._stale_cache(cache):
            return
        d = self.cfg.data
        if not corpus or (not d.tokenizer and self._tokenizer is None):
            raise InputError(f"token cache {cache} does not exist and cannot be built",
                             "set data.corpus and data.tokenizer in the recipe")
        dev = _device(d.cache_device)
        log.info("building the FKG token cache of %s in %s", corpus, cache)
        crop = crop_config(corpus, d.tokenizer, d.align, d.crop_size, d.landmark_layout)
        build_token_cache(corpus, self.tokenizer(dev), cache, dev, tokenizer_path=d.tokenizer, crop=crop,
                          progress=sys.stderr.isatty())

    def _datasets(self) -> None:
        if self._train_ds is not None:
            return
        max_units = self.cfg.data.max_units
        if self._train_examples is not None:
            self._train_ds = ExampleDataset(self._train_examples, max_units)
            self._val_ds = ExampleDataset(self._val_examples or [], max_units)
        else:
            cache = self._ensure_cache()
            pixels = self.cfg.loss.stage == 2
            parts = [CacheDataset(cache, "train", max_units, pixels=pixels)]
            for corpus in self.cfg.data.extra_corpora:
                if self.cfg.data.corpus:
                    check_extra_corpus(self.cfg.data.corpus, corpus)
                extra = Path(corpus) / "fkg_token_cache"
                self._build_cache(extra, corpus)
                parts.append(CacheDataset(extra, "train", max_units, pixels=pixels))
            self._train_ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
            self._val_ds = CacheDataset(cache, self.cfg.data.val_split, max_units, pixels=True)

    def train_dataset(self):
        self._datasets()
        return self._train_ds

    def val_dataset(self):
        self._datasets()
        return self._val_ds

    def _symbols(self, ex: FKGExample) -> list[str]:
        return ex.units if self.cfg.data.unit_key == "symbol" else ex.visemes

    @property
    def vocab(self) -> FKGVocab:
        if self._vocab is None:
            self._vocab = self._make_vocab()
        return self._vocab

    def _make_vocab(self) -> FKGVocab:
        cfg = self.cfg
        if cfg.init_from:
            if "vocab" not in self._init_description():
                raise CheckpointError(f"init_from {cfg.init_from} has no model.json", "point at an FKG model folder")
            return FKGVocab.from_dict(self._init_description()["vocab"])
        self._datasets()
        units = list(cfg.units)
        if not units:
            if self._train_examples is not None:
                units = build_unit_list(self._symbols(ex) for ex in self._train_examples)
            else:
                key = "units" if cfg.data.unit_key == "symbol" else "visemes"
                units = build_unit_list(c[key] for c in self._cache_index["clips"] if c["split"] == "train")
        codebook = cfg.codebook_size
        if codebook <= 0:
            if self._cache_index is not None:
                codebook = int(self._cache_index["codebook_size"])
            elif self._tokenizer is not None:
                codebook = int(self._tokenizer.codebook_size)
            else:
                raise InputError("the codebook size is unknown", "set codebook_size in the fkg recipe")
        return FKGVocab(units=units, codebook_size=codebook, duration_edges=list(cfg.duration_edges),
                        factorize_above=cfg.factorize_above)

    def tokenizer(self, device: torch.device | str | None = None) -> nn.Module | None:
        """The visual tokenizer (loaded from data.tokenizer on first use); None when there is none."""
        if self._tokenizer is None and self.cfg.data.tokenizer:
            self._tokenizer = load_tokenizer(self.cfg.data.tokenizer, device or "cpu")
        if self._tokenizer is not None and device is not None:
            self._tokenizer = self._tokenizer.to(device)
        return self._tokenizer

    # -- model ---------------------------------------------------------------------------------
    def _init_description(self) -> dict[str, Any]:
        """The init_from model's model.json (empty without one), read once."""
        if self._init_meta is None:
            meta = Path(self.cfg.init_from) / "model.json" if self.cfg.init_from else None
            self._init_meta = json.loads(meta.read_text(encoding="utf-8")) if meta and meta.is_file() else {}
        return self._init_meta

    @property
    def frame_window(self) -> tuple[float, ...] | None:
        """The recipe's frame window, else (stage 2) the init_from model's; None: the whole grid."""
        box = self.cfg.frame_window or self._init_description().get("frame_window")
        return tuple(float(v) for v in box) if box else None

    @property
    def unit_context(self) -> bool:
        """The recipe's unit_context, or (stage 2) the init_from model's."""
        return bool(self.cfg.unit_context or self._init_description().get("unit_context", False))

    @property
    def aperture_bins(self) -> int:
        """The recipe's aperture_bins, or the init_from model's."""
        return int(self.cfg.aperture_bins or self._init_description().get("aperture_bins", 0))

    def build_model(self) -> FKGModel:
        cfg = self.cfg
        model = FKGModel(self.vocab, cfg.size, self.variant, cfg.window, self.stride, cfg.attn_implementation,
                         cfg.dropout, frame_window=self.frame_window, unit_context=self.unit_context,
                         aperture_bins=self.aperture_bins)
        if cfg.init_from:
            self._load_init(model)
        return model

    def _load_init(self, model: FKGModel) -> None:
        """init_from's weights; a model without a plan may start one (its aperture layers stay new)."""
        from ..train.checkpoint import load_weights

        path = Path(self.cfg.init_from) / "model.safetensors"
        fix = "use the same size, vocabulary, window and unit context as the init_from model"
        try:
            missing, unexpected = load_weights(model, path, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise CheckpointError(f"init_from {self.cfg.init_from} does not fit this model: "
                                  f"{str(e).splitlines()[-1].strip()}", fix) from None
        new = [k for k in missing if k.startswith(("aperture_embed.", "aperture_head."))]
        if unexpected or len(new) != len(missing):
            raise CheckpointError(f"init_from {self.cfg.init_from} does not fit this model: missing "
                                  f"{sorted(set(missing) - set(new))[:4]}, unexpected {sorted(unexpected)[:4]}", fix)
        if new:
            log.info("init_from %s has no aperture plan: its %d-bin layers start new", self.cfg.init_from,
                     self.aperture_bins)

    def export(self, model: nn.Module, folder: Path) -> None:
        save_fkg(model, folder, self.cfg)

    # -- batches -------------------------------------------------------------------------------
    def collate(self, items: list[FKGExample]) -> dict[str, Any]:
        vocab, window = self.vocab, self.frame_window
        packed, unit_ids = [], []
        for ex in items:
            units = [vocab.unit_id(s) for s in self._symbols(ex)]
            durs = [vocab.duration_id(d) for d in ex.durations]
            packed.append(pack_utterance(vocab, torch.as_tensor(ex.ref_codes), units, durs,
                                         crop_window(torch.as_tensor(ex.key_codes), window), self.stride))
            unit_ids.append(units)
        batch: dict[str, Any] = collate_packed(packed, vocab.pad_id)
        if self.unit_context:
            batch["context"] = torch.stack([self._layout_context(batch, b, ex, units)
                                            for b, (ex, units) in enumerate(zip(items, unit_ids))])
        if self.aperture_bins:
            batch["aperture"] = torch.stack([self._layout_aperture(batch, b, ex) for b, ex in enumerate(items)])
        batch["n_units"] = torch.tensor([len(ex) for ex in items])
        batch["grid"] = torch.tensor(packed[0].grid)  # the generated cells' grid (the window's)
        batch["ref_grid"] = torch.tensor(packed[0].ref_grid)
        batch["key_frames"] = torch.tensor([k for ex in items for k in (ex.key_frames or range(len(ex)))])
        batch["clip_ids"] = [ex.clip_id for ex in items]
        if all(ex.key_pixels is not None for ex in items):
            batch["key_pixels"] = torch.from_numpy(np.concatenate([ex.key_pixels for ex in items]))
        if all(ex.key_boxes is not None for ex in items):
            batch["key_boxes"] = torch.from_numpy(np.concatenate([ex.key_boxes for ex in items]))
        if all(ex.key_landmarks is not None for ex in items):  # fixed point (1/16 px): the loop may cast floats
            batch["key_landmarks16"] = torch.from_numpy(
                np.rint(np.concatenate([ex.key_landmarks for ex in items]) * 16).astype(np.int32))
        if all(ex.ref_pixels is not None for ex in items):
            batch["ref_pixels"] = torch.from_numpy(np.stack([ex.ref_pixels for ex in items]))
        return batch

    def _layout_context(self, batch: dict[str, Any], b: int, ex: FKGExample, units: list[int]) -> torch.Tensor:
        """Context ids ``[L, 2]`` of batch row ``b``: each unit token's neighbours, the chunk's edge
        units taking their neighbours in the whole utterance (``ex.before`` / ``ex.after``)."""
        key = 0 if self.cfg.data.unit_key == "symbol" else 1
        edges = [None if x is None else self.vocab.unit_id(x[key]) for x in (ex.before, ex.after)]
        neighbours = neighbour_ids(torch.tensor(units), self.vocab.pad_id, *edges)
        meta = TokenMeta(batch["kind"][b], batch["segment"][b], batch["offset"][b])
        return layout_context(meta, neighbours, self.vocab.pad_id)

    def _layout_aperture(self, batch: dict[str, Any], b: int, ex: FKGExample) -> torch.Tensor:
        """Aperture bins ``[L]`` of batch row ``b`` (every token of a segment holds its keyframe's bin)."""
        if ex.key_openness is None:
            raise InputError(f"clip {ex.clip_id} has no truth mouth openness, which aperture_bins needs",
                             "rebuild the FKG token cache from a corpus with truth.npz openness, "
                             "or set aperture_bins: 0")
        meta = TokenMeta(batch["kind"][b], batch["segment"][b], batch["offset"][b])
        return segment_apertures(meta, openness_bins(ex.key_openness, self.aperture_bins))

    def _forward(self, model: nn.Module, batch: dict[str, Any]):
        meta = TokenMeta(batch["kind"], batch["segment"], batch["offset"])
        mask = packed_mask(meta, self.variant, self.cfg.window)
        sel = batch["labels"] != IGNORE
        ids, context = batch["ids"], batch.get("context")
        if model.training and self.cfg.loss.unit_dropout > 0:
            drop = (batch["kind"] == KIND_UNIT) & (torch.rand(ids.shape, device=ids.device) < self.cfg.loss.unit_dropout)
            ids = torch.where(drop, torch.full_like(ids, self.vocab.special_id(UNK_UNIT)), ids)
            if context is not None:  # a dropped unit loses its neighbours too (the guidance twin's input)
                context = torch.where(drop.unsqueeze(-1), torch.full_like(context, self.vocab.pad_id), context)
        if model.training and self.cfg.loss.code_noise > 0:
            ids = self._swap_codes(ids, batch["kind"] == KIND_FRAME, self.cfg.loss.code_noise)
        aperture = batch.get("aperture")
        if model.training and aperture is not None and self.cfg.loss.plan_dropout > 0:
            aperture = self._hide_plan(aperture, batch["segment"], self.cfg.loss.plan_dropout)
        out = model(ids, batch["position"], mask, batch["kind"], batch["offset"], select=sel, context=context,
                    aperture=aperture)
        plan = None
        if out.aperture_logits is not None:  # predicted at unit tokens
            plan = (out.aperture_logits, batch["aperture"][batch["kind"] == KIND_UNIT])
        return out.logits, batch["labels"][sel], plan

    @staticmethod
    def _hide_plan(aperture: torch.Tensor, segment: torch.Tensor, p: float) -> torch.Tensor:
        """``aperture [B, L]`` with each keyframe's bin replaced, with probability ``p``, by -1 (no plan)
        on all its tokens."""
        hide = torch.rand(segment.shape[0], int(segment.max()) + 1, device=segment.device) < p
        hidden = hide.gather(1, segment.clamp(min=0)) & (segment >= 0)
        return torch.where(hidden, torch.full_like(aperture, -1), aperture)

    @staticmethod
    def _swap_codes(ids: torch.Tensor, frames: torch.Tensor, p: float) -> torch.Tensor:
        """``ids`` with each keyframe code (``frames``) swapped, with probability ``p``, for a code drawn
        from the batch's keyframe codes."""
        pool = ids[frames]
        if not len(pool):
            return ids
        swap = frames & (torch.rand(ids.shape, device=ids.device) < p)
        drawn = pool[torch.randint(len(pool), ids.shape, device=ids.device)]
        return torch.where(swap, drawn, ids)

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        lcfg = self.cfg.loss
        logits, labels, plan = self._forward(model, batch)
        weights = self._cell_weights(batch) if lcfg.mouth_ce > 0 else None
        ce, acc = code_cross_entropy(logits, labels, self.vocab.factors, weights)
        loss = lcfg.lambda1 * ce
        logs = {"ce": float(ce.detach()), "acc": float(acc)}
        if plan is not None:
            plan_ce = F.cross_entropy(plan[0].float(), plan[1])
            loss = loss + lcfg.aperture * plan_ce
            logs |= {"aperture_ce": float(plan_ce.detach()),
                     "aperture_acc": float((plan[0].argmax(-1) == plan[1]).float().mean())}
        if lcfg.stage == 2:
            terms = self._pixel_terms(logits, batch)
            loss = loss + lcfg.lambda2 * terms["lpips"] + lcfg.lambda3 * terms["identity"] + lcfg.lambda4 * terms["facial"]
            logs.update({k: float(v.detach()) for k, v in terms.items()})
        return loss, logs

    def _cell_weights(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per selected label: 1 + loss.mouth_ce where it predicts a frame token inside the mouth box."""
        lcfg = self.cfg.loss
        full = tuple(int(x) for x in batch["ref_grid"])
        fw = int(batch["grid"][1])
        r0, _, c0, _ = window_cells(full, self.frame_window)
        sel = batch["labels"] != IGNORE
        cell = batch["offset"][sel] - (FRAME_OFFSET - 1)  # a label at offset o predicts frame token o - 2
        row = r0 + torch.div(cell, fw, rounding_mode="floor")  # in the full grid
        col = c0 + cell % fw
        m0, m1, n0, n1 = window_cells(full, lcfg.mouth_box)
        inside = (cell >= 0) & (col >= n0) & (col < n1) & (row >= m0) & (row < m1)
        return 1.0 + lcfg.mouth_ce * inside.float()

    # -- stage 2 -------------------------------------------------------------------------------
    def pixel_losses(self, device: torch.device) -> nn.Module:
        if self._pixel_losses is None:
            from .losses import PixelLosses

            lc = self.cfg.loss
            self._pixel_losses = PixelLosses(lc.lpips_weights, lc.facenet_weights, lc.lpips_net)
            log.info("stage-2 loss backends: %s", self._pixel_losses.backends)
        return self._pixel_losses.to(device)

    @staticmethod
    def _reference(tok: nn.Module, batch: dict[str, Any], device: torch.device,
                   rows: torch.Tensor | slice | None = None) -> torch.Tensor | None:
        """Reference crops (``ref_pixels``, [-1, 1]) for a tokenizer that decodes against one, else None.

        ``rows`` picks utterances (one reference per decoded frame when it indexes per keyframe)."""
        if not getattr(tok, "needs_reference", False):
            return None
        if "ref_pixels" not in batch:
            raise InputError("the tokenizer decodes against a reference image but the batch has no reference pixels",
                             "rebuild the FKG token cache (it stores the reference crop of every clip)")
        ref = batch["ref_pixels"] if rows is None else batch["ref_pixels"][rows]
        return ref.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _decode_logits(self, tok: nn.Module, logits: torch.Tensor, reference: torch.Tensor | None,
                       ref_codes: torch.Tensor) -> torch.Tensor:
        """Keyframe logits ``[k, f, sum(factors)]`` -> images through the tokenizer (a windowed model's
        other cells are ``ref_codes [k, h, w]``, whose shape is the full grid)."""
        codes = code_vectors_from_logits(tok, logits, ref_codes, self.vocab.factors, self.vocab.codebook_size,
                                         self.frame_window, mode=self.cfg.loss.decode_mode)
        return tok.decode_codes(codes, reference)

    def _pixel_terms(self, logits: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        grid = tuple(int(x) for x in batch["grid"])
        f = grid[0] * grid[1]
        per_frame = logits.reshape(-1, f, logits.shape[-1])
        n = per_frame.shape[0]
        k = min(n, max(1, self.cfg.loss.max_frames))
        idx = torch.linspace(0, n - 1, k).round().long().to(logits.device)
        tok = self.tokenizer(logits.device)
        if tok is None:
            raise InputError("stage 2 needs the visual tokenizer", "set data.tokenizer in the fkg recipe")
        utterance = torch.repeat_interleave(torch.arange(len(batch["n_units"])), batch["n_units"].cpu())
        ref = self._reference(tok, batch, logits.device, utterance[idx.cpu()])
        ref_codes = self._ref_codes(batch)[utterance[idx.cpu()]].to(logits.device)
        gen = self._decode_logits(tok, per_frame[idx], ref, ref_codes)
        if "key_pixels" in batch:
            real = batch["key_pixels"].to(logits.device)[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        else:
            codes = self._frame_codes(batch).reshape(-1, *grid)[idx].to(logits.device)
            real = tok.decode(torch.stack([paste_window(r, c[None], self.frame_window)[0]
                                           for r, c in zip(ref_codes, codes)]), reference=ref)
        return self.pixel_losses(logits.device)(gen, real.to(gen.dtype))

    def _frame_codes(self, batch: dict[str, Any]) -> torch.Tensor:
        """Ground-truth generated-cell codes of every keyframe in the batch, ``[total, f]``."""
        return self.vocab.codes_of(batch["ids"][batch["kind"] == KIND_FRAME]).reshape(-1, int(batch["grid"].prod()))

    def _ref_codes(self, batch: dict[str, Any], rows: slice = slice(None)) -> torch.Tensor:
        """Reference codes of the batch's utterances ``rows`` (all by default), ``[B, h, w]``."""
        h, w = (int(x) for x in batch["ref_grid"])
        return self.vocab.codes_of(batch["ids"][rows, 1:1 + h * w].cpu()).reshape(-1, h, w)

    # -- evaluation ----------------------------------------------------------------------------
    def _row(self, batch: dict[str, Any], b: int) -> dict[str, torch.Tensor]:
        """Utterance ``b``: reference codes ``[h, w]``, unit and duration ids, and the keyframes'
        ground-truth codes of the generated cells ``[n, fh, fw]`` and of the full grid (``full_codes``)."""
        h, w = (int(x) for x in batch["ref_grid"])
        fh, fw = (int(x) for x in batch["grid"])
        n = int(batch["n_units"][b])
        r, s = prefix_length(h * w), segment_length(fh * fw)
        ids = batch["ids"][b, :r + n * s].cpu()
        segs = ids[r:].reshape(n, s)
        ref = self._ref_codes(batch, slice(b, b + 1))[0]
        frames = self.vocab.codes_of(segs[:, FRAME_OFFSET:]).reshape(n, fh, fw)
        part = {"ref_codes": ref, "unit_ids": segs[:, 1], "dur_ids": segs[:, 0], "frame_codes": frames,
                "full_codes": paste_window(ref, frames, self.frame_window)}
        if "context" in batch:  # the neighbours of each unit token, in segment order
            part["context_ids"] = batch["context"][b, :r + n * s].cpu()[r:].reshape(n, s, 2)[:, 1]
        if "aperture" in batch:  # the true aperture bin of each keyframe
            part["aperture"] = batch["aperture"][b, :r + n * s].cpu()[r:].reshape(n, s)[:, 0]
        return part

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, Any]]) -> dict[str, float]:
        sums: dict[str, list[float]] = {}

        def add(name: str, values) -> None:
            sums.setdefault(name, []).extend(np.atleast_1d(np.asarray(values, dtype=np.float64)).tolist())

        for batch in batches:
            logits, labels, plan = self._forward(model, batch)
            ce, acc = code_cross_entropy(logits, labels, self.vocab.factors)
            add("ce", float(ce))
            add("acc", float(acc))
            if plan is not None:
                add("aperture_acc", (plan[0].argmax(-1) == plan[1]).float().numpy())
        if self.cfg.eval.generate:
            self._evaluate_generation(model, batches, add)
        return {k: float(np.mean(v)) for k, v in sums.items() if v}

    def _evaluate_generation(self, model: nn.Module, batches: list[dict[str, Any]], add) -> None:
        def generate(part: dict[str, torch.Tensor]) -> torch.Tensor:
            plan = None
            if self.cfg.eval.force_aperture >= 0:
                plan = torch.full_like(part["unit_ids"], self.cfg.eval.force_aperture)
            elif self.cfg.eval.oracle_aperture and "aperture" in part:
                plan = part["aperture"]
            expected = self.cfg.eval.keyframe_decode == "expected"
            res = generate_keyframes(model, part["ref_codes"], part["unit_ids"], part["dur_ids"],
                                     SamplingConfig(guidance=self.cfg.eval.guidance,
                                                    plan_guidance=self.cfg.eval.plan_guidance,
                                                    plan_pick=self.cfg.eval.plan_pick),
                                     context_ids=part.get("context_ids"), apertures=plan, return_logits=expected)
            gen = crop_window(res.codes, self.frame_window)
            add("gen_code_acc", float((gen == part["frame_codes"].to(gen.device)).float().mean()))
            if res.apertures is not None and "aperture" in part:
                miss = (res.apertures.cpu() - part["aperture"]).abs()
                add("gen_aperture_acc", (miss == 0).float().numpy())
                add("gen_aperture_near_acc", (miss <= 1).float().numpy())  # off by at most one bin
            if res.apertures is not None:
                part["plan_bins"] = res.apertures.cpu()
            if expected and tok is not None:  # code vectors, which _pixel_metrics decodes as they are
                return keyframe_code_vectors(tok, res.codes, res.logits, part["ref_codes"], self.vocab.factors,
                                             self.vocab.codebook_size, self.frame_window, "expected")
            return res.codes

        check_keyframe_decode(self.cfg.eval.keyframe_decode, "eval.keyframe_decode")
        tok = self.tokenizer(next(model.parameters()).device)

        self.evaluate_codes(batches, generate, add, next(model.parameters()).device)

    @torch.no_grad()
    def evaluate_codes(self, batches: list[dict[str, Any]], make_codes: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                       add: Callable[[str, Any], None], device: torch.device | str = "cpu") -> None:
        """Pixel and mouth-state metrics of keyframe codes: ``make_codes(part) -> [n, h, w]`` gives the
        full-grid codes of one utterance, or float ``[n, C, h, w]`` code vectors (``part`` as ``_row``
        returns it); the first
        ``eval.max_utterances`` utterances are scored and each metric is passed to ``add(name, values)``."""
        tok = self.tokenizer(device)
        done = 0
        for batch in batches:
            first = 0
            for b in range(batch["ids"].shape[0]):
                n = int(batch["n_units"][b])
                rows = slice(first, first + n)
                first += n
                if done >= self.cfg.eval.max_utterances:
                    return
                done += 1
                part = self._row(batch, b)
                codes = make_codes(part)
                if tok is not None:
                    self._pixel_metrics(tok, batch, b, rows, part, codes, add)

    def _pixel_metrics(self, tok: nn.Module, batch: dict[str, Any], b: int, rows: slice,
                       part: dict[str, torch.Tensor], codes: torch.Tensor, add) -> None:
        n = rows.stop - rows.start
        dev = codes.device
        reference = self._reference(tok, batch, dev, slice(b, b + 1))
        gen = to_unit(tok.decode_codes(as_code_vectors(tok, codes.to(dev)), reference).clamp(-1, 1)).cpu()
        real = (to_unit(batch["key_pixels"][rows].cpu()) if "key_pixels" in batch
                else to_unit(tok.decode(part["full_codes"].to(dev), reference=reference)).cpu())
        ref = (to_unit(batch["ref_pixels"][b:b + 1].cpu()) if "ref_pixels" in batch
               else to_unit(tok.decode(part["ref_codes"][None].to(dev), reference=reference)).cpu())
        still = ref.expand_as(real)
        add("kf_psnr", psnr(gen, real).numpy())
        add("kf_ssim", ssim(gen, real).numpy())
        add("still_psnr", psnr(still, real).numpy())
        add("still_ssim", ssim(still, real).numpy())
        truth = self._val_ds.mouth_truth(batch["clip_ids"][b]) if self._val_ds is not None else None
        if truth is not None and "key_boxes" in batch:
            keys = batch["key_frames"][rows].cpu().numpy()
            boxes = batch["key_boxes"][rows].cpu().numpy()
            tol = self.cfg.eval.openness_tol
            states = mouth_states(gen, boxes, truth, keys)
            got = mouth_accuracy(states, tol)
            if "plan_bins" in part:  # the plan against the truth, and the drawn mouth against its plan
                centre = bin_centres(self.aperture_bins)[part["plan_bins"]].numpy()
                add("plan_open_acc", np.abs(centre - states["open_true"]) <= tol)
                add("mouth_plan_acc", np.abs(states["open_pred"] - centre) <= tol)
                add("mouth_plan_bias", states["open_pred"] - centre)
            base = mouth_accuracy(mouth_states(still, boxes, truth, keys), tol)
            for name, v in got.items():
                add(name, [v] * n)
            for name, v in base.items():
                add(f"still_{name}", [v] * n)
        if "key_landmarks16" in batch:
            lms = batch["key_landmarks16"][rows].cpu().numpy() / 16.0
            measured_real = pixel_openness(real, lms)
            tol = self.cfg.eval.pixel_openness_tol
            for name, img in (("mouth_open_px_acc", gen), ("still_mouth_open_px_acc", still)):
                add(name, np.nan_to_num(np.abs(pixel_openness(img, lms) - measured_real), nan=1e9) <= tol)
