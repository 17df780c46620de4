"""Settings of the shared training loop (the ``train:`` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"  # checkpoints, logs and the final model folder
    steps: int = 1000  # optimiser steps
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8
    save_every: int = 200
    keep_checkpoints: int = 2
    ema: float = 0.0  # EMA decay of weights (0 = off); the EMA copy is what gets exported
    resume: bool = True  # continue from the newest checkpoint in out_dir when there is one
    deepspeed: str | None = None  # path to a DeepSpeed JSON config (ZeRO-2) to train under DeepSpeed
    max_minutes: float = 0.0  # stop early (and save) after this wall time; 0 = no limit
    threads: int = 0  # torch CPU threads (0 = torch's default)
