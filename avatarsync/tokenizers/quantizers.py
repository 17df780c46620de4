"""Quantizers behind one interface: lookup-free (LFQ) and vector quantization (VQ).

Both train through vector-quantize-pytorch, imported on the first training step
(its import costs about 2 s, which encoding and decoding never pay: they follow
LFQ's sign rule here, and VQ builds its codebook when constructed). Token ids are plain integers in
``[0, codebook_size)``. With LFQ, latent channel ``k`` of ``bits`` is bit
``bits - 1 - k`` of the id (most significant first), codes are +-1, and token
factorization splits an id into ``factors`` sub-ids of ``bits / factors``
bits each (the first sub-id holds the most significant bits); the entropy
loss is then computed per sub-codebook, which keeps it cheap for 2^16..2^18
codes. Token logits for differentiable decoding are ``[..., V]`` over full
ids, or ``[..., F, V_f]`` / a list of F ``[..., V_f]`` over sub-ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError


@dataclass
class QuantizerOutput:
    codes: torch.Tensor  # [B, C, h, w], straight-through in training
    indices: torch.Tensor  # [B, h, w] long, full ids
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # entropy, commitment (+ logging terms)


def soft_or_straight(logits: torch.Tensor, mode: str, temperature: float = 1.0) -> torch.Tensor:
    """Softmax weights over the last axis, or one-hot argmax with the softmax gradient ("st")."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if mode == "soft":
        return probs
    if mode == "st":
        hard = torch.zeros_like(probs).scatter_(-1, probs.argmax(-1, keepdim=True), 1.0)
        return hard + probs - probs.detach()
    raise InputError(f"unknown decode mode {mode!r}", "use 'soft' or 'st' (straight-through)")


