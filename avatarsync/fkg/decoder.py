"""The keyframe model's backbone: a Llama decoder in plain PyTorch.

Same computation and parameter names as transformers' ``LlamaModel`` (RMSNorm,
rotary positions, SwiGLU MLP, multi-head attention), so checkpoints load
unchanged; ``tests/test_fkg_decoder.py`` checks it against transformers on the
same weights. Written here because the keyframe model always passes explicit
masks and positions and needs none of the framework around it: building it
costs no import of transformers (about 2 s of start-up on 2 cores), and its
key/value cache is a small class of its own, not an API that changes between
releases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    pad_token_id: int | None = None
    initializer_range: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class KVLayer:
    """One layer's cached keys and values ``[B, heads, L, head_dim]``. With ``room`` the buffers are
    preallocated and new steps are written in place; without, they are concatenated."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 rows: int | None = None, room: int = 0) -> None:
        self._kbuf = self._vbuf = None
        self.length = 0
        self.keys, self.values = keys, values
        if keys is not None:
            self.length = keys.shape[-2]
            if room or (rows is not None and rows != keys.shape[0]):
                b = keys.shape[0] if rows is None else rows
                self._kbuf = keys.new_empty((b, keys.shape[1], self.length + room, keys.shape[-1]))
                self._vbuf = values.new_empty((b, values.shape[1], self.length + room, values.shape[-1]))
                self._kbuf[:, :, :self.length] = keys
                self._vbuf[:, :, :self.length] = values
                self.keys, self.values = self._kbuf[:, :, :self.length], self._vbuf[:, :, :self.length]

    def update(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = keys.shape[-2]
        if self._kbuf is not None and self.length + n <= self._kbuf.shape[-2]:
            self._kbuf[:, :, self.length:self.length + n] = keys
            self._vbuf[:, :, self.length:self.length + n] = values
            self.length += n
            self.keys, self.values = self._kbuf[:, :, :self.length], self._vbuf[:, :, :self.length]
        else:
            self.keys = keys if self.keys is None else torch.cat([self.keys, keys], -2)
            self.values = values if self.values is None else torch.cat([self.values, values], -2)
            self.length = self.keys.shape[-2]
            self._kbuf = self._vbuf = None
        return self.keys, self.values


class KVCache:
    """Per-layer keys and values of the tokens seen so far."""

    def __init__(self, layers: list[KVLayer] | None = None) -> None:
        self.layers: list[KVLayer] = list(layers or [])

    @classmethod
    def from_prefix(cls, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]], rows: int, room: int) -> "KVCache":
        """A cache for ``rows`` rows that all start from the same prefix, with room for ``room`` more tokens."""
        return cls([KVLayer(k, v, rows=rows, room=room) for k, v in prefix_kv])

    def layer(self, index: int) -> KVLayer:
        while len(self.layers) <= index:
            self.layers.append(KVLayer())
        return self.layers[index]

    def get_seq_length(self) -> int:
        return self.layers[0].length if self.layers else 0


@dataclass
class DecoderOutput:
    last_hidden_state: torch.Tensor
    past_key_values: KVCache | None = None


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.variance_epsilon)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm: normalised in float32, scaled in the input's dtype."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables ``[B, L, head_dim]`` for integer positions ``[B, L]``."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float().to(x.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x [..., d]`` (halves rotated, as Llama does)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        h, d = cfg.hidden_size, cfg.head_dim
        self.num_heads, self.head_dim, self.dropout = cfg.num_heads, d, cfg.attention_dropout
        self.q_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * d, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVLayer | None, implementation: str) -> torch.Tensor:
        b, n, _ = x.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)
        if mask is not None:
            mask = mask[..., :k.shape[-2]]
        p = self.dropout if self.training else 0.0
        scale = self.head_dim ** -0.5
        if implementation == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)
        else:
            scores = torch.matmul(q, k.transpose(2, 3)) * scale
            if mask is not None:
                if mask.dtype == torch.bool:
                    mask = torch.zeros(mask.shape, dtype=scores.dtype, device=mask.device).masked_fill(
                        ~mask, torch.finfo(scores.dtype).min)
                scores = scores + mask
            weights = F.dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), p, self.training)
            out = torch.matmul(weights, v)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVLayer | None, implementation: str) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, implementation)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaDecoder(nn.Module):
    """Token embedding, decoder layers and the final norm; ``forward`` takes embeddings, explicit
    positions and a ``[B, 1, Lq, Lk]`` mask (bool, True = attend, or additive float)."""

    def __init__(self, cfg: DecoderConfig, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
        self.config = cfg
        self.attn_implementation = attn_implementation
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool = False) -> DecoderOutput:
        x = inputs_embeds
        if use_cache and past_key_values is None:
            past_key_values = KVCache()
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        cos, sin = self.rotary_emb(x, position_ids)
        for i, layer in enumerate(self.layers):
            cache = past_key_values.layer(i) if use_cache else None
            x = layer(x, cos, sin, attention_mask, cache, self.attn_implementation)
        return DecoderOutput(self.norm(x), past_key_values if use_cache else None)
