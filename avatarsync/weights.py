"""Reading weight files: the one state-dict loader of the package (inference-safe: no training code).

``read_state_dict`` reads ``.safetensors`` with safetensors and anything else
(``.pth`` / ``.pt`` / ``.ckpt``) with ``torch.load(weights_only=True)`` on the
CPU, unwrapping a ``{"state_dict": ...}`` checkpoint; ``load_weights`` puts a
file into a module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError


def read_state_dict(path: str | Path, what: str = "weight file", hint: str = "",
                    allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a local weight file; ``CheckpointError`` (``what`` names it, ``hint`` the fix)
    when it is missing. ``allow_pickle``: a file ``weights_only`` refuses (a trusted Lightning
    checkpoint that pickles its hyper-parameters) is loaded in full instead."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p} not found", hint or "give the path of a local file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        if not allow_pickle:
            raise
        state = torch.load(p, map_location="cpu", weights_only=False)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_weights(model: nn.Module, path: str | Path, strict: bool = True):
    """Load a weight file into ``model``; returns the missing and unexpected keys."""
    return model.load_state_dict(read_state_dict(path), strict=strict)
