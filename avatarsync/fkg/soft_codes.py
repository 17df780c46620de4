"""The keyframe model's soft keyframe codes over a token cache: what decoder adaptation trains on.

For each keyframe of a split of an FKG token cache (data.py), the keyframe
model decodes it as ``speak`` does (greedy, classifier-free guidance, the
``expected`` keyframe decode of keyframe_codes.py) and the set keeps:

* ``soft [N, C, h, w]`` (float16): the code vectors the tokenizer's decoder is handed,
* ``hard [N, h, w]``: the keyframe's true codes on the whole grid (what the tokenizer encodes),
* ``key_pixels [N, S, S, 3]`` and ``ref_pixels [U, S, S, 3]`` (uint8) with
  ``ref_index [N]``: the real keyframe and its clip's reference crop.

Generation is the slow part (about 70 keyframes per second on 2 CPU cores for
the bundled model), so ``load_or_build_soft_codes`` keeps the set in one
``.npz`` and rebuilds it only when the keyframe model, the tokens, the
guidance or the size asked for change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .keyframe_codes import module_device

SOFT_CODES_VERSION = 2


@dataclass
class SoftCodeSet:
    soft: np.ndarray  # [N, C, h, w] float16 code vectors of the generated keyframes
    hard: np.ndarray  # [N, h, w] int32 true codes
    key_pixels: np.ndarray  # [N, S, S, 3] uint8 real keyframes
    ref_pixels: np.ndarray  # [U, S, S, 3] uint8 reference crops
    ref_index: np.ndarray  # [N] int64: which reference each keyframe decodes against
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.soft)


def soft_codes_fingerprint(fkg_folder: str | Path, tokenizer: nn.Module, split: str, max_keyframes: int,
                           guidance: float) -> str:
    """What a soft-code set depends on: the keyframe model's weights, the tokens, the split and settings."""
    from ..tokenizers import token_fingerprint

    h = hashlib.sha256()
    h.update((Path(fkg_folder) / "model.safetensors").read_bytes())
    meta = {"tokens": token_fingerprint(tokenizer) if hasattr(tokenizer, "encoder") else type(tokenizer).__name__,
            "split": split, "max_keyframes": int(max_keyframes), "guidance": float(guidance),
            "version": SOFT_CODES_VERSION}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _fkg_config(fkg_folder: str | Path):
    """The recipe the keyframe model in ``fkg_folder`` was trained with (defaults when it has none)."""
    from ..config import from_dict, read_yaml, to_dict
    from .task import FKGConfig

    saved = Path(fkg_folder) / "config.yaml"
    if not saved.is_file():
        return FKGConfig()
    return from_dict(FKGConfig, {**to_dict(FKGConfig()), **read_yaml(saved)})


def ensure_token_cache(corpus: str | Path, cache_dir: str | Path, tokenizer: nn.Module, tokenizer_path: str,
                       fkg_folder: str | Path) -> Path:
    """``cache_dir`` (an FKG token cache of ``corpus``), tokenized and cropped as the keyframe model's
    training data was when it is not there yet."""
    from .data import build_token_cache, crop_config

    cache = Path(cache_dir)
    if (cache / "index.json").is_file():
        return cache
    if not corpus or not Path(corpus).is_dir():
        raise InputError(f"no FKG token cache at {cache} and no corpus to build it from ({corpus or 'none given'})",
                         "set data.corpus to a folder written by `avatarsync synth-data`, or data.token_cache "
                         "to an existing cache")
    d = _fkg_config(fkg_folder).data
    crop = crop_config(str(corpus), tokenizer_path, d.align, d.crop_size, d.landmark_layout)
    device = module_device(tokenizer)
    return build_token_cache(corpus, tokenizer, cache, device, tokenizer_path=tokenizer_path, crop=crop,
                             progress=sys.stderr.isatty())


def _fkg_task(fkg_folder: str | Path, cache_dir: str | Path, tokenizer: nn.Module):
    """An FKGTask that lays out ``cache_dir``'s clips as the model in ``fkg_folder`` reads them."""
    from .task import FKGTask

    cfg = _fkg_config(fkg_folder)  # its unit key and chunk length; model.json gives window, context and plan
    cfg.init_from = str(fkg_folder)
    cfg.data.corpus, cfg.data.token_cache, cfg.data.extra_corpora, cfg.data.tokenizer = "", str(cache_dir), [], ""
    cfg.loss.stage = 1
    return FKGTask(cfg, tokenizer=tokenizer)


