"""Timestamp-aware Mamba interpolator: two keyframe latents + tau + phones -> the in-between latent.

Sequence for one (pair, target frame)::

    [phone tokens] a_0 b_0 a_1 b_1 ... a_{hw-1} b_{hw-1} [phone tokens reversed]

``a_i`` / ``b_i`` are the two keyframes' latent vectors at spatial position i
(raster order), each with a 2D sine position code and a side embedding.
Every token gets the timestamp conditioning: Fourier features of
``tau = (t - t_A) / (t_B - t_A)`` and the log interval length in seconds.
Phone tokens carry the viseme class of each phone overlapping the interval
and its start/end in tau units, so the model knows where in the interval the
mouth should change; they bracket the sequence so that both scan directions
read them before the frame tokens. Odd layers visit the frame tokens in
column-major order (a cheap second 2D scan path). The readout at position i
takes the outputs at a_i and b_i and predicts a residual over the linear
blend ``a + w (b - a)``, where the per-cell blend weight ``w`` starts at tau and is
nudged by the network (a learned local easing); the head is zero-initialised,
so training starts exactly at the linear cross-fade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..phonemes.visemes import VISEME_NAMES
from .mamba import BiMambaBlock, RMSNorm, set_backend


@dataclass
class InterpModelConfig:
    latent_channels: int = 16  # C of the tokenizer's quantized latents
    d_model: int = 96
    n_layers: int = 4
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    mixer: str = "mamba2"  # mamba2 (chunked SSD: fast on CPU) | mamba1 (S6, as in VFIMamba)
    head_dim: int = 32  # mamba2 head width; must divide expand * d_model
    patch: int = 1  # fold patch x patch latent cells into one position (shorter sequences)
    max_phones: int = 8  # phones per interval given to the model (padding id 0)
    tau_frequencies: int = 6  # Fourier features of tau: sin/cos(2^k pi tau), k < this
    residual: bool = True  # predict a residual over the linear blend of the two keyframes
    blend_gate: bool = True  # also predict per-cell blend weights around tau (a learned, local easing)
    transpose_alternate: bool = True  # odd layers scan the grid column-major
    backend: str = "auto"  # scan backend: auto | reference | torch | transformers | cuda


def sine_grid_embedding(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2D sine/cosine position code, (h*w, dim), raster order; half the channels per axis."""
    quarter = max(dim // 4, 1)
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freqs
    xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freqs
    ey = torch.cat([ys.sin(), ys.cos()], -1)[:, None, :].expand(h, w, -1)
    ex = torch.cat([xs.sin(), xs.cos()], -1)[None, :, :].expand(h, w, -1)
    e = torch.cat([ey, ex], -1).reshape(h * w, -1)
    return nn.functional.pad(e, (0, dim - e.shape[-1]))


def tau_features(tau: torch.Tensor, interval: torch.Tensor, n_freq: int) -> torch.Tensor:
    """(B,) tau and interval seconds -> (B, 2 + 2 n_freq) features."""
    k = (2.0 ** torch.arange(n_freq, device=tau.device, dtype=torch.float32)) * math.pi
    ang = tau.float()[:, None] * k
    log_dt = torch.log(interval.float().clamp(min=1e-3))[:, None]
    return torch.cat([tau.float()[:, None], log_dt, ang.sin(), ang.cos()], -1)


def _scan_orders(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation of the 2hw interleaved frame tokens from raster to column-major order, and its inverse."""
    col_major = torch.arange(h * w, device=device).reshape(h, w).t().reshape(-1)
    perm = torch.stack([2 * col_major, 2 * col_major + 1], -1).reshape(-1)
    return perm, torch.argsort(perm)


class MambaInterpolator(nn.Module):
    """Predict the latent of a frame between two keyframes; batch = any set of (pair, target) combinations."""

    def __init__(self, cfg: InterpModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or InterpModelConfig()
        d, c = cfg.d_model, cfg.latent_channels * cfg.patch ** 2
        self.inp = nn.Linear(c, d)
        self.side = nn.Embedding(2, d)
        self.cond = nn.Sequential(nn.Linear(2 + 2 * cfg.tau_frequencies, d), nn.SiLU(), nn.Linear(d, d))
        self.phone_emb = nn.Embedding(len(VISEME_NAMES) + 1, d, padding_idx=0)
        self.phone_time = nn.Sequential(nn.Linear(5, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            BiMambaBlock(d, cfg.d_state, cfg.expand, cfg.d_conv, cfg.backend, cfg.mixer, cfg.head_dim)
            for _ in range(cfg.n_layers)
        )
        self.norm = RMSNorm(2 * d)
        self.head = nn.Linear(2 * d, 2 * c if cfg.blend_gate and cfg.residual else c)
        # timing head: one blend-logit offset per latent channel from (tau, interval, pooled phones): the
        # frame-level easing that phoneme rhythm dictates; the per-cell gate from the scan refines it
        self.timing = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, cfg.latent_channels))
        nn.init.zeros_(self.timing[-1].weight)
        nn.init.zeros_(self.timing[-1].bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # per-channel data scales (saved with the weights): inputs are divided by in_scale, the head's
        # output is multiplied by out_scale, so the network works in unit-variance numbers
        self.register_buffer("in_scale", torch.ones(cfg.latent_channels))
        self.register_buffer("out_scale", torch.ones(cfg.latent_channels))

    @torch.no_grad()
    def set_scales(self, in_scale: torch.Tensor, out_scale: torch.Tensor) -> None:
        """Per-channel std of the latents and of the in-between residual (target - cross-fade)."""
        self.in_scale.copy_(in_scale.clamp(min=max(1e-3 * float(in_scale.max()), 1e-6)))
        self.out_scale.copy_(out_scale.clamp(min=1e-6))

    def set_backend(self, backend: str) -> None:
        set_backend(self, backend)
        self.cfg.backend = backend

    def _phone_tokens(self, ids, spans, tau, cond) -> torch.Tensor:
        mask = (ids > 0).float()[..., None]
        t = tau.float()[:, None]
        s, e = spans[..., 0].float(), spans[..., 1].float()
        feats = torch.stack([s, e, s - t, e - t, ((s <= t) & (t < e)).float()], -1)
        return (self.phone_emb(ids) + self.phone_time(feats) + cond[:, None]) * mask

    def forward(self, lat_a: torch.Tensor, lat_b: torch.Tensor, tau: torch.Tensor, interval: torch.Tensor,
                phone_ids: torch.Tensor | None = None, phone_spans: torch.Tensor | None = None) -> torch.Tensor:
        """lat_a, lat_b: (B, C, h, w); tau, interval: (B,); phone_ids (B, P) long; phone_spans (B, P, 2). -> (B, C, h, w)."""
        if lat_a.dim() != 4 or lat_a.shape != lat_b.shape or lat_a.shape[1] != self.cfg.latent_channels:
            raise InputError(f"keyframe latents must both be (B, {self.cfg.latent_channels}, h, w); "
                             f"got {tuple(lat_a.shape)} and {tuple(lat_b.shape)}")
        b, c, h, w = lat_a.shape
        p = self.cfg.patch
        if h % p or w % p:
            raise InputError(f"latent grid {h}x{w} is not divisible by patch={p}", "use patch=1 or a divisible grid")
        tau = tau.to(lat_a.device).reshape(b)
        interval = interval.to(lat_a.device).reshape(b)
        cond = self.cond(tau_features(tau, interval, self.cfg.tau_frequencies))  # (b, d)
        hp, wp = h // p, w // p
        pos = sine_grid_embedding(hp, wp, self.cfg.d_model, lat_a.device)
        inv_scale = (1.0 / self.in_scale)[None, :, None, None]
        fold = lambda t: nn.functional.pixel_unshuffle(t * inv_scale, p).flatten(2).transpose(1, 2)  # noqa: E731
        ta = self.inp(fold(lat_a)) + self.side.weight[0] + pos
        tb = self.inp(fold(lat_b)) + self.side.weight[1] + pos
        frame = torch.stack([ta, tb], 2).reshape(b, 2 * hp * wp, -1) + cond[:, None]
        if phone_ids is None or phone_ids.shape[1] == 0:
            phones = frame.new_zeros(b, 0, frame.shape[-1])
        else:
            phones = self._phone_tokens(phone_ids.to(lat_a.device), phone_spans.to(lat_a.device), tau, cond)
        n_valid = (phones.abs().sum(-1) > 0).sum(1, keepdim=True).clamp(min=1)
        pooled = phones.sum(1) / n_valid  # mean of the real (non-padding) phone tokens
        n_p, n_f = phones.shape[1], frame.shape[1]
        x = torch.cat([phones, frame, phones.flip(1)], 1)
        perm, inv = _scan_orders(hp, wp, lat_a.device)
        for i, block in enumerate(self.blocks):
            transposed = self.cfg.transpose_alternate and i % 2 == 1 and hp > 1 and wp > 1
            if transposed:
                x = torch.cat([x[:, :n_p], x[:, n_p:n_p + n_f][:, perm], x[:, n_p + n_f:]], 1)
            x = block(x)
            if transposed:
                x = torch.cat([x[:, :n_p], x[:, n_p:n_p + n_f][:, inv], x[:, n_p + n_f:]], 1)
        f = x[:, n_p:n_p + n_f].reshape(b, hp * wp, 2 * x.shape[-1])  # [out(a_i), out(b_i)] per position
        out = self.head(self.norm(f)).transpose(1, 2).reshape(b, -1, hp, wp)
        parts = [nn.functional.pixel_shuffle(o, p) for o in out.split(c * p * p, dim=1)]
        resid = parts[-1] * self.out_scale[None, :, None, None]
        if not self.cfg.residual:
            return resid
        t = tau.to(lat_a.dtype)[:, None, None, None]
        if len(parts) == 2:  # w = sigmoid(logit(tau) + g), written so that g = 0 gives w = tau exactly
            logit = torch.logit(t.clamp(1e-4, 1 - 1e-4))
            g = parts[0] + self.timing(torch.cat([cond, pooled], -1))[:, :, None, None]
            t = t + torch.sigmoid(logit + g) - torch.sigmoid(logit)
        return lat_a + t * (lat_b - lat_a) + resid

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        backend: str | None = None) -> "MambaInterpolator":
        """Load an exported folder (``config.yaml`` with a ``model:`` section + ``model.safetensors``)."""
        from ..config import from_dict, read_yaml
        from ..weights import read_state_dict

        folder = Path(folder)
        if not (folder / "config.yaml").is_file() or not (folder / "model.safetensors").is_file():
            raise CheckpointError(f"{folder} is not an interpolator folder (needs config.yaml and model.safetensors)",
                                  "train one with `avatarsync train interp --config recipes/interp_default.yaml`")
        data = read_yaml(folder / "config.yaml")
        cfg = from_dict(InterpModelConfig, data.get("model", data))
        if backend is not None:
            cfg.backend = backend
        model = cls(cfg)
        try:
            model.load_state_dict(read_state_dict(folder / "model.safetensors"))
        except RuntimeError as e:
            raise CheckpointError(f"weights in {folder} do not fit its config: {e}", "re-export the model") from None
        return model.to(device).eval()
