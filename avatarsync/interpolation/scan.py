"""Selective state-space scans behind one interface, with interchangeable backends.

Two scan families, each in the layout of its mamba-ssm kernel:

* ``SelectiveScan`` - Mamba-1 (S6), like ``selective_scan_fn``::

      u, delta, z: (b, d, L)   A: (d, N)   B, C: (b, N, L)   D, delta_bias: (d,)  ->  y: (b, d, L)
      dt = softplus(delta + bias);  h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t;  y_t = <h_t, C_t> + D u_t;  y *= silu(z)

* ``SSDScan`` - Mamba-2 (scalar decay per head), like ``mamba_chunk_scan_combined``::

      x: (b, L, H, P)   dt: (b, L, H)   A, dt_bias: (H,)   B, C: (b, L, G, N)   D: (H,)  ->  y: (b, L, H, P)
      h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T  (per head);   y_t = h_t C_t + D x_t

Backends (same names for both families):
  ``reference``    the recurrence as a loop over time, pure PyTorch: the definition.
  ``torch``        fast pure PyTorch: mambapy's parallel scan (S6) / a chunked SSD (matmuls).
  ``transformers`` transformers' Mamba / Mamba2 torch functions.
  ``cuda``         mamba-ssm's kernels (CUDA tensors, mamba-ssm installed).
  ``auto``         per call: ``cuda`` for CUDA tensors when mamba-ssm imports, else ``torch``.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import BackendUnavailable, InputError

BACKENDS = ("reference", "torch", "transformers", "cuda")
INF = float("inf")


# ----------------------------------------------------------------------------- Mamba-1 (S6)


def _s6_discretise(u, delta, A, B, delta_bias, delta_softplus):
    """float32 (dA, dBu), both (b, d, L, N)."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dA = torch.exp(delta[..., None] * A.float()[None, :, None, :])
    dBu = (delta * u.float())[..., None] * B.float().transpose(1, 2)[:, None]
    return dA, dBu


