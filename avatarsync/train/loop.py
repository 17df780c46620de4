"""One training loop for every model (tokenizer, fkg, interp), plain or under DeepSpeed.

The loop owns devices, precision, the Adam(W) optimiser with a warm-up +
cosine schedule, gradient accumulation and clipping, EMA, periodic held-out
evaluation, checkpoints that resume, and the exported model folder. A model
plugs in through a ``TrainTask`` (train/task.py).

Launched as several processes (torchrun or the deepspeed launcher; see
docs/training.md) each process trains on its own shard of every epoch, the
gradients are averaged (train/distributed.py, or ZeRO under DeepSpeed), and
only rank 0 logs, writes metrics, checkpoints and the exported model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import save_config
from ..device import resolve_device
from ..errors import InputError
from . import distributed as dist_utils
from .checkpoint import checkpoint_dirs, load_weights, prune, rng_state, save_weights, set_rng_state
from .config import TrainConfig
from .schedule import cosine_with_warmup
from .task import TrainTask

log = logging.getLogger("avatarsync.train")


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _infinite(loader: DataLoader, seed: int, start_batch: int = 0) -> Iterator[Any]:
    """Endless batches; epoch ``e`` is shuffled with ``seed + e``, so the order depends only on
    the batch index and a resumed run sees the same batches as an uninterrupted one. With several
    processes each one iterates its own disjoint shard of that permutation."""
    n = len(loader)
    if n == 0:
        raise InputError("the training dataset is empty", "check the data section of the recipe")
    epoch, skip = divmod(start_batch, n)
    while True:
        if loader.generator is not None:
            loader.generator.manual_seed(seed + epoch)
        for i, batch in enumerate(loader):
            if i >= skip:
                yield batch
        skip = 0
        epoch += 1


def to_device(batch: Any, device: torch.device, float_dtype: torch.dtype | None = None) -> Any:
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        return t.to(float_dtype) if float_dtype is not None and t.is_floating_point() else t
    if isinstance(batch, dict):
        return {k: to_device(v, device, float_dtype) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, float_dtype) for v in batch)
    return batch


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype is torch.float16:
        raise InputError("fp16 training needs CUDA", "use precision bf16 or fp32 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


class EMA:
    """Exponential moving average of a module's floating-point state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Warm-up: the effective decay grows as (1+n)/(10+n) up to ``decay``, so short runs
        do not export weights that still remember initialisation."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        for (name, s), m in zip(self.shadow.state_dict().items(), model.state_dict().values()):
            if s.is_floating_point() and name not in frozen:  # frozen weights are copied: no rounding drift
                s.mul_(decay).add_(m.detach().to(s.dtype), alpha=1 - decay)
            else:
                s.copy_(m)


def deepspeed_config(cfg: TrainConfig, device: torch.device) -> dict:
    """Read the recipe's DeepSpeed JSON and fill in what the TrainConfig decides."""
    path = Path(cfg.deepspeed)
    if not path.is_file():
        raise InputError(f"DeepSpeed config {path} not found", "point train.deepspeed at a JSON file such as recipes/deepspeed_zero2.json")
    ds = json.loads(path.read_text())
    world = dist_utils.world_size()
    ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["train_batch_size"] = cfg.batch_size * cfg.grad_accum * world
    ds["gradient_clipping"] = cfg.grad_clip
    ds["bf16"] = {"enabled": cfg.precision == "bf16"}
    ds["fp16"] = {"enabled": cfg.precision == "fp16", **({"initial_scale_power": 12} if cfg.precision == "fp16" else {})}
    ds.pop("optimizer", None)  # the loop passes its own torch optimiser and scheduler
    ds.pop("scheduler", None)
    ds["zero_allow_untested_optimizer"] = True
    ds.setdefault("steps_per_print", max(cfg.steps + 1, 10**9))
    return ds


