"""Tokenizer folders: ``config.yaml`` (TokenizerConfig) + ``model.safetensors``, written by ``save_tokenizer``
and read by ``VisualTokenizer.from_pretrained``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, from_dict, read_yaml, save_config
from ..errors import CheckpointError
from .config import TokenizerConfig
from .tokenizer import VisualTokenizer

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"


def unwrap_tokenizer(model: nn.Module) -> VisualTokenizer:
    """The ``VisualTokenizer`` inside a training wrapper (or the model itself)."""
    inner = getattr(model, "module", model)  # DeepSpeed engines
    inner = getattr(inner, "tokenizer", inner)
    if not isinstance(inner, VisualTokenizer):
        raise TypeError(f"expected a VisualTokenizer or a wrapper holding one, got {type(model).__name__}")
    return inner


def save_tokenizer(model: nn.Module, cfg: TokenizerConfig | None, path: str | Path) -> Path:
    """Write ``path/config.yaml`` and ``path/model.safetensors``; returns the folder."""
    from safetensors.torch import save_file

    from ..train.checkpoint import state_dict_for_saving

    tok = unwrap_tokenizer(model)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_config((cfg or tok.config).resolved(), folder / CONFIG_NAME)
    save_file(state_dict_for_saving(tok), str(folder / WEIGHTS_NAME), metadata={"format": "avatarsync-tokenizer"})
    return folder


def _clean_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept a bare tokenizer state dict or a training wrapper's (``tokenizer.*`` + discriminator)."""
    if any(k.startswith("tokenizer.") for k in sd):
        sd = {k[len("tokenizer."):]: v for k, v in sd.items() if k.startswith("tokenizer.")}
    return sd


def read_tokenizer_config(folder: str | Path) -> TokenizerConfig:
    data = read_yaml(Path(folder) / CONFIG_NAME)
    if isinstance(data.get("model"), dict):  # a whole task config (model / data / train sections)
        data = data["model"]
    try:
        return from_dict(TokenizerConfig, data)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{folder}/{CONFIG_NAME} is not a tokenizer config: {e}") from None


ENCODING_FIELDS = ("size", "channels", "channel_mult", "num_res_blocks", "downsample", "norm_groups",
                   "norm_min_channels", "quantizer", "codebook_bits", "factors", "vq_dim", "reference_encoder")


def _weights_hash(tok: VisualTokenizer, config_repr: str, prefixes: tuple[str, ...] = ("",)) -> str:
    """Short sha256 of ``config_repr`` and the weights whose names start with one of ``prefixes``."""
    h = hashlib.sha256(config_repr.encode())
    for name, t in sorted(tok.state_dict().items()):
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def token_fingerprint(model: nn.Module) -> str:
    """Short hash of what decides a tokenizer's tokens (encoder and quantizer); equal for two tokenizers
    that encode identically however their decoders differ (e.g. a stage-2 decoder on a frozen encoder)."""
    tok = unwrap_tokenizer(model)
    return _weights_hash(tok, repr([(k, getattr(tok.config, k)) for k in ENCODING_FIELDS]), ("encoder.", "quantizer."))


def tokenizer_fingerprint(model: nn.Module) -> str:
    """Short hash of a tokenizer's config and weights (names token caches)."""
    tok = unwrap_tokenizer(model)
    return _weights_hash(tok, repr(sorted((k, v) for k, v in vars(tok.config).items() if k != "loss")))
