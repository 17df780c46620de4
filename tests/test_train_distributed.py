"""Training as several processes on CPU (gloo): launched by torchrun / the deepspeed launcher through the CLI,
each process trains on a disjoint shard, only rank 0 writes, two processes export what one process with the
same global batch exports (EMA included), and DeepSpeed ZeRO-2 resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from avatarsync.train.config import TrainConfig
from avatarsync.train.distributed import ShardSampler
from avatarsync.train.loop import Trainer, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_dist_entry import ToyTask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "tests" / "train_dist_entry.py"
BIN = Path(sys.executable).parent
ZERO2 = ROOT / "recipes" / "deepspeed_zero2.json"
N = 96
# per process: batch 8 x accumulation 2; two processes: global batch 32 (one process: batch 16)
TRAIN = dict(steps=24, batch_size=8, grad_accum=2, lr=0.1, warmup_steps=3, log_every=4, eval_every=8, save_every=8,
             device="cpu", seed=0, ema=0.9, threads=1)


def _recipe(tmp_path: Path, seen: Path | None = None, out_dir: str = "run", **train) -> Path:
    path = tmp_path / "recipe.yaml"
    task = {"task": "toy", "n": N, "seen_dir": str(seen) if seen else "", "stop_after": train.pop("stop_after", 0)}
    path.write_text(yaml.safe_dump({**task, "train": {**TRAIN, "out_dir": out_dir, **train}}))
    return path


def _launch(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("LOCAL_RANK", None)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def _untrained_mse() -> float:
    task = ToyTask()
    return task.evaluate(task.build_model(), [task.collate(list(task.val_dataset()))])["mse"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_close_weights(a: Path, b: Path, tol: float = 1e-5) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=tol, atol=tol)


def test_shard_sampler_splits_each_epoch_disjointly():
    g = torch.Generator()
    shards = []
    for r in range(3):
        g.manual_seed(7)
        shards.append(list(ShardSampler(10, r, 3, g)))
    assert all(len(s) == 3 for s in shards) and len(set().union(*shards)) == 9
    g.manual_seed(7)
    one = list(ShardSampler(10, 0, 1, g))
    g.manual_seed(7)
    assert one == torch.randperm(10, generator=g).tolist()  # one process: the order of a shuffled DataLoader


def test_cli_accepts_the_launchers_local_rank(monkeypatch):
    from avatarsync.cli import _take_local_rank, build_parser

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv = _take_local_rank(["--local_rank=1", "train", "fkg", "--config", "r.yaml", "train.steps=3"])
    assert argv == ["train", "fkg", "--config", "r.yaml", "train.steps=3"] and os.environ["LOCAL_RANK"] == "1"
    assert _take_local_rank(["train", "--local-rank", "2", "fkg"]) == ["train", "fkg"]
    args, extra = build_parser().parse_known_args(argv)
    assert args.task == "fkg" and list(args.overrides) + extra == ["train.steps=3"]  # as main() joins them


def test_two_processes_under_torchrun_match_one_process_with_the_same_global_batch(tmp_path, capsys):
    seen = tmp_path / "seen"
    seen.mkdir()
    work = tmp_path / "work"
    recipe = _recipe(tmp_path, seen)
    proc = _launch([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(ENTRY), "-v", "train", "toy",
                    "--config", str(recipe), "--quiet"], ROOT, {"TOY_RANK_CWD": str(work)})
    assert "batch 8 per process x 2 process(es) x 2 accumulation step(s) = global batch 32" in proc.stderr
    assert proc.stdout.count("trained toy for 24 steps") == 1  # rank 0 reports
    run = work / "rank0" / "run"

    # only rank 0 wrote: rank 1 worked in its own directory, and nothing is there; one line per logged step
    assert [p for p in (work / "rank1").rglob("*") if p.is_file()] == []
    logged = [m["step"] for m in _metrics(run) if "loss" in m]
    assert logged == list(range(4, 25, 4))
    assert (run / "final" / "model.safetensors").is_file() and len(list((run / "checkpoints").iterdir())) == 2

    # each epoch (48 examples a process: 6 batches of 8) is split into disjoint shards covering the data
    shard = {r: [json.loads(line) for line in (seen / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    assert len(shard[0]) == len(shard[1]) == 24 * 2
    for e in range(len(shard[0]) // 6):
        a = {i for b in shard[0][6 * e:6 * e + 6] for i in b}
        b = {i for b in shard[1][6 * e:6 * e + 6] for i in b}
        assert len(a) == len(b) == 48 and not a & b and a | b == set(range(N))

    # one process with batch 16 x accumulation 2 (the same global batch 32) exports the same EMA weights
    ref = fit(ToyTask(), TrainConfig(**{**TRAIN, "batch_size": 16, "out_dir": str(tmp_path / "ref")}), progress=False)
    _assert_close_weights(run / "final" / "model.safetensors", tmp_path / "ref" / "final" / "model.safetensors")
    ref_losses = [m["loss"] for m in _metrics(tmp_path / "ref") if "loss" in m]
    assert [m["loss"] for m in _metrics(run) if "loss" in m] == pytest.approx(ref_losses, rel=1e-4)
    final = json.loads((run / "final" / "metrics.json").read_text())
    assert final["val/mse"] == pytest.approx(ref.final_metrics["val/mse"], rel=1e-4)
    assert final["val/mse"] < 0.2 * _untrained_mse()
    with capsys.disabled():
        print(f"\n2-process torchrun (gloo, CPU): {1000 * final['elapsed_s'] / 24:.1f} ms/step")


def _ds_cfg(out: Path, **kw) -> TrainConfig:
    base = {**TRAIN, "out_dir": str(out), "steps": 12, "log_every": 1, "eval_every": 0, "save_every": 4,
            "deepspeed": str(ZERO2)}
    return TrainConfig(**{**base, **kw})


def test_deepspeed_zero2_resumes_exactly_with_ema(tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    full = fit(ToyTask(), _ds_cfg(tmp_path / "full"), progress=False)

    class StopAt8(Trainer):
        def _save(self, step, *a, **k):
            super()._save(step, *a, **k)
            if step == 8:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StopAt8(ToyTask(), _ds_cfg(tmp_path / "cut"), progress=False).fit()
    resumed = fit(ToyTask(), _ds_cfg(tmp_path / "cut"), progress=False)
    assert resumed.steps == 12
    losses = {h["step"]: h["loss"] for h in full.history}
    assert [h["step"] for h in resumed.history] == [9, 10, 11, 12]
    assert [h["loss"] for h in resumed.history] == pytest.approx([losses[s] for s in (9, 10, 11, 12)], rel=1e-6)
    exported = tmp_path / "cut" / "final" / "model.safetensors"
    _assert_close_weights(exported, tmp_path / "full" / "final" / "model.safetensors", 1e-6)

    # the export is the EMA, updated under DeepSpeed as in the plain loop (not the initial weights)
    plain = fit(ToyTask(), replace(_ds_cfg(tmp_path / "plain"), deepspeed=None), progress=False)
    _assert_close_weights(exported, tmp_path / "plain" / "final" / "model.safetensors")
    assert resumed.final_metrics["val/mse"] == pytest.approx(plain.final_metrics["val/mse"], rel=1e-4)
    assert resumed.final_metrics["val/mse"] < 0.5 * _untrained_mse()
    init = ToyTask().build_model().state_dict()
    assert not torch.allclose(load_file(str(exported))["weight"], init["weight"])


@pytest.mark.slow
def test_two_processes_under_the_deepspeed_launcher_resume_exactly(tmp_path):
    """~2.5 min on 2 cores: three 2-process DeepSpeed launches (uninterrupted; stopped after step 8; resumed)."""
    pytest.importorskip("deepspeed")
    runs = {}
    for name, stop in (("full", 0), ("cut", 8 * 2), ("cut", 0)):
        recipe = _recipe(tmp_path, out_dir=str(tmp_path / name), steps=12, log_every=1, eval_every=0, save_every=4,
                         deepspeed=str(ZERO2), stop_after=stop)
        proc = _launch([str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(29500 + os.getpid() % 1000),
                        str(ENTRY), "train", "toy", "--config", str(recipe), "--quiet"], ROOT, check=not stop)
        assert stop == 0 or proc.returncode != 0
        runs[name] = tmp_path / name
    full, cut = _metrics(runs["full"]), _metrics(runs["cut"])
    assert [m["step"] for m in cut] == list(range(1, 9)) + list(range(9, 13))
    assert [m["loss"] for m in cut] == pytest.approx([m["loss"] for m in full], rel=1e-6)
    _assert_close_weights(runs["cut"] / "final" / "model.safetensors", runs["full"] / "final" / "model.safetensors",
                          1e-6)
    shards = sorted(p.name for p in (runs["cut"] / "checkpoints").rglob("zero_pp_rank_*_optim_states.pt"))
    assert shards == sorted(["zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"] * 2)
    shutil.rmtree(tmp_path / "full", ignore_errors=True)
