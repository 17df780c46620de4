"""The torch device a user's device name means (``--device``, recipes' ``device`` / ``cache_device``)."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; a CUDA device without CUDA is an ``InputError``."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available", "use --device cpu or auto")
    return torch.device(name)
