"""avatarsync: phoneme-driven talking-head generation."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing avatarsync stays cheap; torch and the models load on first use.
    if name == "Pipeline":
        from .pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'avatarsync' has no attribute {name!r}")