def _s6_finish(y, u, D, z):
    if D is not None:
        y = y + u.float() * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def _s6_check(u, delta, A, B, C) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise InputError(f"selective scan: u and delta must both be (batch, dim, L); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise InputError(f"selective scan: A must be (dim={d}, N); got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (b, A.shape[1], L):
            raise InputError(f"selective scan: {name} must be (batch, N, L) = {(b, A.shape[1], L)}; got {tuple(t.shape)}")


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """S6 as a loop over time."""
    _s6_check(u, delta, A, B, C)
    dA, dBu = _s6_discretise(u, delta, A, B, delta_bias, delta_softplus)
    Ct = C.float().transpose(1, 2)  # (b, L, N)
    h = torch.zeros_like(dA[:, :, 0])  # (b, d, N)
    ys = []
    for t in range(u.shape[-1]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append((h * Ct[:, None, t]).sum(-1))
    return _s6_finish(torch.stack(ys, dim=-1), u, D, z)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """S6 through mambapy's Blelloch parallel scan (log L sequential steps); the loop where mambapy is missing."""
    if not _mambapy_available():
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    from mambapy.pscan import pscan

    _s6_check(u, delta, A, B, C)
    dA, dBu = _s6_discretise(u, delta, A, B, delta_bias, delta_softplus)
    hs = pscan(dA.transpose(1, 2), dBu.transpose(1, 2))  # (b, L, d, N)
    y = (hs * C.float().transpose(1, 2)[:, :, None, :]).sum(-1).transpose(1, 2)
    return _s6_finish(y, u, D, z)


def selective_scan_transformers(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """transformers' ``mamba_selective_scan`` (its torch loop on CPU)."""
    _s6_check(u, delta, A, B, C)
    fn = _transformers_fn("mamba", "mamba_selective_scan")
    f = lambda t: None if t is None else t.float()  # noqa: E731
    y = fn(u.float(), delta.float(), A.float(), B.float(), C.float(), D=f(D), z=f(z),
           delta_bias=f(delta_bias), delta_softplus=delta_softplus)
    return y.to(u.dtype)


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba-ssm's fused S6 kernel."""
    _s6_check(u, delta, A, B, C)
    fn = _cuda_fn("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn", u)
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return fn(c(u), c(delta), c(A.float()), c(B), c(C), None if D is None else D.float(), c(z),
              delta_bias=None if delta_bias is None else delta_bias.float(), delta_softplus=delta_softplus)


# ----------------------------------------------------------------------------- Mamba-2 (SSD)


def _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit):
    """Check the shapes; dt as the scan uses it (float, bias added, softplus, clamped to its limits)."""
    if x.dim() != 4 or dt.shape != x.shape[:3]:
        raise InputError(f"SSD scan: x must be (b, L, H, P) and dt (b, L, H); got {tuple(x.shape)} and {tuple(dt.shape)}")
    b, L, h, _ = x.shape
    if A.shape != (h,):
        raise InputError(f"SSD scan: A must be (H={h},); got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[:2] != (b, L) or h % t.shape[2]:
            raise InputError(f"SSD scan: {name} must be (b, L, G, N) with G dividing H={h}; got {tuple(t.shape)}")
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    return dt.clamp(min=dt_limit[0], max=dt_limit[1])


def _per_head(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B or C (b, L, G, N) repeated to one group per head (b, L, H, N), float."""
    return t.float().repeat_interleave(heads // t.shape[2], dim=2)


def _ssd_skip(y, x, D):
    if D is not None:
        y = y + x.float() * (D.float()[:, None] if D.dim() == 1 else D.float())
    return y.to(x.dtype)


def ssd_scan_reference(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """SSD as a loop over time (``chunk_size`` is ignored)."""
    dt = _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    Bh, Ch = _per_head(B, x.shape[2]), _per_head(C, x.shape[2])
    xf = x.float()
    state = xf.new_zeros(x.shape[0], x.shape[2], x.shape[3], Bh.shape[-1])  # (b, H, P, N)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A.float())[:, :, None, None]
        state = decay * state + (dt[:, t, :, None] * xf[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((state * Ch[:, t, :, None, :]).sum(-1))
    return _ssd_skip(torch.stack(ys, 1), x, D)


def ssd_scan_chunked(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """SSD in chunks of at most ``chunk_size``: attention-like matmuls inside a chunk, a short recurrence
    across chunks. The chunks are made equal (L=144 with 64: three of 48, not 64, 64 and 16 + 48 of
    padding) and the scores <C_t, B_s> are computed once per group of heads sharing B and C."""
    dt = _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, L, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    nc = -(-L // max(1, min(chunk_size, L)))
    T = -(-L // nc)
    pad = nc * T - L

    def chunks(t: torch.Tensor) -> torch.Tensor:  # (b, L, ...) -> (b, nc, T, ...), zero-padded at the end
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(b, nc, T, *t.shape[2:])

    # head-major layouts: heads as (g, r), r heads per group of B and C
    xdt = chunks(x.float() * dt[..., None]).reshape(b, nc, T, g, h // g, p).permute(0, 1, 3, 4, 2, 5)  # b c g r T P
    Bc = chunks(B.float()).permute(0, 1, 3, 2, 4)  # (b, c, g, T, N)
    Cc = chunks(C.float()).permute(0, 1, 3, 2, 4)
    cum = chunks(dt * A.float()).cumsum(2).reshape(b, nc, T, g, h // g).permute(0, 1, 3, 4, 2)  # b c g r T, <= 0
    # within a chunk: y_t = sum_{s<=t} exp(cum_t - cum_s) <C_t, B_s> dt_s x_s
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill_(~causal, -INF))  # b c g r t s
    scores = (Cc @ Bc.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, t, s)
    y = (decay * scores) @ xdt  # (b, c, g, r, T, P)
    # across chunks: state carried into each chunk, then read out with the in-chunk decay
    to_end = torch.exp(cum[..., -1:] - cum)  # (b, c, g, r, T)
    chunk_state = (xdt * to_end[..., None]).transpose(-1, -2) @ Bc[:, :, :, None]  # (b, c, g, r, P, N)
    chunk_decay = torch.exp(cum[..., -1])  # (b, c, g, r)
    carry = xdt.new_zeros(b, g, h // g, p, n)
    carried = []
    for c in range(nc):
        carried.append(carry)
        carry = chunk_decay[:, c, ..., None, None] * carry + chunk_state[:, c]
    carried = torch.stack(carried, 1)  # (b, c, g, r, P, N)
    y = y + torch.exp(cum)[..., None] * (Cc[:, :, :, None] @ carried.transpose(-1, -2))
    y = y.permute(0, 1, 4, 2, 3, 5).reshape(b, nc * T, h, p)[:, :L]
    return _ssd_skip(y, x, D)


def ssd_scan_transformers(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """transformers' ``mamba2_chunk_scan`` (its torch path on CPU)."""
    _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)  # validates shapes
    fn = _transformers_fn("mamba2", "mamba2_chunk_scan")
    y = fn(x.float(), dt.float(), A.float(), B.float(), C.float(), chunk_size=chunk_size, D=D,
           dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=tuple(dt_limit))
    return y.to(x.dtype)


def ssd_scan_cuda(x, dt, A, B, C, chunk_size=64, D=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """mamba-ssm's Triton/CUDA ``mamba_chunk_scan_combined``."""
    _ssd_prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    fn = _cuda_fn("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined", x)
    return fn(x.contiguous(), dt.contiguous(), A.float(), B.contiguous(), C.contiguous(), chunk_size, D=D,
              dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=tuple(dt_limit))


# ----------------------------------------------------------------------------- backend plumbing


@functools.lru_cache(maxsize=None)
def _mambapy_available() -> bool:
    try:
        import mambapy.pscan  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _import_cuda(module: str, name: str) -> Callable | None:
    """A mamba-ssm / causal-conv1d function, or None where it cannot load (no CUDA build, no GPU)."""
    if not torch.cuda.is_available():
        return None
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except Exception:  # ImportError, or OSError from a missing CUDA library
        return None


def _cuda_fn(module: str, name: str, t: torch.Tensor) -> Callable:
    if not t.is_cuda:
        raise BackendUnavailable("scan backend 'cuda' needs CUDA tensors", "move the model to a GPU or use backend='auto'")
    fn = _import_cuda(module, name)
    if fn is None:
        raise BackendUnavailable(f"scan backend 'cuda' needs {module.split('.')[0]} built with CUDA",
                                 "pip install mamba-ssm causal-conv1d (on a CUDA machine), or use backend='auto'")
    return fn


@functools.lru_cache(maxsize=None)
def _transformers_fn(model: str, name: str) -> Callable:
    try:
        module = __import__(f"transformers.models.{model}.modeling_{model}", fromlist=[name])
        return getattr(module, name)
    except Exception as e:
        raise BackendUnavailable(f"scan backend 'transformers' needs transformers with {model}.{name}",
                                 "pip install -U transformers, or use backend='torch'") from e


def cuda_kernels_available() -> bool:
    """True where mamba-ssm's kernels load (CUDA present, mamba-ssm built)."""
    return _import_cuda("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn") is not None


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that work for tensors on ``device`` here."""
    out = ["reference", "torch"]
    try:
        _transformers_fn("mamba", "mamba_selective_scan")
        _transformers_fn("mamba2", "mamba2_chunk_scan")
        out.append("transformers")
    except BackendUnavailable:
        pass
    if torch.device(device).type == "cuda" and cuda_kernels_available():
        out.append("cuda")
    return out


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The concrete backend ``backend`` (possibly ``auto``) means for tensors on ``device``."""
    if backend != "auto" and backend not in BACKENDS:
        raise InputError(f"unknown scan backend {backend!r}", f"use auto or one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    return "cuda" if torch.device(device).type == "cuda" and cuda_kernels_available() else "torch"


class _Dispatch:
    _impls: dict[str, Callable] = {}

    def __init__(self, backend: str = "auto") -> None:
        resolve_backend(backend, "cpu")  # validates the name
        self.backend = backend

    def impl(self, device: torch.device) -> Callable:
        return self._impls[resolve_backend(self.backend, device)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r})"


class SelectiveScan(_Dispatch):
    """Mamba-1 selective scan; ``backend`` fixed or ``auto`` (resolved per call from the tensors' device)."""

    _impls = {"reference": selective_scan_reference, "torch": selective_scan_torch,
              "transformers": selective_scan_transformers, "cuda": selective_scan_cuda}

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
        return self.impl(u.device)(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


class SSDScan(_Dispatch):
    """Mamba-2 chunked scan; ``backend`` fixed or ``auto``."""

    _impls = {"reference": ssd_scan_reference, "torch": ssd_scan_chunked,
              "transformers": ssd_scan_transformers, "cuda": ssd_scan_cuda}

    def __init__(self, backend: str = "auto", chunk_size: int = 64) -> None:
        super().__init__(backend)
        self.chunk_size = chunk_size

    def __call__(self, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)) -> torch.Tensor:
        return self.impl(x.device)(x, dt, A, B, C, chunk_size=self.chunk_size, D=D, dt_bias=dt_bias,
                                   dt_softplus=dt_softplus, dt_limit=dt_limit)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str = "auto") -> torch.Tensor:
    """Depthwise causal conv over time, then SiLU: x (b, d, L), weight (d, k).

    causal-conv1d's kernel for CUDA tensors where it is installed (backend auto/cuda).
    """
    if x.is_cuda and backend in ("auto", "cuda"):
        fn = _import_cuda("causal_conv1d", "causal_conv1d_fn")
        if fn is not None:
            return fn(x.contiguous(), weight.contiguous(), bias, activation="silu")
    k = weight.shape[-1]
    return F.silu(F.conv1d(x, weight[:, None, :], bias, padding=k - 1, groups=x.shape[1])[..., : x.shape[-1]])
