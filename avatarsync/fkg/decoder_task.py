"""``DecoderTask`` (``avatarsync train decoder``): adapt the tokenizer's decoder to the keyframe model's codes.

Keyframes reach the decoder as soft code vectors (the ``expected`` keyframe
decode, keyframe_codes.py), which the tokenizer never decoded in training: it
was trained on the hard codes of real frames. Handed a blend of an open-lip
and a closed-lip code it draws a mouth more closed than the blend says. (A
probe trained on true codes reads the openness right from the same soft
vectors; the decoded pixels do not show it.) This task fine-tunes the
decoder and the reference encoder on pairs (soft codes of a generated
keyframe -> the real keyframe), mixed with (true codes -> the real frame) so
the other frames (decoded from the interpolator's codes) keep their quality.
The encoder and codebook stay fixed, so tokens, token caches and the keyframe
and interpolation models trained on them stay valid; the result is a
tokenizer folder that replaces the old one in a bundle.

The soft codes come from clips the keyframe model never trained on (a
``--train-only`` corpus of new faces; soft_codes.py), so they carry its
held-out errors and not its memory of the training set. Held-out metrics
(``evaluate``, on the keyframe model's decoding of the main corpus's
validation split): ``soft_psnr`` / ``soft_mouth_psnr`` (generated keyframes
against the real ones) and ``hard_psnr`` / ``hard_mouth_psnr`` (the true codes:
plain reconstruction), in dB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import save_config
from ..errors import InputError
from .soft_codes import SoftCodeSet, ensure_token_cache, load_or_build_soft_codes

log = logging.getLogger("avatarsync.fkg")

# What the adaptation trains: the parts that turn codes into pixels.
DECODING_PARTS = ("decoder", "reference_encoder")


@dataclass
class DecoderDataConfig:
    # Corpus (`avatarsync synth-data`) of clips the keyframe model never trained on; its `split` clips are
    # decoded in order. Read from its FKG token cache (token_cache, default <corpus>/fkg_token_cache),
    # which is built with the tokenizer, cropped as the keyframe model's data, when missing.
    corpus: str = ""
    token_cache: str = ""
    split: str = "train"
    max_keyframes: int = 20000  # keyframes generated for training (whole chunks; 0 = every one)
    # Held-out keyframes for evaluate(): the keyframe model's validation split.
    val_corpus: str = ""
    val_token_cache: str = ""
    val_split: str = "val"
    val_max_keyframes: int = 800
    # Where the generated soft codes are kept (empty: next to each token cache, soft_codes_<split>.npz);
    # rebuilt when the keyframe model, the tokens or these settings change.
    soft_codes: str = ""
    val_soft_codes: str = ""


@dataclass
class DecoderLossConfig:
    l1: float = 1.0
    l2: float = 1.0
    change: float = 10.0  # weight of the pixels that differ from the reference (as the tokenizer trains)
    mouth: float = 1.0  # extra L1 on the mouth box
    mouth_box: list[float] = field(default_factory=lambda: [0.3, 0.58, 0.7, 0.88])  # x0, y0, x1, y1 fractions


@dataclass
class DecoderTaskConfig:
    tokenizer: str = ""  # tokenizer folder to adapt (its encoder and codebook stay as they are)
    fkg: str = ""  # keyframe model folder whose keyframes the decoder learns to draw
    guidance: float = 2.0  # classifier-free guidance of the keyframe decoding (as the bundle speaks)
    soft_fraction: float = 0.5  # share of each batch decoded from soft keyframe codes (the rest: true codes)
    data: DecoderDataConfig = field(default_factory=DecoderDataConfig)
    loss: DecoderLossConfig = field(default_factory=DecoderLossConfig)


class SoftCodeDataset(Dataset):
    """Items ``(soft [C, h, w], hard [h, w], key_pixels [S, S, 3], ref_pixels [S, S, 3])`` of a set."""

    def __init__(self, codes: SoftCodeSet) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = self.codes
        return c.soft[i], c.hard[i], c.key_pixels[i], c.ref_pixels[c.ref_index[i]]


def _images(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class DecoderAdaptModel(nn.Module):
    """What the loop optimises: the tokenizer, with only its decoding parts trainable."""

    def __init__(self, tokenizer: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        for name, p in tokenizer.named_parameters():
            p.requires_grad_(name.startswith(DECODING_PARTS))


class DecoderTask:
    """Implements ``TrainTask`` for ``name == "decoder"``."""

    name = "decoder"
    Config = DecoderTaskConfig

    def __init__(self, cfg: DecoderTaskConfig | None = None, *, tokenizer: nn.Module | None = None) -> None:
        self.cfg = cfg or DecoderTaskConfig()
        self._tokenizer = tokenizer
        self._sets: dict[str, SoftCodeSet] = {}

    # -- data ----------------------------------------------------------------------------------
    def _base_tokenizer(self) -> nn.Module:
        if self._tokenizer is None:
            if not self.cfg.tokenizer:
                raise InputError("the decoder recipe names no tokenizer", "set tokenizer: runs/tokenizer/final")
            from ..tokenizers import VisualTokenizer

            self._tokenizer = VisualTokenizer.from_pretrained(self.cfg.tokenizer)
        return self._tokenizer

    def _set(self, which: str) -> SoftCodeSet:
        if which not in self._sets:
            d = self.cfg.data
            corpus, cache, split, limit, path = (
                (d.corpus, d.token_cache, d.split, d.max_keyframes, d.soft_codes) if which == "train"
                else (d.val_corpus, d.val_token_cache, d.val_split, d.val_max_keyframes, d.val_soft_codes))
            if not cache and not corpus:
                key = "data.corpus" if which == "train" else "data.val_corpus"
                raise InputError(f"the decoder recipe names no {key} (or token cache)",
                                 f"set {key} to a corpus folder written by `avatarsync synth-data`")
            if not self.cfg.fkg:
                raise InputError("the decoder recipe names no keyframe model", "set fkg: runs/<fkg run>/final")
            cache = cache or str(Path(corpus) / "fkg_token_cache")
            path = path or str(Path(cache) / f"soft_codes_{split}.npz")
            tok = self._base_tokenizer()
            ensure_token_cache(corpus, cache, tok, self.cfg.tokenizer, self.cfg.fkg)
            was_training = tok.training
            self._sets[which] = load_or_build_soft_codes(path, self.cfg.fkg, tok.eval(), cache, split, limit,
                                                         self.cfg.guidance, progress=True)
            tok.train(was_training)
            log.info("decoder adaptation: %d %s keyframes (%s)", len(self._sets[which]), which, path)
        return self._sets[which]

    def train_dataset(self) -> SoftCodeDataset:
        return SoftCodeDataset(self._set("train"))

    def val_dataset(self) -> SoftCodeDataset:
        return SoftCodeDataset(self._set("val"))

    def collate(self, items: list[tuple[np.ndarray, ...]]) -> dict[str, torch.Tensor]:
        soft, hard, keys, refs = zip(*items)
        return {"soft": torch.from_numpy(np.stack(soft)).float(), "hard": torch.from_numpy(np.stack(hard)).long(),
                "image": _images(np.stack(keys)), "reference": _images(np.stack(refs))}

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        tok = self._base_tokenizer()
        return DecoderAdaptModel(tok)

    def export(self, model: nn.Module, folder: Path) -> None:
        """A tokenizer folder (``VisualTokenizer.from_pretrained``) plus this recipe."""
        from ..tokenizers.checkpoint import save_tokenizer, unwrap_tokenizer

        tok = unwrap_tokenizer(getattr(model, "module", model))
        save_tokenizer(tok, tok.config, folder)
        save_config(self.cfg, Path(folder) / "recipe.yaml")

    # -- loss ----------------------------------------------------------------------------------
    def _decode(self, model: nn.Module, batch: dict[str, torch.Tensor], soft: torch.Tensor) -> torch.Tensor:
        """Images from soft code vectors where ``soft [B]`` is set, else from the true codes."""
        from ..tokenizers.checkpoint import unwrap_tokenizer

        tok = unwrap_tokenizer(getattr(model, "module", model))
        dtype = next(tok.parameters()).dtype
        vectors = tok.indices_to_codes(batch["hard"]).to(dtype)
        vectors = torch.where(soft.to(vectors.device)[:, None, None, None], batch["soft"].to(dtype), vectors)
        return tok.decode_codes(vectors, batch["reference"].to(dtype)).float()

    def _mouth_mask(self, images: torch.Tensor) -> torch.Tensor:
        """``loss.mouth_box`` of every image, ``[B, 1, H, W]``."""
        from ..tokenizers.losses import box_mask

        x0, y0, x1, y1 = self.cfg.loss.mouth_box
        h, w = images.shape[-2:]
        box = torch.tensor([[int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)]], device=images.device)
        return box_mask(box, h, w).expand(len(images), 1, h, w)

    def _terms(self, rec: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tokenizer's own loss terms (tokenizers.task.reconstruction_terms) on the mouth box."""
        from ..tokenizers.task import reconstruction_terms

        x = batch["image"].float()
        return reconstruction_terms(rec, x, batch["reference"], self.cfg.loss.change, self._mouth_mask(x))

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.cfg.loss
        soft = torch.rand(batch["hard"].shape[0]) < self.cfg.soft_fraction
        terms = self._terms(self._decode(model, batch, soft), batch)
        loss = w.l1 * terms["l1"] + w.l2 * terms["l2"] + w.mouth * terms["mouth_l1"]
        return loss, {k: float(v.detach()) for k, v in terms.items()} | {"soft_share": float(soft.float().mean())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        from ..tokenizers.losses import psnr

        sums: dict[str, list[float]] = {}
        for batch in batches:
            x = batch["image"].float()
            mouth = self._mouth_mask(x)
            for kind, flag in (("soft", True), ("hard", False)):
                rec = self._decode(model, batch, torch.full((len(x),), flag)).clamp(-1, 1)
                sums.setdefault(f"{kind}_psnr", []).extend(psnr(rec, x).tolist())
                sums.setdefault(f"{kind}_mouth_psnr", []).extend(psnr(rec, x, mouth).tolist())
                sums.setdefault(f"{kind}_mouth_l1", []).append(float(self._terms(rec, batch)["mouth_l1"]))
        return {k: float(np.mean(v)) for k, v in sums.items()}
