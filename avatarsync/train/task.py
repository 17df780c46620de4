"""The contract between a model and the one training loop (train/loop.py).

Each trainable model (tokenizer, fkg, interp) provides a ``TrainTask``: it
builds its module and datasets from its own config, computes a loss for a
batch, and evaluates on held-out data. The loop owns everything else:
devices, precision, optimiser, cosine schedule, DeepSpeed, logging,
checkpoints and resume.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset


@runtime_checkable
class TrainTask(Protocol):
    name: str  # "tokenizer" | "fkg" | "interp" | "decoder"

    def build_model(self) -> nn.Module:
        """A freshly initialised (or pretrained-from-config) module."""

    def train_dataset(self) -> Dataset:
        """Training examples; items are collated by ``collate``."""

    def val_dataset(self) -> Dataset:
        """Held-out examples (unseen identities / sentences)."""

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Batch a list of dataset items into tensors."""

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise plus named float metrics to log."""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Held-out metrics (higher-is-better names end in _psnr/_acc/..., documented per task)."""
