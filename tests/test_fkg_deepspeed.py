"""The tiny keyframe model trains 3 steps under DeepSpeed ZeRO-2 on CPU (gloo), through the shared loop."""

import json
from pathlib import Path

import pytest
import torch

from avatarsync.fkg.fakes import toy_examples
from avatarsync.fkg.generate import generate_keyframes
from avatarsync.fkg.model import FKGModel
from avatarsync.fkg.task import FKGConfig, FKGTask
from avatarsync.train.config import TrainConfig
from avatarsync.train.loop import fit

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_tiny_fkg_trains_three_steps_under_zero2_on_cpu(tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    import importlib

    ds_comm_torch = importlib.import_module("deepspeed.comm.torch")  # the module, not deepspeed.comm's `torch`

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    # DeepSpeed's CPU backend compiles a shared-memory all-reduce op (~200 s) on first use; it is only
    # a speed-up for multi-process CPU runs, so this single-process test goes without it.
    monkeypatch.setattr(ds_comm_torch, "build_shm_op", lambda: None)
    units = list("abcd")
    task = FKGTask(FKGConfig(size="tiny", codebook_size=16),
                   train_examples=toy_examples(16, units, codebook_size=16, seed=0),
                   val_examples=toy_examples(2, units, codebook_size=16, seed=1))
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=3, batch_size=4, lr=1e-2, warmup_steps=0,
                      log_every=1, eval_every=0, save_every=0, device="cpu", seed=0,
                      deepspeed=str(RECIPES / "deepspeed_zero2.json"))
    res = fit(task, cfg, task_config=task.cfg, progress=False)
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    final = tmp_path / "run" / "final"
    assert json.loads((final / "model.json").read_text())["mask_variant"] == "one_to_one"
    assert "val/gen_code_acc" in res.final_metrics
    model = FKGModel.from_pretrained(final)
    v = model.vocab
    out = generate_keyframes(model, torch.zeros(2, 2, dtype=torch.long), [v.unit_id("a")], [v.duration_id(0.1)])
    assert out.codes.shape == (1, 2, 2)
