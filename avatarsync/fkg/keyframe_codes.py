"""Keyframe logits or codes -> the tokenizer's code vectors (what its decoder reads).

Two ways to turn a decoded keyframe into pixels (``KEYFRAME_DECODES``):

* ``argmax``: the codes decoding picked, looked up in the codebook;
* ``expected``: each cell's softmax-expected code vector under the decoding
  logits (the stage-2 ``soft`` decode). Where a cell is uncertain between
  codes it decodes their average instead of betting on one, which keeps a
  mouth whose cells disagree from snapping to the most common (closed) shape.

A windowed model's cells outside the window are the reference codes
(confident one-hot logits there).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..options import KEYFRAME_DECODES
from .layout import window_cells
from .model import code_log_probs, digit_logits
from .vocab import split_codes


def check_keyframe_decode(how: str, setting: str = "keyframe_decode") -> str:
    """``how`` if it names a keyframe decode, else an InputError naming ``setting`` and the choices."""
    if how not in KEYFRAME_DECODES:
        raise InputError(f"unknown keyframe decode {how!r} ({setting})", f"use one of {', '.join(KEYFRAME_DECODES)}")
    return how


def module_device(module: nn.Module, fallback: torch.Tensor | torch.device | str = "cpu") -> torch.device:
    """Where ``module``'s first parameter or buffer lives (a fake tokenizer may have neither: ``fallback``,
    a device or a tensor's)."""
    first = next(iter([*module.parameters(), *module.buffers()]), None)
    if first is not None:
        return first.device
    return fallback.device if isinstance(fallback, torch.Tensor) else torch.device(fallback)


def as_code_vectors(tok: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """Code vectors ``[k, C, h, w]`` in the tokenizer's dtype: token ids ``[k, h, w]`` looked up in the
    codebook, code vectors (float) as they are."""
    vectors = codes if codes.is_floating_point() else tok.indices_to_codes(codes)
    weight = next(tok.parameters(), None)
    return vectors if weight is None else vectors.to(weight.dtype)


def full_grid_logits(logits: torch.Tensor, ref_codes: torch.Tensor, factors: tuple[int, ...],
                     frame_window: Sequence[float] | None) -> torch.Tensor:
    """Window logits ``[k, f, D]`` -> full-grid logits ``[k, h, w, D]``: outside the window,
    confident one-hot logits of the reference codes ``ref_codes [k, h, w]``."""
    k, (h, w) = logits.shape[0], ref_codes.shape[-2:]
    if frame_window is None:
        return logits.reshape(k, h, w, -1)
    digits = split_codes(ref_codes.to(logits.device).expand(k, h, w), factors)
    full = torch.cat([F.one_hot(digits[..., i], n) for i, n in enumerate(factors)], -1)
    full = (full.to(logits.dtype) * 2 - 1) * 30.0
    r0, r1, c0, c1 = window_cells((h, w), frame_window)
    full[:, r0:r1, c0:c1] = logits.reshape(k, r1 - r0, c1 - c0, -1)
    return full


def code_vectors_from_logits(tok: nn.Module, logits: torch.Tensor, ref_codes: torch.Tensor,
                             factors: tuple[int, ...], codebook_size: int,
                             frame_window: Sequence[float] | None, mode: str = "soft") -> torch.Tensor:
    """The tokenizer's code vectors ``[k, C, h, w]`` from keyframe logits ``[k, f, sum(factors)]``
    (``mode``: ``soft`` = expected code, ``st`` = argmax code with the softmax's gradient).
    Per-digit logits go to the tokenizer directly when its factorisation matches; otherwise the
    joint log-probabilities over the codebook."""
    lg = full_grid_logits(logits, ref_codes, factors, frame_window)
    if len(factors) == 1:
        return tok.codes_from_logits(lg, mode=mode)
    if getattr(tok, "factors", 1) == len(factors) and getattr(tok, "factor_size", None) == factors[0] \
            and len(set(factors)) == 1:
        return tok.codes_from_logits(digit_logits(lg, factors), mode=mode)
    return tok.codes_from_logits(code_log_probs(lg, factors, codebook_size), mode=mode)


def keyframe_code_vectors(tok: nn.Module, codes: torch.Tensor, logits: torch.Tensor | None,
                          ref_codes: torch.Tensor, factors: tuple[int, ...], codebook_size: int,
                          frame_window: Sequence[float] | None, how: str = "argmax") -> torch.Tensor:
    """Code vectors ``[k, C, h, w]`` of decoded keyframes: of their ``codes [k, h, w]`` (``argmax``),
    or expected under their decoding ``logits [k, f, D]`` (``expected``; ``ref_codes [h, w]`` fills
    a windowed model's other cells)."""
    if how == "argmax":
        return as_code_vectors(tok, codes)
    if how != "expected":
        raise ValueError(f"keyframe decode must be one of {KEYFRAME_DECODES}, got {how!r}")
    if logits is None:
        raise ValueError("the expected keyframe decode needs the decoding logits (return_logits=True)")
    device = module_device(tok, logits)
    return code_vectors_from_logits(tok, logits.to(device), ref_codes.to(device), factors, codebook_size,
                                    frame_window, mode="soft")
