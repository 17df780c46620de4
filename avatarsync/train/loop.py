"""One training loop for every model (tokenizer, fkg, interp), plain or under DeepSpeed.

The loop owns devices, precision, the Adam(W) optimiser with a warm-up +
cosine schedule, gradient accumulation and clipping, EMA, periodic held-out
evaluation, checkpoints that resume, and the exported model folder. A model
plugs in through a ``TrainTask`` (train/task.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import save_config
from ..errors import InputError
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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available", "use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _infinite(loader: DataLoader, seed: int, start_batch: int = 0) -> Iterator[Any]:
    """Endless batches; epoch ``e`` is shuffled with ``seed + e``, so the order depends only on
    the batch index and a resumed run sees the same batches as an uninterrupted one."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_dist_env() -> None:
    """Single-process defaults so DeepSpeed starts without a launcher (gloo on CPU)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def deepspeed_config(cfg: TrainConfig, device: torch.device) -> dict:
    """Read the recipe's DeepSpeed JSON and fill in what the TrainConfig decides."""
    path = Path(cfg.deepspeed)
    if not path.is_file():
        raise InputError(f"DeepSpeed config {path} not found", "point train.deepspeed at a JSON file such as recipes/deepspeed_zero2.json")
    ds = json.loads(path.read_text())
    world = int(os.environ.get("WORLD_SIZE", "1"))
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
        train = DataLoader(self.task.train_dataset(), batch_size=cfg.batch_size, shuffle=True, drop_last=False,
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
        seed_everything(cfg.seed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out_dir / "train.yaml")
        if self.task_config is not None:
            save_config(self.task_config, self.out_dir / "task.yaml")
        model = self.task.build_model().to(self.device)
        model.train()
        train_loader, val_loader = self._loaders()
        opt, sched = self._optimizer(model)
        ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
        start_step = 0
        float_dtype = None
        engine = None
        if self.use_deepspeed:
            import deepspeed

            _ensure_dist_env()
            if not torch.distributed.is_initialized():
                deepspeed.init_distributed(dist_backend="nccl" if self.device.type == "cuda" else "gloo",
                                           verbose=False)
            engine, opt, _, sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                                         config=deepspeed_config(cfg, self.device))
            float_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
            start_step = self._resume_deepspeed(engine)
        else:
            start_step = self._resume_plain(model, opt, sched, ema)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" and not engine else None

        history: list[dict[str, float]] = []
        metrics_file = (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8")
        batches = _infinite(train_loader, cfg.seed, start_step * cfg.grad_accum)
        t0 = time.time()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start_step, desc=f"train {self.task.name}", unit="step")
        step = start_step
        last_logged: dict[str, float] = {}
        try:
            while step < cfg.steps:
                logs: dict[str, float] = {}
                if engine is not None:
                    for _ in range(cfg.grad_accum):
                        batch = to_device(next(batches), self.device, float_dtype)
                        loss, logs = self.task.compute_loss(engine, batch)
                        engine.backward(loss)
                        engine.step()
                    lr = sched.get_last_lr()[0] if sched is not None else cfg.lr
                else:
                    opt.zero_grad(set_to_none=True)
                    for _ in range(cfg.grad_accum):
                        batch = to_device(next(batches), self.device)
                        with _autocast(self.device, cfg.precision):
                            loss, logs = self.task.compute_loss(model, batch)
                        loss = loss / cfg.grad_accum
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
                        (scaler.scale(loss) if scaler else loss).backward()
                    if scaler:
                        scaler.unscale_(opt)
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    if scaler:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    lr = sched.get_last_lr()[0]
                    if ema is not None:
                        ema.update(model)
                step += 1
                entry = {"step": step, "lr": lr, "loss": float(loss.detach().float()) * (1 if engine else cfg.grad_accum),
                         **{k: float(v) for k, v in logs.items()}}
                if step % cfg.log_every == 0 or step == cfg.steps:
                    entry["elapsed_s"] = time.time() - t0
                    last_logged = entry
                    metrics_file.write(json.dumps(entry) + "\n")
                    metrics_file.flush()
                    history.append(entry)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{entry['loss']:.4f}")
                eval_model = ema.shadow if ema is not None else (engine.module if engine else model)
                if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < cfg.steps:
                    ev = self.evaluate(eval_model, val_loader, float_dtype)
                    if ev:
                        ev["step"] = step
                        metrics_file.write(json.dumps(ev) + "\n")
                        metrics_file.flush()
                        history.append(ev)
                        log.info("step %d %s", step, ev)
                out_of_time = cfg.max_minutes > 0 and (time.time() - t0) > cfg.max_minutes * 60
                if (cfg.save_every > 0 and step % cfg.save_every == 0) or out_of_time:
                    self._save(step, model, opt, sched, ema, engine)
                if out_of_time:
                    log.warning("stopping at step %d: max_minutes=%s reached", step, cfg.max_minutes)
                    break
        finally:
            if bar is not None:
                bar.close()
            metrics_file.close()
        self._save(step, model, opt, sched, ema, engine)
        final_model = ema.shadow if ema is not None else (engine.module if engine else model)
        final = self.evaluate(final_model, val_loader, float_dtype)
        final.update({k: v for k, v in last_logged.items() if k not in ("step",)})
        self._export(final_model, final, step)
        return TrainResult(out_dir=self.out_dir, steps=step, final_metrics=final, history=history)

    # -- checkpoints ------------------------------------------------------------------------
    def _save(self, step, model, opt, sched, ema, engine) -> None:
        ckpt = self.out_dir / "checkpoints" / f"step_{step:07d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        if engine is not None:
            engine.save_checkpoint(str(ckpt / "deepspeed"), tag="state")
            torch.save({"step": step, "rng": rng_state()}, ckpt / "state.pt")
        else:
            save_weights(model, ckpt / "model.safetensors")
            if ema is not None:
                save_weights(ema.shadow, ckpt / "ema.safetensors")
            state_tmp = ckpt / "state.pt.tmp"
            torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "rng": rng_state(), "ema_updates": ema.updates if ema is not None else 0}, state_tmp)
            os.replace(state_tmp, ckpt / "state.pt")
        prune(self.out_dir, self.cfg.keep_checkpoints)

    def _newest(self) -> Path | None:
        if not self.cfg.resume:
            return None
        dirs = checkpoint_dirs(self.out_dir)
        return dirs[-1] if dirs else None

    def _resume_plain(self, model, opt, sched, ema) -> int:
        ckpt = self._newest()
        if ckpt is None:
            return 0
        load_weights(model, ckpt / "model.safetensors")
        if ema is not None and (ckpt / "ema.safetensors").is_file():
            load_weights(ema.shadow, ckpt / "ema.safetensors")
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if ema is not None:
            ema.updates = int(state.get("ema_updates", state["step"]))
        log.info("resumed from %s (step %d)", ckpt, state["step"])
        return int(state["step"])

    def _resume_deepspeed(self, engine) -> int:
        ckpt = self._newest()
        if ckpt is None:
            return 0
        engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state")
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        set_rng_state(state["rng"])
        return int(state["step"])

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
