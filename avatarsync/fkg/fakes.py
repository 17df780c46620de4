"""Stand-ins for tests and smoke runs: a tiny tokenizer and a toy unit -> pattern data set.

``FakeTokenizer`` has the ``VisualTokenizer`` interface (encode / decode /
decode_logits / codebook_size): each ``down x down`` patch becomes the code
of its mean colour quantised to ``levels`` steps per channel, and decodes to
that flat colour. ``toy_examples`` maps every unit to a fixed code pattern
(what the keyframe model must learn) on top of a random reference grid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import FKGExample


class FakeTokenizer(nn.Module):
    def __init__(self, levels: int = 4, down: int = 8) -> None:
        super().__init__()
        self.levels, self.down = levels, down
        grid = torch.stack(torch.meshgrid(*[torch.arange(levels)] * 3, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("palette", grid.float() / (levels - 1) * 2 - 1)  # [K, 3] in [-1, 1]

    @property
    def codebook_size(self) -> int:
        return self.levels ** 3

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images.float(), self.down)  # [B, 3, h, w]
        q = ((x.clamp(-1, 1) + 1) / 2 * (self.levels - 1)).round().long()
        return (q[:, 0] * self.levels + q[:, 1]) * self.levels + q[:, 2]

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:  # ids [B, h, w] -> colours [B, 3, h, w]
        return self.palette[indices.long()].permute(0, 3, 1, 2)

    def decode_codes(self, codes: torch.Tensor, reference=None) -> torch.Tensor:  # colours need no reference
        return F.interpolate(codes, scale_factor=self.down, mode="nearest")

    def decode(self, indices: torch.Tensor, reference=None) -> torch.Tensor:
        return self.decode_codes(self.indices_to_codes(indices))

    def codes_from_logits(self, logits: torch.Tensor, mode: str = "soft", temperature: float = 1.0) -> torch.Tensor:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        if mode == "st":
            hard = torch.zeros_like(probs).scatter_(-1, probs.argmax(-1, keepdim=True), 1.0)
            probs = hard + probs - probs.detach()
        elif mode != "soft":
            raise ValueError(f"unknown decode mode {mode!r}; use 'soft' or 'st'")
        return (probs @ self.palette).permute(0, 3, 1, 2)

    def decode_logits(self, logits: torch.Tensor, mode: str = "soft", temperature: float = 1.0,
                      reference=None) -> torch.Tensor:
        return self.decode_codes(self.codes_from_logits(logits, mode, temperature))


def unit_patterns(units: list[str], grid: tuple[int, int], codebook_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.integers(0, codebook_size, size=grid).astype(np.int64) for u in units}


def toy_examples(n: int, units: list[str], grid: tuple[int, int] = (2, 2), codebook_size: int = 16,
                 min_len: int = 2, max_len: int = 5, seed: int = 0, pattern_seed: int = 0,
                 sequences: list[list[str]] | None = None) -> list[FKGExample]:
    """Utterances whose keyframe ``i`` is the fixed pattern of unit ``i`` (random reference grids); unit j of
    ``units`` opens the mouth ``j / (len(units) - 1)`` (``key_openness``)."""
    rng = np.random.default_rng(seed)
    patterns = unit_patterns(units, grid, codebook_size, pattern_seed)
    out = []
    for k in range(n):
        seq = sequences[k] if sequences is not None else [units[j] for j in
                                                          rng.integers(0, len(units), rng.integers(min_len, max_len + 1))]
        out.append(FKGExample(
            ref_codes=rng.integers(0, codebook_size, size=grid).astype(np.int64),
            key_codes=np.stack([patterns[u] for u in seq]),
            units=list(seq), visemes=["rest"] * len(seq),
            durations=[float(d) for d in rng.uniform(0.04, 0.3, len(seq))],
            clip_id=f"toy{k:04d}", key_frames=list(range(len(seq))),
            key_openness=np.array([units.index(u) / max(1, len(units) - 1) for u in seq], np.float32),
        ))
    return out


def noisy_model(vocab, variant: str = "one_to_one", seed: int = 0, **kwargs) -> nn.Module:
    """A tiny FKGModel in eval mode whose weights are drawn larger than the init (std 0.1), so that
    every input moves the logits: for tests that compare decoding paths."""
    from .model import FKGModel

    torch.manual_seed(seed)
    model = FKGModel(vocab, "tiny", variant, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return model.eval()


def fit_toy(task, steps: int, lr: float = 1e-2, seed: int = 0, batch_size: int = 8) -> tuple[nn.Module, list[dict]]:
    """``steps`` AdamW steps of ``task.compute_loss`` on random batches of its training set (seeded);
    returns the model in eval mode and each step's loss and logs."""
    torch.manual_seed(seed)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    ds = task.train_dataset()
    g = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        batch = task.collate([ds[int(i)] for i in torch.randint(0, len(ds), (batch_size,), generator=g)])
        loss, logs = task.compute_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"loss": float(loss.detach()), **logs})
    return model.eval(), history
