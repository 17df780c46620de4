"""Mamba (S6) mixer and the bidirectional block built from two of them.

``MambaMixer`` has the parameter layout of transformers' ``MambaMixer`` (and
mamba-ssm's ``Mamba``), so weights transfer by ``load_state_dict``; the scan
and the causal conv go through ``scan.SelectiveScan`` / ``scan.causal_conv1d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .scan import SelectiveScan, causal_conv1d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class MambaMixer(nn.Module):
    """Selective SSM mixer: (batch, L, d_model) -> (batch, L, d_model), causal in L."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 dt_rank: int | None = None, backend: str = "auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
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
        # S4D-real A, and dt initialised log-uniform in [dt_min, dt_max] (through the inverse softplus).
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(x).transpose(1, 2)  # (b, 2*d_inner, L)
        u, z = xz.chunk(2, dim=1)
        u = causal_conv1d(u, self.conv1d.weight[:, 0], self.conv1d.bias, self.scan.backend)
        dt, B, C = torch.split(self.x_proj(u.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj.weight @ dt.transpose(1, 2)  # (b, d_inner, L); bias added inside the scan
        y = self.scan(u, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
                      D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class BiMambaBlock(nn.Module):
    """Pre-norm residual block scanning the sequence both ways: x + fwd(n(x)) + flip(bwd(flip(n(x))))."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, backend: str = "auto") -> None:
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.fwd = MambaMixer(d_model, d_state, expand, d_conv, backend=backend)
        self.bwd = MambaMixer(d_model, d_state, expand, d_conv, backend=backend)

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


def attention_block(d_model: int, n_heads: int = 4) -> nn.Module:
    """A pre-norm transformer layer of equal width and about the parameters of one BiMambaBlock (12 d^2)."""
    return nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0,
                                      activation=F.gelu, batch_first=True, norm_first=True)
