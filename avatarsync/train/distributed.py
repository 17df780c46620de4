"""Several processes training one model: joining the process group, averaging gradients, rank 0 writes.

A launcher (``torchrun``, the ``deepspeed`` launcher) starts one process per GPU (or per CPU slot) and
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. The loop
(train/loop.py) then joins the process group here. Without DeepSpeed it averages gradients with
``average_gradients`` after the backward passes of a step, one bucketed all-reduce instead of wrapping
the model in ``DistributedDataParallel``: tasks call submodules of the model directly (the tokenizer,
its discriminator), which DDP would not see, so its gradients would silently stay unsynchronised.
Under DeepSpeed, ZeRO reduces the gradients itself. Either way only rank 0 writes files.
"""

from __future__ import annotations

import importlib
import os
import socket
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_env() -> None:
    """Defaults so DeepSpeed starts without a launcher (one process, gloo on CPU)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def process_device(device: torch.device) -> torch.device:
    """``cuda`` means this process's GPU (``cuda:LOCAL_RANK``) when a launcher started several."""
    if device.type == "cuda":
        if device.index is None and world_size() > 1:
            device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


def init(device: torch.device, deepspeed: bool) -> bool:
    """Join the process group when launched as several processes, or under DeepSpeed (which always needs
    one); returns whether this call created it. NCCL on CUDA, gloo on CPU.

    On CPU, DeepSpeed would first compile a shared-memory all-reduce op (minutes, needs a compiler); gloo
    works without it, so it is skipped unless ``AVATARSYNC_DS_SHM=1``.
    """
    backend = "nccl" if device.type == "cuda" else "gloo"
    if deepspeed:
        import deepspeed as ds

        _single_process_env()
        if device.type == "cpu" and os.environ.get("AVATARSYNC_DS_SHM", "0") != "1":
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        created = not dist.is_initialized()
        ds.init_distributed(dist_backend=backend, verbose=False)
        return created
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend=backend)
    return True


class ShardSampler(Sampler[int]):
    """Shuffles as ``DataLoader(shuffle=True, generator=generator)`` does (one ``torch.randperm`` from
    ``generator`` per epoch, so one process sees the same order as with a plain shuffled loader) and keeps
    this process's shard of it: every ``world``-th index from ``rank`` on. Shards are disjoint; an epoch
    drops the fewer than ``world`` examples left over."""

    def __init__(self, n: int, rank: int, world: int, generator: torch.Generator) -> None:
        self.n, self.rank, self.world, self.generator = n, rank, world, generator

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        yield from perm[self.rank:self.n - self.n % self.world:self.world]


def broadcast_module(model: nn.Module) -> None:
    """Every process starts from rank 0's weights and buffers."""
    if world_size() > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def average_gradients(params: list[nn.Parameter], ok: bool = True, bucket_elems: int = 1 << 24) -> bool:
    """Average the gradients of ``params`` over the processes, in place; returns whether ``ok`` holds on
    every process (the loop's finite-loss check, so that all processes stop together).

    A gradient that is ``None`` everywhere stays ``None`` (AdamW then skips the parameter, as in one
    process); one that is missing on some processes only counts as zeros there.
    """
    if world_size() <= 1:
        return ok
    device = params[0].device if params else torch.device("cpu")
    flags = torch.tensor([float(p.grad is not None) for p in params] + [float(not ok)], device=device)
    dist.all_reduce(flags)
    if flags[-1].item() > 0:
        return False
    present = flags[:-1].tolist()
    grads = []
    for p, n in zip(params, present):
        if n > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    scale = 1.0 / world_size()
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        bucket: list[torch.Tensor] = []
        size = 0
        for g in group + [None]:
            if g is not None:
                bucket.append(g)
                size += g.numel()
            if bucket and (g is None or size >= bucket_elems):
                flat = torch.cat([b.reshape(-1) for b in bucket])
                dist.all_reduce(flat)
                flat.mul_(scale)
                offset = 0
                for b in bucket:
                    b.copy_(flat[offset:offset + b.numel()].view_as(b))
                    offset += b.numel()
                bucket, size = [], 0
    return True


def mean(value: float, device: torch.device) -> float:
    """``value`` averaged over the processes."""
    if world_size() <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def any_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on some process (so that all processes take the same branch)."""
    if world_size() <= 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return t.item() > 0


def all_gather_object(obj: Any) -> list[Any]:
    if world_size() <= 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if world_size() <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
