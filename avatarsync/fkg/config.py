"""The ``avatarsync train fkg`` recipe: model, data, loss and evaluation sections (``FKGConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .vocab import DEFAULT_DURATION_EDGES


@dataclass
class FKGDataConfig:
    corpus: str = ""  # corpus folder written by `avatarsync synth-data` (for the cache and mouth metrics)
    token_cache: str = ""  # token cache folder; built from corpus + tokenizer when missing
    tokenizer: str = ""  # exported tokenizer folder (needed to build the cache, for stage 2 and pixel metrics)
    # More corpora (e.g. `synth-data --train-only` with new identities) whose train-split clips join the
    # training set; each is tokenized into its own <corpus>/fkg_token_cache with data.tokenizer.
    extra_corpora: list[str] = field(default_factory=list)
    max_units: int = 8  # units per training sequence; longer utterances are split into chunks
    unit_key: Literal["symbol", "viseme"] = "symbol"  # what a unit token stands for
    val_split: Literal["val", "test"] = "val"
    cache_device: str = "auto"  # device used to encode frames into the cache
    # How frames are cropped before tokenization; empty / 0 = as the tokenizer was trained (its run's
    # data section), else these values (see tokenizers.data.TokenizerDataConfig).
    align: str = ""  # none | clip | stable | frame (empty: as the tokenizer was trained)
    crop_size: int = 0
    landmark_layout: str = ""


@dataclass
class FKGLossConfig:
    stage: Literal[1, 2] = 1  # 1: token cross-entropy; 2: + pixel losses through the tokenizer
    lambda1: float = 1.0  # token cross-entropy (recon)
    lambda2: float = 1.0  # LPIPS
    lambda3: float = 0.5  # identity consistency
    lambda4: float = 0.5  # facial similarity
    # Extra cross-entropy weight on the token cells inside mouth_box (fractions of the grid): most cells
    # repeat the reference, and without it the few that carry the phoneme hardly steer training.
    mouth_ce: float = 0.0
    mouth_box: list[float] = field(default_factory=lambda: [0.3, 0.58, 0.7, 0.88])
    # Probability that a training segment's unit reads <unk>: the model also learns the keyframe
    # without its unit, which classifier-free guidance (eval.guidance, speak --guidance) needs.
    unit_dropout: float = 0.0
    # Models with aperture_bins: each keyframe's [B] and frame tokens read no plan with this probability
    # (the unit token still learns to predict it), which plan guidance (eval.plan_guidance) needs.
    plan_dropout: float = 0.0
    # Probability that a keyframe's input code (never its label) is swapped for a code from elsewhere in
    # the batch, so the model learns not to trust its own earlier cells blindly: decoding feeds it its
    # own guesses, training the true codes (exposure bias).
    code_noise: float = 0.0
    aperture: float = 1.0  # weight of the mouth-aperture plan's cross-entropy (models with aperture_bins)
    decode_mode: Literal["st", "soft"] = "st"  # differentiable decode: straight-through or soft
    max_frames: int = 4  # keyframes decoded per step for the pixel losses
    lpips_weights: str | None = None  # local torchvision backbone state dict for LPIPS (else fallback)
    lpips_net: Literal["vgg", "alex", "squeeze"] = "vgg"
    facenet_weights: str | None = None  # local InceptionResnetV1 (vggface2) state dict (else fallback)


@dataclass
class FKGEvalConfig:
    generate: bool = True  # decode keyframes during evaluation (slower, gives the pixel metrics)
    max_utterances: int = 4  # utterances decoded per evaluation
    guidance: float = 1.0  # classifier-free guidance scale of the evaluation's decoding (1 = off)
    plan_guidance: float = 1.0  # guidance scale on the aperture plan (models with aperture_bins; 1 = off)
    plan_pick: str = "argmax"  # how the plan's bin is read: argmax, median or mean (generate.pick_bins)
    # How generated keyframes become pixels: "argmax" (the decoded codes) or "expected" (each cell's
    # softmax-expected code vector under the decoding logits; keyframe_codes.py).
    keyframe_decode: str = "argmax"
    openness_tol: float = 0.15  # truth-openness tolerance of mouth_open_acc (0 closed .. 1 widest)
    pixel_openness_tol: float = 0.075  # tolerance of mouth_open_px_acc, in inter-ocular distances
    # Diagnostics of models with aperture_bins: decode with the true aperture bins instead of the predicted
    # ones (how well the model renders a right plan), or with this one bin for every keyframe (>= 0: how far
    # the plan steers the mouth).
    oracle_aperture: bool = False
    force_aperture: int = -1


@dataclass
class FKGConfig:
    size: Literal["tiny", "cpu", "cpu_wide", "small", "base", "large"] = "small"
    mask: str = "one_to_one"  # global | accumulative | window | one_to_one
    window: int = 2  # units visible to the 'window' variant
    position_stride: int | None = None  # None: 0 for one_to_one, 3 otherwise (layout.py)
    # Grid cells a keyframe generates, as (x0, y0, x1, y1) fractions of the token grid; the other cells
    # are the reference's codes. Empty: the whole grid (the paper's layout). A mouth window cuts the
    # sequential decoding steps per keyframe (bench/fkg_window.py measures what it costs in pixels).
    frame_window: list[float] = field(default_factory=list)
    # Each unit token also carries its previous and next unit (model.unit_context): the keyframe of a
    # unit can follow coarticulation while the mask stays one-to-one.
    unit_context: bool = False
    # Mouth-aperture plan (aperture.py): > 0 makes each unit token predict its keyframe's mouth opening as
    # one of this many bins, and the keyframe's codes follow the chosen bin. Needs truth openness (corpus).
    aperture_bins: int = 0
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    dropout: float = 0.0
    units: list[str] = field(default_factory=list)  # unit vocabulary; empty = every unit of the training split
    duration_edges: list[float] = field(default_factory=lambda: list(DEFAULT_DURATION_EDGES))
    codebook_size: int = 0  # 0 = from the token cache
    factorize_above: int = 4096  # larger codebooks are predicted as two digits
    init_from: str | None = None  # FKG model folder to start from (stage 2 after stage 1); its vocab is kept
    data: FKGDataConfig = field(default_factory=FKGDataConfig)
    loss: FKGLossConfig = field(default_factory=FKGLossConfig)
    eval: FKGEvalConfig = field(default_factory=FKGEvalConfig)
