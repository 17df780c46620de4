"""Held-out evaluation of the keyframe model (``FKGTask.evaluate``; metrics listed in task.py)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..tokenizers.losses import psnr
from .aperture import bin_centres
from .generate import SamplingConfig, generate_keyframes
from .keyframe_codes import as_code_vectors, check_keyframe_decode, keyframe_code_vectors
from .layout import FRAME_OFFSET, crop_window, paste_window, prefix_length, segment_length
from .metrics import mouth_accuracy, mouth_states, pixel_openness, ssim, to_unit
from .model import code_cross_entropy


class FKGEvaluation:
    """``evaluate`` / ``evaluate_codes`` of ``FKGTask``; uses the task's ``cfg.eval``, ``vocab``,
    ``tokenizer()``, ``frame_window``, ``aperture_bins``, ``_forward``, ``_reference``, ``_ref_codes``
    and ``_val_ds``."""

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
        add("kf_psnr", psnr(gen * 2 - 1, real * 2 - 1).numpy())  # psnr takes [-1, 1]
        add("kf_ssim", ssim(gen, real).numpy())
        add("still_psnr", psnr(still * 2 - 1, real * 2 - 1).numpy())
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
