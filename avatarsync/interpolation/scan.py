"""Selective scan (the Mamba S6 recurrence) behind one interface, several backends.

All backends share mamba-ssm's ``selective_scan_fn`` layout::

    u, delta, z : (batch, dim, L)    A : (dim, N)    B, C : (batch, N, L)
    D, delta_bias : (dim,)           returns y : (batch, dim, L)

and compute, per channel d and state n, with ``dt = softplus(delta + bias)``::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t        (h_0 = 0)
    y_t = <h_t, C_t> + D * u_t,   then  y_t *= silu(z_t)

Backends: ``reference`` (the loop above, pure PyTorch), ``mambapy`` (mambapy's
parallel scan, fast on CPU), ``transformers`` (transformers' Mamba torch path),
``cuda`` (mamba-ssm's fused kernel; CUDA tensors only). ``auto`` picks per call:
cuda for CUDA tensors when mamba-ssm imports, else mambapy, else reference.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import BackendUnavailable, InputError

BACKENDS = ("reference", "mambapy", "transformers", "cuda")

ScanFn = Callable[..., torch.Tensor]


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Float32 discretisation shared by the torch backends: (dA, dBu, C) as (b, d, L, N), (b, d, L, N), (b, L, N)."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bt = B.float().transpose(1, 2)[:, None]  # (b, 1, L, N)
    dA = torch.exp(delta[..., None] * A.float()[None, :, None, :])  # (b, d, L, N)
    dBu = (delta * u.float())[..., None] * Bt  # (b, d, L, N)
    return dA, dBu, C.float().transpose(1, 2)  # C: (b, L, N)


def _finish(y, u, D, z, dtype):
    if D is not None:
        y = y + u.float() * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence written out as a loop over time: the definition the other backends must match."""
    _check_shapes(u, delta, A, B, C)
    dA, dBu, Ct = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    h = torch.zeros_like(dA[:, :, 0])  # (b, d, N)
    ys = []
    for t in range(u.shape[-1]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append((h * Ct[:, None, t]).sum(-1))  # (b, d)
    return _finish(torch.stack(ys, dim=-1), u, D, z, u.dtype)


def selective_scan_mambapy(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same recurrence via mambapy's Blelloch parallel scan (O(log L) sequential steps)."""
    _check_shapes(u, delta, A, B, C)
    try:
        from mambapy.pscan import pscan
    except ImportError as e:  # pragma: no cover - mambapy is a core dependency
        raise BackendUnavailable("scan backend 'mambapy' needs the mambapy package", "pip install mambapy") from e
    dA, dBu, Ct = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    hs = pscan(dA.transpose(1, 2), dBu.transpose(1, 2))  # (b, L, d, N)
    y = (hs * Ct[:, :, None, :]).sum(-1).transpose(1, 2)  # (b, d, L)
    return _finish(y, u, D, z, u.dtype)


def selective_scan_transformers(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """transformers' Mamba ``mamba_selective_scan`` (its torch path on CPU)."""
    _check_shapes(u, delta, A, B, C)
    fn = _transformers_scan()
    y = fn(u.float(), delta.float(), A.float(), B.float(), C.float(),
           D=None if D is None else D.float(), z=None if z is None else z.float(),
           delta_bias=None if delta_bias is None else delta_bias.float(), delta_softplus=delta_softplus)
    return y.to(u.dtype)


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba-ssm's fused CUDA kernel."""
    _check_shapes(u, delta, A, B, C)
    if not u.is_cuda:
        raise BackendUnavailable("scan backend 'cuda' needs CUDA tensors", "move the model to a GPU or use backend='auto'")
    fn = _cuda_scan()
    if fn is None:
        raise BackendUnavailable("scan backend 'cuda' needs mamba-ssm built with CUDA", "pip install mamba-ssm causal-conv1d")
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return fn(c(u), c(delta), c(A.float()), c(B), c(C), c(None if D is None else D.float()), c(z),
              delta_bias=None if delta_bias is None else delta_bias.float(), delta_softplus=delta_softplus)


@functools.lru_cache(maxsize=1)
def _cuda_scan():
    """mamba-ssm's selective_scan_fn, or None where it cannot be imported (no CUDA build)."""
    if not torch.cuda.is_available():
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or an OSError from a missing CUDA library
        return None
    return selective_scan_fn


@functools.lru_cache(maxsize=1)
def _cuda_conv():
    if not torch.cuda.is_available():
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


@functools.lru_cache(maxsize=1)
def _transformers_scan():
    try:
        from transformers.models.mamba.modeling_mamba import mamba_selective_scan
    except Exception as e:
        raise BackendUnavailable("scan backend 'transformers' needs transformers with Mamba (>= 4.39)",
                                 "pip install -U transformers, or use backend='reference'") from e
    return mamba_selective_scan


@functools.lru_cache(maxsize=1)
def _mambapy_available() -> bool:
    try:
        import mambapy.pscan  # noqa: F401
    except Exception:
        return False
    return True


_IMPLS: dict[str, ScanFn] = {
    "reference": selective_scan_reference,
    "mambapy": selective_scan_mambapy,
    "transformers": selective_scan_transformers,
    "cuda": selective_scan_cuda,
}


def _check_shapes(u, delta, A, B, C) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise InputError(f"selective scan: u and delta must both be (batch, dim, L); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise InputError(f"selective scan: A must be (dim={d}, N); got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (b, n, L):
            raise InputError(f"selective scan: {name} must be (batch, N, L) = {(b, n, L)}; got {tuple(t.shape)}")


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that work for tensors on ``device`` here."""
    out = ["reference"]
    if _mambapy_available():
        out.append("mambapy")
    try:
        _transformers_scan()
        out.append("transformers")
    except BackendUnavailable:
        pass
    if torch.device(device).type == "cuda" and _cuda_scan() is not None:
        out.append("cuda")
    return out


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The concrete backend that ``backend`` (possibly ``auto``) means for tensors on ``device``."""
    if backend != "auto" and backend not in BACKENDS:
        raise InputError(f"unknown selective-scan backend {backend!r}", f"use auto or one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if torch.device(device).type == "cuda" and _cuda_scan() is not None:
        return "cuda"
    return "mambapy" if _mambapy_available() else "reference"


class SelectiveScan:
    """Callable selective scan; ``backend`` is fixed or ``auto`` (resolved per call from the tensors' device)."""

    def __init__(self, backend: str = "auto") -> None:
        resolve_backend(backend, "cpu")  # validates the name
        self.backend = backend

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
        name = resolve_backend(self.backend, u.device)
        return _IMPLS[name](u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)

    def __repr__(self) -> str:
        return f"SelectiveScan(backend={self.backend!r})"


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str = "auto") -> torch.Tensor:
    """Depthwise causal conv over time followed by SiLU: x (b, d, L), weight (d, k).

    Uses causal-conv1d's kernel for CUDA tensors when installed (backend auto/cuda).
    """
    if x.is_cuda and backend in ("auto", "cuda") and _cuda_conv() is not None:
        return _cuda_conv()(x.contiguous(), weight.contiguous(), bias, activation="silu")
    k = weight.shape[-1]
    y = F.conv1d(x, weight[:, None, :], bias, padding=k - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(y)
