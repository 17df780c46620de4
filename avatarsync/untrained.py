"""Bundles of untrained models with real architectures.

Used by tests (the pipeline's plumbing) and by ``bench/speak_speed.py``
(compute time depends on the architecture, not on the weights). Never a
substitute for a trained model: the video shows noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from .bundle import BundleInfo, make_bundle


def make_untrained_bundle(out: str | Path, tokenizer_size: str = "tiny", codebook_bits: int = 10,
                          fkg_size: str = "tiny", interp_width: int = 32, interp_layers: int = 2,
                          seed: int = 0, reference: bool = True, pixel_factor: int = 8,
                          crop_size: int = 128, fkg_window: list[float] | None = None,
                          fkg_unit_context: bool = False, guidance: float = 1.0,
                          keyframe_decode: str = "argmax", mouth: bool = False) -> Path:
    """Randomly initialised tokenizer + FKG + interpolator, bundled like a trained model.

    ``reference``: the tokenizer decodes against the portrait crop; ``pixel_factor`` > 0: the
    interpolator works on space-to-depth pixel latents (as the default bundle's), 0: on code vectors.
    ``fkg_window``: the keyframe model's frame window (None: the whole grid); ``fkg_unit_context``:
    its unit tokens carry their neighbours; ``guidance`` and ``keyframe_decode``: the bundle's defaults;
    ``mouth``: add a mouth-motion model (no interior atlas), so photos take the warp renderer.
    """
    from .fkg.model import FKGModel
    from .fkg.vocab import FKGVocab
    from .interpolation.model import InterpModelConfig, MambaInterpolator
    from .phonemes.visemes import VISEME_NAMES
    from .tokenizers import VisualTokenizer, save_tokenizer
    from .tokenizers.config import TokenizerConfig
    from .train.checkpoint import save_weights

    torch.manual_seed(seed)
    parts = Path(out) / "parts"
    tcfg = TokenizerConfig(size=tokenizer_size, codebook_bits=codebook_bits, factors=2 if codebook_bits >= 12 else 1,
                           reference=reference, reference_encoder=reference)
    tok = VisualTokenizer(tcfg)
    save_tokenizer(tok, tcfg, parts / "tokenizer")
    fkg = FKGModel(FKGVocab(units=list(VISEME_NAMES), codebook_size=tok.codebook_size), size=fkg_size,
                   frame_window=fkg_window, unit_context=fkg_unit_context)
    fkg.save_pretrained(parts / "fkg")
    channels = 3 * pixel_factor ** 2 if pixel_factor else tcfg.z_channels
    icfg = InterpModelConfig(latent_channels=channels, d_model=interp_width, n_layers=interp_layers,
                             head_dim=16 if interp_width < 64 else 32, patch=2)
    (parts / "interp").mkdir(parents=True, exist_ok=True)
    save_weights(MambaInterpolator(icfg), parts / "interp" / "model.safetensors")
    codec = f"space_to_depth:{pixel_factor}" if pixel_factor else str(parts / "tokenizer")
    (parts / "interp" / "config.yaml").write_text(yaml.safe_dump({"model": icfg.__dict__,
                                                                  "data": {"tokenizer": codec, "crop_size": crop_size}}))
    if mouth:
        from .mouth.motion import MotionConfig, MouthMotion

        MouthMotion(MotionConfig(hidden=16)).save_pretrained(parts / "mouth")
    return make_bundle(Path(out) / "bundle", parts / "tokenizer", parts / "fkg", parts / "interp",
                       BundleInfo(crop_size=crop_size, guidance=guidance, keyframe_decode=keyframe_decode),
                       mouth=parts / "mouth" if mouth else None)
