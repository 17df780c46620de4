"""Mamba mixers (Mamba-1 S6 and Mamba-2 SSD) and the bidirectional block built from two of them.

Both mixers have the parameter layout of transformers' ``MambaMixer`` /
``Mamba2Mixer`` (and mamba-ssm's ``Mamba`` / ``Mamba2``), so weights transfer
by ``load_state_dict``; the scan and the causal conv go through ``scan``'s
backend interface.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .scan import SelectiveScan, SSDScan, causal_conv1d

MIXERS = ("mamba1", "mamba2")


class RMSNorm(nn.Module):
    """RMS norm; with ``gate``, normalises ``x * silu(gate)`` per group of ``group_size`` channels."""

    def __init__(self, dim: int, eps: float = 1e-6, group_size: int | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = group_size or dim
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        xf = x.float()
        if gate is not None:
            xf = xf * F.silu(gate.float())
        g = xf.reshape(*xf.shape[:-1], -1, self.group_size)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * g.reshape(xf.shape).to(x.dtype)


def _dt_bias_init(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """Inverse softplus of dt drawn log-uniformly in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))


class MambaMixer(nn.Module):
    """Mamba-1 selective SSM mixer: (batch, L, d_model) -> (batch, L, d_model), causal in L."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 dt_rank: int | None = None, backend: str = "auto", dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan = SelectiveScan(backend)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(_dt_bias_init(self.d_inner, dt_min, dt_max))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)  # (b, d_inner, L) each
        u = causal_conv1d(u, self.conv1d.weight[:, 0], self.conv1d.bias, self.scan.backend)
        dt, B, C = torch.split(self.x_proj(u.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj.weight @ dt.transpose(1, 2)  # (b, d_inner, L); bias added inside the scan
        y = self.scan(u, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
                      D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer (scalar decay per head, chunked SSD scan): (batch, L, d_model) -> same, causal in L."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, head_dim: int = 32,
                 n_groups: int = 1, chunk_size: int = 64, backend: str = "auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % head_dim:
            raise InputError(f"mamba2 mixer: expand*d_model={self.d_inner} is not a multiple of head_dim={head_dim}",
                             "choose d_model/expand/head_dim so that head_dim divides expand*d_model")
        self.n_heads, self.head_dim, self.n_groups, self.d_state = self.d_inner // head_dim, head_dim, n_groups, d_state
        self.conv_dim = self.d_inner + 2 * n_groups * d_state
        self.scan = SSDScan(backend, chunk_size)
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.n_heads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(_dt_bias_init(self.n_heads, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.n_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = RMSNorm(self.d_inner, eps=1e-5, group_size=self.d_inner // n_groups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, L, _ = x.shape
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)
        xbc = causal_conv1d(xbc.transpose(1, 2), self.conv1d.weight[:, 0], self.conv1d.bias, self.scan.backend)
        xs, B, C = xbc.transpose(1, 2).split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], -1)
        y = self.scan(xs.reshape(b, L, self.n_heads, self.head_dim), dt, -torch.exp(self.A_log.float()),
                      B.reshape(b, L, self.n_groups, self.d_state), C.reshape(b, L, self.n_groups, self.d_state),
                      D=self.D, dt_bias=self.dt_bias, dt_softplus=True)
        return self.out_proj(self.norm(y.reshape(b, L, self.d_inner), z))


def make_mixer(kind: str, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
               head_dim: int = 32, backend: str = "auto") -> nn.Module:
    if kind == "mamba1":
        return MambaMixer(d_model, d_state, expand, d_conv, backend=backend)
    if kind == "mamba2":
        return Mamba2Mixer(d_model, d_state, expand, d_conv, head_dim=head_dim, backend=backend)
    raise InputError(f"unknown mixer {kind!r}", f"use one of {', '.join(MIXERS)}")


class BiMambaBlock(nn.Module):
    """Pre-norm residual block scanning both ways with separate mixers: x + fwd(n(x)) + flip(bwd(flip(n(x))))."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 backend: str = "auto", mixer: str = "mamba2", head_dim: int = 32) -> None:
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.fwd = make_mixer(mixer, d_model, d_state, expand, d_conv, head_dim, backend)
        self.bwd = make_mixer(mixer, d_model, d_state, expand, d_conv, head_dim, backend)

    def forward_scan(self, h: torch.Tensor) -> torch.Tensor:
        """Left-to-right branch only (output i sees inputs <= i)."""
        return self.fwd(h)

    def backward_scan(self, h: torch.Tensor) -> torch.Tensor:
        """Right-to-left branch only (output i sees inputs >= i)."""
        return self.bwd(h.flip(1)).flip(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.forward_scan(h) + self.backward_scan(h)


def set_backend(module: nn.Module, backend: str) -> None:
    """Switch every mixer inside ``module`` to another scan backend (weights unchanged)."""
    for m in module.modules():
        if isinstance(m, MambaMixer):
            m.scan = SelectiveScan(backend)
        elif isinstance(m, Mamba2Mixer):
            m.scan = SSDScan(backend, m.scan.chunk_size)


def attention_block(d_model: int, n_heads: int = 4) -> nn.Module:
    """A pre-norm transformer layer of equal width, about the parameters of one BiMambaBlock (~12 d^2)."""
    return nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0,
                                      activation=F.gelu, batch_first=True, norm_first=True)