class LFQuantizer(nn.Module):
    kind = "lfq"

    def __init__(self, bits: int, factors: int = 1, inv_temperature: float = 100.0, diversity_gamma: float = 1.0) -> None:
        super().__init__()
        if bits % factors:
            raise InputError(f"factors={factors} must divide bits={bits}")
        self.bits, self.factors, self.sub_bits = bits, factors, bits // factors
        self.inv_temperature = inv_temperature
        self.diversity_gamma = diversity_gamma
        self.register_buffer("bit_weights", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)
        self._lfq: list[nn.Module] = []  # the library's LFQ, outside the module tree: it holds no weights

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "lfq.mask", None)  # the library LFQ's constant buffer, saved by earlier versions
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def training_lfq(self, device: torch.device) -> nn.Module:
        """vector-quantize-pytorch's LFQ (entropy and commitment losses), built on first use."""
        if not self._lfq:
            from vector_quantize_pytorch import LFQ

            self._lfq.append(LFQ(dim=self.bits, codebook_size=2 ** self.sub_bits, num_codebooks=self.factors,
                                 entropy_loss_weight=1.0, commitment_loss_weight=1.0,
                                 diversity_gamma=self.diversity_gamma, channel_first=True))
        return self._lfq[0].to(device)

    @property
    def dim(self) -> int:
        return self.bits

    @property
    def codebook_size(self) -> int:
        return 2 ** self.bits

    @property
    def factor_size(self) -> int:
        return 2 ** self.sub_bits

    # -- ids <-> bits ------------------------------------------------------------------------
    def merge(self, sub: torch.Tensor) -> torch.Tensor:
        """``[..., F]`` sub-ids -> ``[...]`` full ids."""
        shifts = torch.arange(self.factors - 1, -1, -1, device=sub.device) * self.sub_bits
        return (sub.long() << shifts).sum(-1)

    def split(self, indices: torch.Tensor) -> torch.Tensor:
        """``[...]`` full ids -> ``[..., F]`` sub-ids."""
        shifts = torch.arange(self.factors - 1, -1, -1, device=indices.device) * self.sub_bits
        return (indices.long()[..., None] >> shifts) & (self.factor_size - 1)

    def _bits_of(self, indices: torch.Tensor, nbits: int) -> torch.Tensor:
        shifts = torch.arange(nbits - 1, -1, -1, device=indices.device)
        return ((indices.long()[..., None] >> shifts) & 1).float() * 2.0 - 1.0

    def codebook(self, sub: bool = False) -> torch.Tensor:
        """All codes as rows: ``[V, bits]`` (or ``[V_f, bits / F]`` for one sub-codebook)."""
        nbits = self.sub_bits if sub else self.bits
        return self._bits_of(torch.arange(2 ** nbits, device=self.bit_weights.device), nbits)

    def full_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Accept ``[B, h, w]`` full ids or ``[B, h, w, F]`` sub-ids."""
        if indices.ndim == 4:
            if self.factors == 1 or indices.shape[-1] != self.factors:
                raise InputError(f"indices of shape {tuple(indices.shape)} do not match {self.factors} factor(s)")
            return self.merge(indices)
        return indices.long()

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        idx = self.full_indices(indices)
        if int(idx.min()) < 0 or int(idx.max()) >= self.codebook_size:
            raise InputError(f"token ids must lie in [0, {self.codebook_size}), got {int(idx.min())}..{int(idx.max())}")
        return self._bits_of(idx, self.bits).permute(0, 3, 1, 2).contiguous()

    def codes_from_weights(self, weights: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Expected codes under per-token weights over ids (see module docstring for the shapes)."""
        if isinstance(weights, (list, tuple)):
            weights = torch.stack(list(weights), dim=-2)
        if weights.shape[-1] == self.codebook_size and weights.ndim == 4:
            codes = weights @ self.codebook().to(weights.dtype)
        elif weights.ndim == 5 and weights.shape[-2:] == (self.factors, self.factor_size):
            codes = (weights @ self.codebook(sub=True).to(weights.dtype)).flatten(-2)
        else:
            raise InputError(f"logits of shape {tuple(weights.shape)} fit neither [B,h,w,{self.codebook_size}] nor "
                             f"[B,h,w,{self.factors},{self.factor_size}]")
        return codes.permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if self.training:
            lfq = self.training_lfq(z.device)
            (codes, sub, _), br = lfq(z, inv_temperature=self.inv_temperature, return_loss_breakdown=True)
            losses = {"entropy": br.per_sample_entropy - self.diversity_gamma * br.batch_entropy,
                      "commitment": br.commitment, "per_sample_entropy": br.per_sample_entropy.detach(),
                      "batch_entropy": br.batch_entropy.detach()}
            idx = self.merge(sub) if self.factors > 1 else sub.long()
            return QuantizerOutput(codes, idx, losses)
        idx = self.indices_from_latent(z)
        return QuantizerOutput(self.indices_to_codes(idx).to(z.dtype), idx, {})

    def indices_from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Full ids from the sign of each latent channel (exactly LFQ's rule)."""
        return ((z > 0).long() * self.bit_weights.to(z.device)[None, :, None, None]).sum(1)


class VQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates and dead-code revival (vector-quantize-pytorch)."""

    kind = "vq"

    def __init__(self, dim: int, bits: int, decay: float = 0.99) -> None:
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.bits, self.factors, self.sub_bits = bits, 1, bits
        self.vq = VectorQuantize(dim=dim, codebook_size=2 ** bits, decay=decay, commitment_weight=1.0,
                                 accept_image_fmap=True, threshold_ema_dead_code=2)
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def codebook_size(self) -> int:
        return 2 ** self.bits

    @property
    def factor_size(self) -> int:
        return self.codebook_size

    def codebook(self, sub: bool = False) -> torch.Tensor:
        return self.vq.codebook

    def full_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 3:
            raise InputError(f"VQ token ids must be [B, h, w], got shape {tuple(indices.shape)}")
        return indices.long()

    def split(self, indices: torch.Tensor) -> torch.Tensor:
        return indices.long()[..., None]

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        idx = self.full_indices(indices)
        if int(idx.min()) < 0 or int(idx.max()) >= self.codebook_size:
            raise InputError(f"token ids must lie in [0, {self.codebook_size}), got {int(idx.min())}..{int(idx.max())}")
        return self.vq.get_output_from_indices(idx)

    def codes_from_weights(self, weights: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(weights, (list, tuple)):
            if len(weights) != 1:
                raise InputError("a VQ tokenizer has no token factorization; pass one logits tensor")
            weights = weights[0]
        if weights.ndim == 5 and weights.shape[-2] == 1:
            weights = weights.squeeze(-2)
        if weights.ndim != 4 or weights.shape[-1] != self.codebook_size:
            raise InputError(f"logits of shape {tuple(weights.shape)} do not fit [B,h,w,{self.codebook_size}]")
        codes = self.vq.project_out(weights @ self.vq.codebook.to(weights.dtype))
        return codes.permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        codes, idx, commit = self.vq(z)
        losses = {"commitment": commit.sum()} if self.training else {}
        return QuantizerOutput(codes, idx.long(), losses)
