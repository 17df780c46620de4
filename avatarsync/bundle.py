"""A model bundle: a folder of ``pipeline.yaml`` (``BundleInfo``: how the models fit together, the speak
defaults, the languages, held-out figures) plus one folder per model (``tokenizer/``, ``fkg/``,
``interp/``, optional ``mouth/``) and the default avatar. ``make_bundle`` assembles one from trained
model folders (``avatarsync bundle``); ``read_info`` reads its ``pipeline.yaml``."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import from_dict, read_yaml
from .errors import CheckpointError

DEFAULT_BUNDLE = Path(__file__).parent / "assets" / "default"


@dataclass
class BundleInfo:
    """``pipeline.yaml``: how the three models fit together."""

    fps: float = 25.0
    crop_size: int = 128
    face_scale: float = 1.0  # must match the tokenizer's training crops (data.face_scale)
    unit_key: str = "viseme"  # what FKG unit tokens stand for: "viseme" (PVM visual units) or "symbol"
    avatar: str = "avatar.png"
    avatar_landmarks: str = "avatar.json"
    trained_on: str = ""  # free text: corpus and recipe that made it
    guidance: float = 1.0  # default classifier-free guidance scale of the keyframe model (1 = off)
    # default keyframe decode: "argmax" (the decoded codes) or "expected" (each cell's expected code
    # vector under the decoding logits; fkg/keyframe_codes.py)
    keyframe_decode: str = "argmax"
    # what of the portrait is replaced: "face" (the whole aligned crop) or "mouth" (only the region
    # speech moves, faces.align.MOUTH_REGION, colour-matched at the seam; the rest stays the portrait's)
    paste_region: str = "face"
    render: str = "auto"  # RENDERS
    # a short clip of the person (personal bundles, `train personal`): with no portrait given, speak
    # dubs it, so the avatar moves like the person instead of the drawn avatar
    backdrop: str = ""
    # languages the keyframe model was trained for (`speak --lang` refuses others, naming these); empty:
    # en and zh, what every bundle before the new-language recipe was (phonemes.lang.bundle_languages)
    languages: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def read_info(folder: str | Path) -> BundleInfo:
    """A bundle's ``pipeline.yaml``."""
    return from_dict(BundleInfo, read_yaml(Path(folder) / "pipeline.yaml"), "pipeline.yaml")


def make_bundle(out: str | Path, tokenizer: str | Path, fkg: str | Path, interp: str | Path,
                info: BundleInfo | None = None, avatar_identity: int = 7, avatar_size: int = 256,
                mouth: str | Path | None = None) -> Path:
    """Assemble trained model folders (``mouth``: the optional mouth-motion model of the warp
    renderer) and a default avatar into one bundle folder."""
    import cv2
    import yaml

    from .data.articulation import FrameState
    from .data.identity import sample_identity
    from .data.render import render_frame
    from .faces.landmarks import landmarks_from_points

    out = Path(out)
    info = info or BundleInfo()
    out.mkdir(parents=True, exist_ok=True)
    parts = [("tokenizer", tokenizer), ("fkg", fkg), ("interp", interp)] + ([("mouth", mouth)] if mouth else [])
    for name, src in parts:
        src = Path(src)
        if not src.is_dir():
            raise CheckpointError(f"{name} folder {src} not found", f"train it first (avatarsync train {name})")
        dst = out / name
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir()
        for f in src.iterdir():
            if f.suffix in (".safetensors", ".yaml", ".json"):
                shutil.copy2(f, dst / f.name)
        if (src / "metrics.json").is_file() and name not in info.metrics:  # held-out figures travel with it
            found = json.loads((src / "metrics.json").read_text())
            info.metrics[name] = {k: round(float(v), 4) for k, v in found.items()
                                  if k.startswith("val/") and isinstance(v, (int, float))}
    frame = render_frame(sample_identity(avatar_identity), FrameState(), avatar_size)
    cv2.imwrite(str(out / info.avatar), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    lm = landmarks_from_points(frame.landmarks, "procedural")
    five = np.stack([lm.left_eye, lm.right_eye, lm.nose, lm.mouth_left, lm.mouth_right]).tolist()
    (out / info.avatar_landmarks).write_text(json.dumps({"five": five, "identity": avatar_identity}))
    (out / "pipeline.yaml").write_text(yaml.safe_dump(asdict(info), sort_keys=False))
    return out
