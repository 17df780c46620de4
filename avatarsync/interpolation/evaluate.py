"""Held-out evaluation in pixels: intermediate-frame PSNR and temporal stability against baselines.

For each clip, keyframes are the real frames nearest to the unit centres; the
schedule fills every other frame. Methods compared on the in-between frames:

* ``model``              the interpolator's latents, decoded by the codec
* ``crossfade``/``nearest``  on the *decoded* keyframes (what the pipeline has: keyframes arrive as tokens)
* ``crossfade_gt``/``nearest_gt``  on the real keyframe crops (no codec loss at the keyframes)
* ``codec``              decode(encode(real frame)): the ceiling any latent-space interpolator can reach

Stability: mean absolute frame-to-frame difference (0..255) outside the mouth
boxes of both frames, over the whole clip; reported with the ratio to the real video's.

    python -m avatarsync.interpolation.evaluate --model runs/interp/final [--split test] [--max-clips 8]
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Sequence

import numpy as np
import torch

from ..errors import AvatarSyncError
from ..tokenizers.losses import psnr
from .baselines import linear_crossfade, nearest_keyframe
from .codec import LatentCodec
from .data import InterpDataConfig, LatentCache
from .interpolate import interpolate_frames
from .model import MambaInterpolator
from .schedule import PhoneTable, frame_schedule, keyframe_frames, keyframe_times


def outside_mouth_motion(video: torch.Tensor, boxes: np.ndarray) -> float:
    """Mean |x_t - x_{t-1}| in 0..255 over pixels outside the mouth boxes of frames t and t-1."""
    n, _, h, w = video.shape
    if n < 2:
        return 0.0
    keep = torch.ones(n, h, w, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.int64)):
        keep[i, y0:y1, x0:x1] = False
    pair = keep[1:] & keep[:-1]
    diff = (video[1:] - video[:-1]).abs().mean(1) * 127.5  # [-1, 1] -> 0..255 units
    return float(diff[pair].mean()) if pair.any() else 0.0


@torch.no_grad()
def evaluate_clip(model: MambaInterpolator, codec: LatentCodec, clip, crops: np.ndarray, latents: np.ndarray,
                  boxes: np.ndarray, device: str | torch.device = "cpu") -> dict[str, object]:
    """Per-clip PSNR lists (in-between frames) and stability per method."""
    from ..tokenizers.data import to_tensor

    n, fps = len(latents), float(clip.fps)
    track = clip.track()
    kf = keyframe_frames(keyframe_times(track), n, fps)
    sched = frame_schedule((kf + 0.5) / fps, n / fps, fps)
    mid = ~sched.is_keyframe_copy()
    gt = to_tensor(crops)
    lat = torch.from_numpy(latents.astype(np.float32)).to(device)
    dec = lambda x: torch.cat([codec.decode_latents(x[i:i + 64]).float().cpu() for i in range(0, len(x), 64)])  # noqa: E731
    key_dec = dec(lat[kf])
    left, right = torch.from_numpy(sched.left), torch.from_numpy(sched.right)
    tau = torch.from_numpy(sched.tau).float()
    videos = {
        "model": dec(interpolate_frames(model, lat[kf], sched, PhoneTable.from_track(track))),
        "crossfade": linear_crossfade(key_dec[left], key_dec[right], tau),
        "nearest": nearest_keyframe(key_dec[left], key_dec[right], tau),
        "crossfade_gt": linear_crossfade(gt[kf][left], gt[kf][right], tau),
        "nearest_gt": nearest_keyframe(gt[kf][left], gt[kf][right], tau),
        "codec": dec(lat),
    }
    m = torch.from_numpy(mid)
    out: dict[str, object] = {"n_mid": int(mid.sum()),
                              "stability_gt": outside_mouth_motion(gt, boxes)}
    for name, v in videos.items():
        out[f"psnr_{name}"] = psnr(v[m], gt[m]).tolist()
        out[f"stability_{name}"] = outside_mouth_motion(v, boxes)
    return out


def evaluate_clips(model: MambaInterpolator, codec: LatentCodec, data: InterpDataConfig, cache: LatentCache,
                   split: str = "test", max_clips: int = 0, device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean in-between-frame PSNR per method, margins over the baselines, stability ratios to the real video."""
    from ..data.corpus import Corpus
    from ..tokenizers.data import prepare_clip

    ids = set(cache.clip_ids(split))
    clips = [c for c in Corpus(data.corpus).clips(split) if c.clip_id in ids]
    if max_clips > 0:
        clips = clips[:max_clips]
    model = model.to(device).eval()
    psnrs: dict[str, list[float]] = {}
    stab: dict[str, list[float]] = {}
    for clip in clips:
        prep = prepare_clip(clip, data.crop_config(), frames_per_clip=0)
        cached = cache.load(clip.clip_id)
        r = evaluate_clip(model, codec, clip, prep.crops, cached["latents"], prep.mouth_boxes, device)
        for k, v in r.items():
            if k.startswith("psnr_"):
                psnrs.setdefault(k, []).extend(v)  # type: ignore[arg-type]
            elif k.startswith("stability_"):
                stab.setdefault(k, []).append(float(v))  # type: ignore[arg-type]
    out: dict[str, float] = {"clips": float(len(clips)), "in_between_frames": float(len(psnrs.get("psnr_model", [])))}
    for k, v in psnrs.items():
        out[k] = float(np.mean(v)) if v else math.nan
    for base in ("crossfade", "nearest", "crossfade_gt", "nearest_gt"):
        out[f"margin_over_{base}_db"] = out["psnr_model"] - out[f"psnr_{base}"]
    gt_stab = float(np.mean(stab["stability_gt"]))
    for k, v in stab.items():
        out[k] = float(np.mean(v))
        if k != "stability_gt":
            out[f"{k}_ratio"] = out[k] / max(gt_stab, 1e-9)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="exported interpolator folder (train.out_dir/final)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from ..config import from_dict, read_yaml
    from .task import InterpTask

    try:
        data = from_dict(InterpDataConfig, read_yaml(f"{args.model}/config.yaml").get("data", {}))
        model = MambaInterpolator.from_pretrained(args.model, args.device)
        task = InterpTask()
        task.cfg.data = data
        cache = task.cache()
        res = evaluate_clips(model, task.codec, data, cache, args.split, args.max_clips, args.device)
    except AvatarSyncError as e:
        print(f"error: {e}")
        return 2
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
