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

The job is split by modules: config.py (the recipe's dataclasses), model.py
(``FKGModel.from_pretrained`` / ``save_pretrained``), collate.py (batches),
evaluation.py (the held-out metrics) and this file (data, vocabulary, model
building and the training losses).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset

from ..data.corpus import check_extra_corpus
from ..device import resolve_device
from ..errors import CheckpointError, InputError
from .collate import FKGCollate
from .config import FKGConfig
from .data import CacheDataset, ExampleDataset, FKGExample, build_token_cache, crop_config, read_cache_index
from .evaluation import FKGEvaluation
from .keyframe_codes import code_vectors_from_logits
from .layout import FRAME_OFFSET, IGNORE, KIND_FRAME, KIND_UNIT, TokenMeta, paste_window, window_cells
from .masks import canonical_variant, default_stride, packed_mask
from .model import FKGModel, code_cross_entropy
from .vocab import UNK_UNIT, FKGVocab, build_unit_list

log = logging.getLogger("avatarsync.fkg")


class FKGTask(FKGCollate, FKGEvaluation):
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
        dev = resolve_device(d.cache_device)
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
            from ..tokenizers import VisualTokenizer

            self._tokenizer = VisualTokenizer.from_pretrained(self.cfg.data.tokenizer, device or "cpu")
            self._tokenizer.requires_grad_(False)  # frozen, in eval mode
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
        from ..weights import load_weights

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
        model.save_pretrained(folder, self.cfg)

    # -- forward and loss ------------------------------------------------------------------------
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
