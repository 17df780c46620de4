"""Training checkpoints (resume state) and exported model folders.

A training checkpoint is ``out_dir/checkpoints/step_000123/`` holding
``model.safetensors`` plus ``state.pt`` (optimiser, scheduler, step, RNG).
An exported model folder holds ``config.yaml`` + ``model.safetensors``.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, shared storage broken (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen and ptr != -1:
            t = t.clone()
        seen[ptr] = name
        out[name] = t.contiguous()
    return out


def save_weights(model: nn.Module, path: str | Path) -> None:
    save_file(state_dict_for_saving(model), str(path))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True):
    """Load a safetensors file into ``model``; returns the missing and unexpected keys."""
    from ..weights import load_weights as load_weight_file

    return load_weight_file(model, path, strict=strict)


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.startswith("step_") and (p / "state.pt").is_file()),
                  key=lambda p: int(p.name.split("_")[1]))


def rng_state() -> dict:
    """This process's random streams (and its current GPU's, when CUDA is in use)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def prune(out_dir: str | Path, keep: int) -> None:
    dirs = checkpoint_dirs(out_dir)
    for p in dirs[: max(0, len(dirs) - keep)]:
        shutil.rmtree(p, ignore_errors=True)