@torch.no_grad()
def build_soft_codes(fkg_folder: str | Path, tokenizer: nn.Module, cache_dir: str | Path, split: str = "train",
                     max_keyframes: int = 0, guidance: float = 2.0, progress: bool = False) -> SoftCodeSet:
    """Decode the keyframes of ``split`` of the token cache ``cache_dir`` with the keyframe model in
    ``fkg_folder`` (clips in cache order, whole chunks, until ``max_keyframes``; 0 = all)."""
    from .data import CacheDataset
    from .generate import SamplingConfig, generate_keyframes
    from .keyframe_codes import keyframe_code_vectors
    from .model import FKGModel

    device = module_device(tokenizer)
    task = _fkg_task(fkg_folder, cache_dir, tokenizer)
    model = FKGModel.from_pretrained(fkg_folder, device)
    data = CacheDataset(cache_dir, split, task.cfg.data.max_units, pixels=True)
    if len(data) == 0:
        raise InputError(f"token cache {cache_dir} has no {split!r} clips", "point at a cache with that split")
    sampling = SamplingConfig(guidance=guidance)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_keyframes or None, desc="soft keyframe codes", unit="keyframe", file=sys.stderr)
    soft, hard, keys, refs, ref_index = [], [], [], [], []
    count = 0
    for start in range(0, len(data), 4):
        items = [data[i] for i in range(start, min(len(data), start + 4))]
        batch = task.collate(items)
        first = 0
        for b, ex in enumerate(items):
            n = len(ex)
            part = task._row(batch, b)
            res = generate_keyframes(model, part["ref_codes"], part["unit_ids"], part["dur_ids"], sampling,
                                     context_ids=part.get("context_ids"), return_logits=True)
            vectors = keyframe_code_vectors(tokenizer, res.codes, res.logits, part["ref_codes"], task.vocab.factors,
                                            task.vocab.codebook_size, task.frame_window, "expected")
            soft.append(vectors.float().cpu().numpy().astype(np.float16))
            hard.append(np.asarray(ex.key_codes, dtype=np.int32))  # the whole grid, not only the window
            keys.append(batch["key_pixels"][first:first + n].numpy())
            ref_index.append(np.full(n, len(refs), np.int64))
            refs.append(batch["ref_pixels"][b].numpy())
            first += n
            count += n
            if bar is not None:
                bar.update(n)
        if max_keyframes and count >= max_keyframes:
            break
    if bar is not None:
        bar.close()
    return SoftCodeSet(np.concatenate(soft), np.concatenate(hard), np.concatenate(keys), np.stack(refs),
                       np.concatenate(ref_index))


def save_soft_codes(codes: SoftCodeSet, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, soft=codes.soft, hard=codes.hard, key_pixels=codes.key_pixels, ref_pixels=codes.ref_pixels,
             ref_index=codes.ref_index, fingerprint=np.array(codes.fingerprint))
    tmp.replace(path)  # never a half-written set under the real name
    return path


def load_soft_codes(path: str | Path) -> SoftCodeSet:
    with np.load(path) as z:
        return SoftCodeSet(z["soft"], z["hard"], z["key_pixels"], z["ref_pixels"], z["ref_index"],
                           str(z["fingerprint"]))


def load_or_build_soft_codes(path: str | Path, fkg_folder: str | Path, tokenizer: nn.Module, cache_dir: str | Path,
                             split: str = "train", max_keyframes: int = 0, guidance: float = 2.0,
                             progress: bool = False) -> SoftCodeSet:
    """The set stored at ``path`` when it was made by the same model, tokens and settings, else a new one
    (built and stored there)."""
    if not (Path(fkg_folder) / "model.safetensors").is_file():
        raise InputError(f"{fkg_folder} is not a keyframe model folder (no model.safetensors)",
                         "set fkg: to the 'final' folder of an `avatarsync train fkg` run")
    want = soft_codes_fingerprint(fkg_folder, tokenizer, split, max_keyframes, guidance)
    if Path(path).is_file():
        stored = load_soft_codes(path)
        if stored.fingerprint == want:
            return stored
    codes = build_soft_codes(fkg_folder, tokenizer, cache_dir, split, max_keyframes, guidance, progress)
    codes.fingerprint = want
    save_soft_codes(codes, path)
    return codes
