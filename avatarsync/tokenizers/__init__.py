"""Visual tokenizer: MAGVIT-2 style conv encoder/decoder with LFQ (or VQ) and its training task.

    tok = VisualTokenizer.from_pretrained("runs/tokenizer/final", device="cpu")
    ids = tok.encode(images)            # images [B, 3, H, W] in [-1, 1] -> LongTensor [B, h, w]
    images = tok.decode(ids)            # -> [B, 3, H, W] in [-1, 1]
    images = tok.decode_logits(logits)  # differentiable, for pixel losses on predicted tokens

The training task (``TokenizerTask``, ``TokenizerTaskConfig``, ``TokenizerTrainModel``) is imported
on first use, so loading a tokenizer does not import the training code.
"""

from .checkpoint import save_tokenizer, token_fingerprint, tokenizer_fingerprint, unwrap_tokenizer
from .config import MODEL_SIZES, TokenizerConfig, TokenizerLossConfig
from .data import TokenizerDataConfig
from .openmagvit2 import load_openmagvit2
from .tokenizer import TokenizerOutput, VisualTokenizer

_TASK_NAMES = ("TokenizerTask", "TokenizerTaskConfig", "TokenizerTrainModel")

__all__ = [
    "save_tokenizer", "token_fingerprint", "tokenizer_fingerprint", "unwrap_tokenizer", "MODEL_SIZES",
    "TokenizerConfig", "TokenizerLossConfig", "TokenizerDataConfig", "load_openmagvit2", *_TASK_NAMES,
    "TokenizerOutput", "VisualTokenizer",
]


def __getattr__(name: str):
    if name in _TASK_NAMES:
        from . import task

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
