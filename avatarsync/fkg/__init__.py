"""Facial Keyframe Generation (FKG): phoneme units + reference image tokens -> keyframe tokens.

Modules: vocab (token ids), layout (sequence packing), masks (the four Text-Frame
attention masks), model (decoder-only Llama + size registry), generate (parallel
keyframe decoding with a shared-prefix KV cache), losses (stage-2 pixel losses),
metrics (SSIM / mouth state), data (token cache), config (the recipe's
dataclasses), collate (batches), evaluation (held-out metrics), task (FKGTask
for ``avatarsync train fkg``). See docs/fkg.md.
"""

from .generate import KeyframeResult, SamplingConfig, generate_keyframes, track_ids
from .masks import MASK_VARIANTS
from .model import MODEL_SIZES, FKGModel
from .vocab import FKGVocab

__all__ = ["FKGModel", "FKGVocab", "KeyframeResult", "MASK_VARIANTS", "MODEL_SIZES", "SamplingConfig",
           "generate_keyframes", "track_ids"]
