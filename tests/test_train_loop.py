"""The shared training loop on a toy task: loss falls, resume continues, DeepSpeed ZeRO-2 runs on CPU."""

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from avatarsync.train.checkpoint import checkpoint_dirs
from avatarsync.train.config import TrainConfig
from avatarsync.train.loop import fit
from avatarsync.train.schedule import cosine_with_warmup


class ToyTask:
    """Linear regression y = x @ w_true; val metric is MSE."""

    name = "toy"

    @dataclass
    class Config:
        dim: int = 4

    def __init__(self, config=None):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(4, 1, generator=g)
        self.x = torch.randn(96, 4, generator=g)
        self.xv = torch.randn(32, 4, generator=g)

    def build_model(self):
        torch.manual_seed(1)
        return nn.Linear(4, 1)

    def train_dataset(self):
        return TensorDataset(self.x, self.x @ self.w)

    def val_dataset(self):
        return TensorDataset(self.xv, self.xv @ self.w)

    def collate(self, items):
        return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}

    def compute_loss(self, model, batch):
        loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {"mse": loss.item()}

    def evaluate(self, model, batches):
        with torch.no_grad():
            return {"mse": float(sum(nn.functional.mse_loss(model(b["x"]), b["y"]) for b in batches) / len(batches))}


def _cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), steps=60, batch_size=16, lr=5e-2, warmup_steps=5, log_every=5,
                eval_every=20, save_every=20, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_warms_up_then_decays():
    vals = [cosine_with_warmup(s, 100, 10, 0.1) for s in range(100)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(vals[10:], vals[11:]))
    assert vals[-1] == pytest.approx(0.1, abs=1e-3)


def test_loss_falls_and_model_is_exported(tmp_path):
    res = fit(ToyTask(), _cfg(tmp_path), progress=False)
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert losses[-1] < 0.05 * losses[0]
    task = ToyTask()
    untrained = task.evaluate(task.build_model(), [task.collate(list(task.val_dataset()))])["mse"]
    assert res.final_metrics["val/mse"] < 0.05 * untrained
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "final" / "metrics.json").read_text())["step"] == 60


def test_resume_matches_uninterrupted_run(tmp_path):
    full = fit(ToyTask(), _cfg(tmp_path / "a"), progress=False)
    # interrupted: run 40 steps of a 60-step schedule, then resume to 60
    cfg = _cfg(tmp_path / "b")
    part = TrainConfig(**{**cfg.__dict__, "steps": 60})
    import avatarsync.train.loop as loop_mod

    class StopAt40(loop_mod.Trainer):
        def _save(self, step, *a, **k):
            super()._save(step, *a, **k)
            if step == 40:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StopAt40(ToyTask(), part, progress=False).fit()
    assert [p.name for p in checkpoint_dirs(cfg.out_dir)][-1] == "step_0000040"
    resumed = fit(ToyTask(), cfg, progress=False)
    assert resumed.steps == 60
    assert resumed.final_metrics["val/mse"] == pytest.approx(full.final_metrics["val/mse"], rel=1e-4, abs=1e-7)


def test_ema_copy_is_exported(tmp_path):
    res = fit(ToyTask(), _cfg(tmp_path, ema=0.9), progress=False)
    task = ToyTask()
    untrained = task.evaluate(task.build_model(), [task.collate(list(task.val_dataset()))])["mse"]
    assert res.final_metrics["val/mse"] < 0.2 * untrained


def test_deepspeed_zero2_trains_on_cpu(tmp_path, monkeypatch):
    deepspeed = pytest.importorskip("deepspeed")
    ds_json = tmp_path / "ds.json"
    ds_json.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    # the CPU shared-memory all-reduce op only speeds up multi-process runs and takes minutes to compile
    import importlib

    ds_comm_torch = importlib.import_module("deepspeed.comm.torch")  # the module, not deepspeed.comm's `torch`

    monkeypatch.setattr(ds_comm_torch, "build_shm_op", lambda: None)
    cfg = _cfg(tmp_path, steps=12, deepspeed=str(ds_json), eval_every=0, save_every=0, log_every=1)
    res = fit(ToyTask(), cfg, progress=False)
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_ema_copies_frozen_weights_exactly():
    import torch
    from torch import nn

    from avatarsync.train.loop import EMA

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    with torch.no_grad():
        model[0].weight.mul_(1.2345678)  # values whose moving average would drift by rounding
    ema = EMA(model, 0.99)
    for _ in range(50):
        with torch.no_grad():
            model[1].weight.add_(0.01)
        ema.update(model)
    assert torch.equal(ema.shadow[0].weight, model[0].weight)
    assert not torch.equal(ema.shadow[1].weight, model[1].weight)
