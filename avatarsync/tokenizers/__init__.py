"""Visual tokenizer: MAGVIT-2 style conv encoder/decoder with LFQ (or VQ), its training task and token caches.

    tok = load_tokenizer("runs/tokenizer/final", device="cpu")
    ids = tok.encode(images)            # images [B, 3, H, W] in [-1, 1] -> LongTensor [B, h, w]
    images = tok.decode(ids)            # -> [B, 3, H, W] in [-1, 1]
    images = tok.decode_logits(logits)  # differentiable, for pixel losses on predicted tokens
"""

from .cache import TokenCache, build_token_cache, encode_frames, token_cache_dir
from .checkpoint import load_tokenizer, save_tokenizer, token_fingerprint, tokenizer_fingerprint, unwrap_tokenizer
from .config import MODEL_SIZES, TokenizerConfig, TokenizerLossConfig
from .data import TokenizerDataConfig
from .openmagvit2 import load_openmagvit2
from .task import TokenizerTask, TokenizerTaskConfig, TokenizerTrainModel
from .tokenizer import TokenizerOutput, VisualTokenizer

__all__ = [
    "TokenCache", "build_token_cache", "encode_frames", "token_cache_dir", "load_tokenizer", "save_tokenizer",
    "token_fingerprint", "tokenizer_fingerprint", "unwrap_tokenizer", "MODEL_SIZES", "TokenizerConfig", "TokenizerLossConfig",
    "TokenizerDataConfig", "load_openmagvit2", "TokenizerTask", "TokenizerTaskConfig", "TokenizerTrainModel",
    "TokenizerOutput", "VisualTokenizer",
]