class Trainer:
    """Runs ``task`` under ``cfg``; see ``fit``."""

    def __init__(self, task: TrainTask, cfg: TrainConfig, task_config: Any = None, progress: bool = True) -> None:
        self.task, self.cfg, self.task_config, self.progress = task, cfg, task_config, progress
        self.out_dir = Path(cfg.out_dir)
        self.device = resolve_device(cfg.device)
        self.use_deepspeed = bool(cfg.deepspeed)

    # -- set-up -----------------------------------------------------------------------------
    def _loaders(self) -> tuple[DataLoader, DataLoader | None]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        world = dist_utils.world_size()
        train_ds = self.task.train_dataset()
        # one permutation per epoch drawn from ``gen`` (seeded seed + epoch by _infinite); process r takes every
        # world-th example of it from r, so the shards are disjoint and the processes' batches of a step together
        # are the batch of one process with world times the batch size
        sampler = dist_utils.ShardSampler(len(train_ds), dist_utils.rank(), world, gen)
        train = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=False,
                           collate_fn=self.task.collate, num_workers=cfg.num_workers, generator=gen)
        val_ds = self.task.val_dataset()
        val = None
        if val_ds is not None and len(val_ds) > 0:
            val = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False, collate_fn=self.task.collate,
                             num_workers=cfg.num_workers)
        return train, val

    def _optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.cfg
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cosine_with_warmup(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
        return opt, sched

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, val: DataLoader | None, float_dtype=None) -> dict[str, float]:
        if val is None:
            return {}
        batches = []
        for i, b in enumerate(val):
            if i >= self.cfg.eval_batches:
                break
            batches.append(to_device(b, self.device, float_dtype))
        was_training = model.training
        model.eval()
        with torch.no_grad(), _autocast(self.device, self.cfg.precision if not self.use_deepspeed else "fp32"):
            metrics = self.task.evaluate(model, batches)
        model.train(was_training)
        return {f"val/{k}": float(v) for k, v in metrics.items()}

    # -- main -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = dist_utils.process_device(self.device)
        created_group = dist_utils.init(self.device, self.use_deepspeed)
        self.rank, self.world = dist_utils.rank(), dist_utils.world_size()
        main = self.rank == 0
        seed_everything(cfg.seed)
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "train.yaml")
            if self.task_config is not None:
                save_config(self.task_config, self.out_dir / "task.yaml")
        model = self.task.build_model().to(self.device)
        model.train()
        if self.world > 1:
            if not self.use_deepspeed:
                dist_utils.broadcast_module(model)  # (DeepSpeed broadcasts rank 0's weights itself)
            seed_everything(cfg.seed + self.rank)  # dropout and augmentation differ between processes
        train_loader, val_loader = self._loaders()
        opt, sched = self._optimizer(model)
        ema = EMA(model, cfg.ema) if cfg.ema > 0 and main else None  # only rank 0 evaluates and exports
        start_step = 0
        float_dtype = None
        engine = None
        if self.use_deepspeed:
            import deepspeed

            engine, opt, _, sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                                         config=deepspeed_config(cfg, self.device))
            float_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
            start_step = self._resume_deepspeed(engine, ema)
        else:
            start_step = self._resume_plain(model, opt, sched, ema)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" and not engine else None
        params = [p for p in model.parameters() if p.requires_grad]
        global_batch = cfg.batch_size * self.world * cfg.grad_accum
        if main:
            log.info("training %s with %s: batch %d per process x %d process(es) x %d accumulation step(s) = "
                     "global batch %d, %d example(s) per process and epoch", self.task.name,
                     "DeepSpeed" if engine else ("torch.distributed" if self.world > 1 else "one process"),
                     cfg.batch_size, self.world, cfg.grad_accum, global_batch, len(train_loader.sampler))

        history: list[dict[str, float]] = []
        metrics_file = (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8") if main else None
        batches = _infinite(train_loader, cfg.seed, start_step * cfg.grad_accum)
        t0 = time.time()
        bar = None
        if self.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start_step, desc=f"train {self.task.name}", unit="step")
        step = start_step
        last_logged: dict[str, float] = {}
        try:
            while step < cfg.steps:
                logs: dict[str, float] = {}
                total = torch.zeros((), device=self.device)
                if engine is not None:
                    for _ in range(cfg.grad_accum):
                        batch = to_device(next(batches), self.device, float_dtype)
                        loss, logs = self.task.compute_loss(engine, batch)
                        engine.backward(loss)
                        engine.step()
                        total += loss.detach().float()
                    lr = sched.get_last_lr()[0] if sched is not None else cfg.lr
                else:
                    opt.zero_grad(set_to_none=True)
                    bad = None
                    for _ in range(cfg.grad_accum):
                        batch = to_device(next(batches), self.device)
                        with _autocast(self.device, cfg.precision):
                            loss, logs = self.task.compute_loss(model, batch)
                        if not torch.isfinite(loss):
                            bad = loss.item()
                            break
                        total += loss.detach().float()
                        loss = loss / cfg.grad_accum
                        (scaler.scale(loss) if scaler else loss).backward()
                    if not dist_utils.average_gradients(params, bad is None):
                        where = "" if bad is not None or self.world == 1 else " on another process"
                        raise FloatingPointError(f"loss became {bad if bad is not None else 'non-finite'}{where} "
                                                 f"at step {step}")
                    if scaler:
                        scaler.unscale_(opt)
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    if scaler:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    lr = sched.get_last_lr()[0]
                if ema is not None:
                    ema.update(engine.module if engine is not None else model)
                step += 1
                loss_value = float(total) / cfg.grad_accum
                if step % cfg.log_every == 0 or step == cfg.steps:
                    entry = {"step": step, "lr": lr, "loss": dist_utils.mean(loss_value, self.device),
                             **{k: float(v) for k, v in logs.items()}, "elapsed_s": time.time() - t0}
                    if main:
                        last_logged = entry
                        metrics_file.write(json.dumps(entry) + "\n")
                        metrics_file.flush()
                        history.append(entry)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                eval_model = ema.shadow if ema is not None else (engine.module if engine else model)
                if main and cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < cfg.steps:
                    ev = self.evaluate(eval_model, val_loader, float_dtype)
                    if ev:
                        ev["step"] = step
                        metrics_file.write(json.dumps(ev) + "\n")
                        metrics_file.flush()
                        history.append(ev)
                        log.info("step %d %s", step, ev)
                out_of_time = cfg.max_minutes > 0 and dist_utils.any_true(
                    (time.time() - t0) > cfg.max_minutes * 60, self.device)
                if (cfg.save_every > 0 and step % cfg.save_every == 0) or out_of_time:
                    self._save(step, model, opt, sched, ema, engine)
                if out_of_time:
                    if main:
                        log.warning("stopping at step %d: max_minutes=%s reached", step, cfg.max_minutes)
                    break
        finally:
            if bar is not None:
                bar.close()
            if metrics_file is not None:
                metrics_file.close()
        self._save(step, model, opt, sched, ema, engine)
        final: dict[str, float] = {}
        if main:
            final_model = ema.shadow if ema is not None else (engine.module if engine else model)
            final = self.evaluate(final_model, val_loader, float_dtype)
            final.update({k: v for k, v in last_logged.items() if k not in ("step",)})
            self._export(final_model, final, step)
        final = dist_utils.broadcast_object(final)  # every process returns rank 0's figures, after the export
        if created_group and not self.use_deepspeed:
            dist_utils.shutdown()
        return TrainResult(out_dir=self.out_dir, steps=step, final_metrics=final, history=history)

    # -- checkpoints ------------------------------------------------------------------------
    def _save(self, step, model, opt, sched, ema, engine) -> None:
        """Every process calls this at the same steps; only rank 0 writes, except for the ZeRO shards of the
        optimiser state, which DeepSpeed writes from each process."""
        main = self.rank == 0
        ckpt = self.out_dir / "checkpoints" / f"step_{step:07d}"
        rngs = dist_utils.all_gather_object(rng_state())  # each process's streams, for an exact resume
        if main:
            ckpt.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {"step": step, "rng": rngs[0], "rng_per_process": rngs,
                                 "ema_updates": ema.updates if ema is not None else 0}
        if engine is not None:
            dist_utils.barrier()
            engine.save_checkpoint(str(ckpt / "deepspeed"), tag="state")
            dist_utils.barrier()  # every shard is on disk before state.pt marks the checkpoint complete
        elif main:
            save_weights(model, ckpt / "model.safetensors")
            state.update(optimizer=opt.state_dict(), scheduler=sched.state_dict())
        if not main:
            return
        if ema is not None:
            save_weights(ema.shadow, ckpt / "ema.safetensors")
        state_tmp = ckpt / "state.pt.tmp"
        torch.save(state, state_tmp)
        os.replace(state_tmp, ckpt / "state.pt")
        prune(self.out_dir, self.cfg.keep_checkpoints)

    def _newest(self) -> Path | None:
        if not self.cfg.resume:
            return None
        dirs = checkpoint_dirs(self.out_dir)
        return dirs[-1] if dirs else None

    def _resume_state(self, ckpt: Path, state: dict, ema: EMA | None) -> int:
        """The step, this process's RNG streams and the EMA of checkpoint ``ckpt`` (its ``state.pt``)."""
        rngs = state.get("rng_per_process")
        if rngs is not None and len(rngs) == self.world:
            set_rng_state(rngs[self.rank])
        elif self.rank == 0:  # saved with another number of processes (or by an older version)
            set_rng_state(state["rng"])
        if ema is not None:
            if (ckpt / "ema.safetensors").is_file():
                load_weights(ema.shadow, ckpt / "ema.safetensors")
            ema.updates = int(state.get("ema_updates", state["step"]))
        if self.rank == 0:
            log.info("resumed from %s (step %d)", ckpt, state["step"])
        return int(state["step"])

    def _resume_plain(self, model, opt, sched, ema) -> int:
        ckpt = self._newest()
        if ckpt is None:
            return 0
        load_weights(model, ckpt / "model.safetensors")
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        return self._resume_state(ckpt, state, ema)

    def _resume_deepspeed(self, engine, ema) -> int:
        ckpt = self._newest()
        if ckpt is None:
            return 0
        engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state")
        return self._resume_state(ckpt, torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False), ema)

    def _export(self, model: nn.Module, metrics: dict[str, float], step: int) -> None:
        folder = self.out_dir / "final"
        folder.mkdir(parents=True, exist_ok=True)
        exporter = getattr(self.task, "export", None)
        if callable(exporter):
            exporter(model, folder)
        else:
            save_weights(model, folder / "model.safetensors")
            if self.task_config is not None:
                save_config(self.task_config, folder / "config.yaml")
        clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items() if isinstance(v, (int, float))}
        (folder / "metrics.json").write_text(json.dumps({"step": step, **clean}, indent=1))


def fit(task: TrainTask, cfg: TrainConfig, task_config: Any = None, progress: bool = True) -> TrainResult:
    """Train ``task`` with ``cfg``; resumes from ``cfg.out_dir`` when a checkpoint is there."""
    return Trainer(task, cfg, task_config, progress).fit()
