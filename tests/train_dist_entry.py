"""What the multi-process training tests launch (torchrun / the deepspeed launcher): the real CLI
(`avatarsync train toy --config RECIPE ...`, arguments as the launcher passes them) with a toy task
registered. The task records which example indices each process trained on.

Environment: ``TOY_RANK_CWD`` (optional) -- each process works in ``$TOY_RANK_CWD/rank<RANK>``, so files
written under a relative ``train.out_dir`` show which process wrote them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset


class Indexed(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


class ToyTask:
    """Linear regression y = x @ w_true (val metric: MSE)."""

    name = "toy"

    @dataclass
    class Config:
        n: int = 96
        seen_dir: str = ""  # each process appends the indices of its training batches to rank<R>.jsonl here
        stop_after: int = 0  # > 0: raise KeyboardInterrupt (as Ctrl-C would) after this many training batches

    def __init__(self, config: Config | None = None) -> None:
        self.cfg = config or self.Config()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(4, 1, generator=g)
        self.x = torch.randn(self.cfg.n, 4, generator=g)
        self.xv = torch.randn(32, 4, generator=g)
        self.calls = 0

    def build_model(self) -> nn.Module:
        torch.manual_seed(1)
        return nn.Linear(4, 1)

    def train_dataset(self) -> Dataset:
        return Indexed(self.x, self.x @ self.w)

    def val_dataset(self) -> Dataset:
        return Indexed(self.xv, self.xv @ self.w)

    def collate(self, items):
        return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items]),
                "idx": torch.tensor([i[2] for i in items])}

    def compute_loss(self, model, batch):
        self.calls += 1
        if self.cfg.stop_after and self.calls > self.cfg.stop_after:
            raise KeyboardInterrupt
        if self.cfg.seen_dir and model.training:
            with open(Path(self.cfg.seen_dir) / f"rank{os.environ.get('RANK', '0')}.jsonl", "a") as f:
                f.write(json.dumps(batch["idx"].tolist()) + "\n")
        loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {"mse": loss.item()}

    @torch.no_grad()
    def evaluate(self, model, batches):
        return {"mse": float(sum(nn.functional.mse_loss(model(b["x"]), b["y"]) for b in batches) / len(batches))}


def main() -> int:
    import avatarsync.train.registry as registry
    from avatarsync.cli import main as cli_main

    registry.TASKS["toy"] = (__name__, "ToyTask")
    registry.TASK_NAMES = (*registry.TASK_NAMES, "toy")
    if os.environ.get("TOY_RANK_CWD"):
        cwd = Path(os.environ["TOY_RANK_CWD"]) / f"rank{os.environ.get('RANK', '0')}"
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
