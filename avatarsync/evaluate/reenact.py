"""Self-reenactment (the paper's protocol): each clip's first frame is the portrait, its own speech
drives ``Pipeline.speak``, and the output is compared with the real frames, beside the still first
frame as the baseline.

Boxes come from the real frame's mediapipe landmarks, in the original frames; the box figures are
given twice: against the real frames as they are, and with the real head motion removed
(``stabilized``: each real frame moved into the first frame's pose), since a portrait's head does
not follow the speaker's. Generated frames go
through the same landmark tracker (``faces.tracking.track_faces``) as the real ones were.
Works on a prepared real corpus (``avatarsync prepare``) and on a procedural one (``synth-data``;
its frames are tracked here).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AvatarSyncError, InputError
from . import metrics as M

SYSTEMS = ("generated", "still")
# (key, label, format) of the pooled table
TABLE = (
    ("face_psnr", "face-box PSNR (dB)", "{:.2f}"),
    ("face_ssim", "face-box SSIM", "{:.3f}"),
    ("mouth_psnr", "mouth-box PSNR (dB)", "{:.2f}"),
    ("mouth_ssim", "mouth-box SSIM", "{:.3f}"),
    ("mouth_lmd", "mouth LMD (px, shape)", "{:.2f}"),
    ("lip_gap_r", "lip-gap r (lag 0, pooled)", "{:.3f}"),
    ("lip_gap_best_r", "lip-gap r at best lag (mean)", "{:.3f}"),
    ("best_lag", "best lag (frames, median)", "{:+.0f}"),
    ("sharpness_ratio", "mouth sharpness / real's", "{:.2f}"),
    ("stab_face_psnr", "face-box PSNR, head motion removed (dB)", "{:.2f}"),
    ("stab_face_ssim", "face-box SSIM, head motion removed", "{:.3f}"),
    ("stab_mouth_psnr", "mouth-box PSNR, head motion removed (dB)", "{:.2f}"),
    ("stab_mouth_ssim", "mouth-box SSIM, head motion removed", "{:.3f}"),
    ("face_found", "frames with a face found", "{:.3f}"),
    ("csim", "identity cosine (CSIM)", "{:.3f}"),
    ("lpips", "face-box LPIPS (VGG)", "{:.3f}"),
)


SOURCES = ("first-frame", "video")


@dataclass
class EvaluateConfig:
    data: str = ""  # corpus folder (avatarsync prepare or synth-data)
    checkpoint: str | None = None  # bundle folder; None = the shipped default
    split: str = "test"
    max_clips: int = 0  # 0 = every clip of the split
    use_transcript: bool = True  # pass the clip's transcript to speak when it has one
    seed: int = 0
    device: str = "auto"
    csim: bool = True  # identity similarity when dlib's face model is installed
    videos: str | None = None  # folder to write each generated clip (MP4) into
    paste_region: str | None = None  # speak's paste region ("face" or "mouth"); None = the bundle's
    render: str | None = None  # speak's render ("auto", "tokens" or "warp"); None = the bundle's
    # what speak animates: "first-frame" (the clip's first frame as the portrait: self-reenactment) or
    # "video" (the clip itself dubbed with its own speech: only the mouth is regenerated, the head motion,
    # blinks and background are the clip's; the lip-sync benchmarks' reconstruction protocol)
    source: str = "first-frame"
    # with source "video": which mouth is moved, "own" (each frame's real mouth: leaks its shape) or
    # "first-frame" (the first frame's mouth carried into every frame: mouth/dub.py)
    dub_mouth: str = "own"
    lpips_vgg: str | None = None  # a local torchvision VGG16 state dict: face-box LPIPS (lpips' own heads)


@dataclass
class ClipScores:
    clip_id: str
    frames: int
    seconds_of_compute: float = 0.0
    generated: dict = field(default_factory=dict)
    still: dict = field(default_factory=dict)
    error: str = ""


def real_landmarks(clip, frames: np.ndarray) -> np.ndarray:
    """(N, 478, 2) landmarks of the real frames in their own pixels: the prepared ones, mapped back
    out of the crop, or (procedural corpus) tracked here."""
    from ..faces.align import invert_affine, transform_points
    from ..faces.tracking import track_faces

    truth = clip.truth()
    lm = truth.get("landmarks")
    if lm is not None and "matrix" in truth and lm.shape[1] >= 468:
        inv = invert_affine(truth["matrix"])
        return transform_points(lm.reshape(-1, 2), inv).reshape(lm.shape)
    return track_faces(frames).points


# points that move with the head, not with speech: eye corners, brows, nose, forehead
RIGID_POINTS = (33, 133, 263, 362, 70, 300, 105, 334, 46, 276, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 10, 151, 9, 8)


def stabilized(real: np.ndarray, real_lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real frames and landmarks moved into the first frame's head pose (a similarity transform
    per frame fitted on ``RIGID_POINTS``), so a portrait that does not move its head is compared on
    what speech changes. Frames without landmarks are left as they are."""
    import cv2

    out, lm = real.copy(), real_lm.copy()
    ref = real_lm[0][list(RIGID_POINTS)].astype(np.float32)
    h, w = real.shape[1:3]
    for t in range(1, len(real)):
        if not np.isfinite(real_lm[t]).all():
            continue
        m, _ = cv2.estimateAffinePartial2D(real_lm[t][list(RIGID_POINTS)].astype(np.float32), ref, method=cv2.LMEDS)
        if m is None:
            continue
        out[t] = cv2.warpAffine(real[t], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lm[t] = real_lm[t] @ m[:, :2].T + m[:, 2]
    return out, lm


def box_scores(frames: np.ndarray, real: np.ndarray, real_lm: np.ndarray, prefix: str = "") -> dict:
    """Face- and mouth-box PSNR/SSIM (boxes of the real frame's landmarks) and mouth sharpness."""
    face_p, face_s, mouth_p, mouth_s, sharp = [], [], [], [], []
    for t in range(len(real)):
        if not np.isfinite(real_lm[t]).all():
            continue
        fb = M.face_box(real_lm[t], real[t].shape)
        mb = M.mouth_box(real_lm[t], real[t].shape)
        face_p.append(M.box_psnr(frames[t], real[t], fb))
        face_s.append(M.box_ssim(frames[t], real[t], fb))
        mouth_p.append(M.box_psnr(frames[t], real[t], mb))
        mouth_s.append(M.box_ssim(frames[t], real[t], mb))
        ref = M.laplacian_sharpness(real[t], mb)
        if ref > 0:
            sharp.append(M.laplacian_sharpness(frames[t], mb) / ref)
    out = {"face_psnr": _mean(face_p), "face_ssim": _mean(face_s), "mouth_psnr": _mean(mouth_p),
           "mouth_ssim": _mean(mouth_s)}
    if not prefix:
        out["sharpness_ratio"] = _mean(sharp)
    return {prefix + k: v for k, v in out.items()}


def frame_scores(frames: np.ndarray, real: np.ndarray, real_lm: np.ndarray, found: np.ndarray | None = None,
                 lm: np.ndarray | None = None, stable: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Box PSNR/SSIM, mouth LMD, lip-gap series, sharpness of ``frames`` against ``real`` (same length),
    and the box figures again against the real frames with their head motion removed (``stab_``;
    ``stable``: ``stabilized(real, real_lm)`` when the caller already has it)."""
    out = box_scores(frames, real, real_lm)
    out |= box_scores(frames, *(stable or stabilized(real, real_lm)), prefix="stab_")
    if lm is not None:
        gap, real_gap = M.lip_gap(lm), M.lip_gap(real_lm)
        r0, best, lag = M.lagged_pearson(gap, real_gap)
        out |= {"mouth_lmd": M.mouth_lmd(lm, real_lm), "lip_gap_r": r0, "lip_gap_best_r": best, "best_lag": lag,
                "lip_gap": _json_series(gap)}
    if found is not None:
        out["face_found"] = M.face_found_fraction(found)
    return out


def _json_series(values: np.ndarray) -> list[float | None]:
    """A per-frame series as JSON numbers (None where NaN)."""
    return [None if not np.isfinite(v) else round(float(v), 5) for v in values]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def face_lpips(lpips, frames: np.ndarray, real: np.ndarray, real_lm: np.ndarray, every: int = 5) -> float:
    """Mean LPIPS of the face boxes (resized to 128 px) of every ``every``-th frame."""
    import cv2
    import torch

    a, b = [], []
    for t in range(0, len(real), every):
        if np.isfinite(real_lm[t]).all():
            x0, y0, x1, y1 = M.face_box(real_lm[t], real[t].shape)
            a.append(cv2.resize(frames[t][y0:y1, x0:x1], (128, 128), interpolation=cv2.INTER_AREA))
            b.append(cv2.resize(real[t][y0:y1, x0:x1], (128, 128), interpolation=cv2.INTER_AREA))
    if not a:
        return float("nan")

    def tensor(x):
        return torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float() / 127.5 - 1

    with torch.no_grad():
        return float(lpips.net(tensor(a), tensor(b)).mean())


def evaluate_clip(pipe, clip, cfg: EvaluateConfig, embedder=None, lpips=None) -> ClipScores:
    """Reenact one clip and score it and the still baseline."""
    from ..faces.tracking import track_faces
    from ..io import read_video_frames

    real, _ = read_video_frames(clip.video_path, clip.fps)
    real_lm = real_landmarks(clip, real)
    if not np.isfinite(real_lm[0]).all():
        raise InputError(f"clip {clip.clip_id}: no face in its first frame", "it cannot be the portrait")
    face = {"image": real[0]} if cfg.source == "first-frame" else {"video": clip.video_path, "dub_mouth": cfg.dub_mouth}
    t0 = time.perf_counter()
    result = pipe.speak(audio=clip.audio_path, transcript=(clip.text or None) if cfg.use_transcript else None,
                        out=None, lang=clip.lang, seed=cfg.seed, paste_region=cfg.paste_region,
                        render=cfg.render, **face)
    compute = time.perf_counter() - t0
    gen = result.frames
    n = min(len(gen), len(real))
    gen, real, real_lm = gen[:n], real[:n, : gen.shape[1], : gen.shape[2]], real_lm[:n]
    if cfg.videos:
        from ..io import write_mp4

        write_mp4(Path(cfg.videos) / f"{clip.clip_id}.mp4", gen, clip.fps, result.audio, result.sample_rate)
    tracked = track_faces(gen)
    still = np.repeat(real[:1], n, axis=0)
    still_lm = np.repeat(real_lm[:1], n, axis=0)
    scores = ClipScores(clip.clip_id, n, round(compute, 3))
    stable = stabilized(real, real_lm)  # once per clip, for both systems
    scores.generated = frame_scores(gen, real, real_lm, tracked.detected, tracked.points, stable)
    scores.still = frame_scores(still, real, real_lm, np.ones(n, bool), still_lm, stable)
    scores.still |= {"lip_gap_r": 0.0, "lip_gap_best_r": 0.0, "best_lag": 0}  # a still mouth follows nothing
    if cfg.source == "video":  # a dubbed clip already moves with the real head: the direct rows are the ones
        scores.generated = {k: v for k, v in scores.generated.items() if not k.startswith("stab_")}
    scores.generated["real_lip_gap"] = _json_series(M.lip_gap(real_lm))
    if embedder is not None:
        for name, frames in (("generated", gen), ("still", still)):
            sims = []
            for t in range(0, n, 5):  # every fifth frame is plenty for identity
                if np.isfinite(real_lm[t]).all():
                    box = M.face_box(real_lm[t], real[t].shape)
                    sims.append(M.cosine_similarity(embedder.embed(frames[t], box), embedder.embed(real[t], box)))
            getattr(scores, name)["csim"] = _mean(sims)
    if lpips is not None:
        scores.generated["lpips"] = face_lpips(lpips, gen, real, real_lm)
        scores.still["lpips"] = face_lpips(lpips, still, real, real_lm)
    return scores


def pooled(clips: list[ClipScores], system: str) -> dict:
    """Clip means of every figure; lip-gap r pooled over all frames of all clips."""
    ok = [getattr(c, system) for c in clips if not c.error]
    out = {}
    for key, *_ in TABLE:
        vals = [s[key] for s in ok if key in s and s[key] is not None and np.isfinite(s[key])]
        if not vals:
            continue
        out[key] = float(np.median(vals)) if key == "best_lag" else float(np.mean(vals))
    if system == "generated":
        gen = np.array([v if v is not None else np.nan for s in ok for v in s["lip_gap"]], float)
        real = np.array([v if v is not None else np.nan for s in ok for v in s["real_lip_gap"]], float)
        out["lip_gap_r"] = M.pearson(gen, real)
    return out


def evaluate_corpus(cfg: EvaluateConfig, progress: bool = True) -> dict:
    """Run the protocol over a split; returns {"config", "pooled", "clips", "notes"} (JSON-ready)."""
    from tqdm.auto import tqdm

    from ..data.corpus import Corpus
    from ..pipeline import Pipeline

    if cfg.source not in SOURCES:
        raise InputError(f"unknown evaluation source {cfg.source!r}", f"use one of {', '.join(SOURCES)}")
    corpus = Corpus(cfg.data)
    clips = corpus.clips(cfg.split)
    if cfg.max_clips > 0:
        clips = clips[: cfg.max_clips]
    if not clips:
        raise InputError(f"corpus {cfg.data} has no clips in split {cfg.split!r}",
                         f"splits there: {corpus.settings.get('splits', '?')}; choose one with --split")
    if cfg.videos:
        Path(cfg.videos).mkdir(parents=True, exist_ok=True)
    pipe = Pipeline.from_pretrained(cfg.checkpoint, device=cfg.device)
    lpips = None
    if cfg.lpips_vgg:
        from ..perceptual import LPIPSLoss

        lpips = LPIPSLoss(cfg.lpips_vgg)
        notes = ["FID and FVD are not reported: they need Inception / I3D weights that cannot be had here."]
    else:
        notes = [M.perceptual_metrics_unavailable()]
    embedder = None
    if cfg.csim:
        reason = M.IdentityEmbedder.available()
        if reason is None:
            embedder = M.IdentityEmbedder()
        else:
            notes.append(f"CSIM not measured: {reason}")
    results = []
    for clip in tqdm(clips, desc="evaluate", unit="clip", disable=not progress):
        try:
            results.append(evaluate_clip(pipe, clip, cfg, embedder, lpips))
        except AvatarSyncError as e:
            results.append(ClipScores(clip.clip_id, 0, error=str(e)))
    done = [r for r in results if not r.error]
    video_s = sum(r.frames for r in done) / clips[0].fps
    report = {
        "config": asdict(cfg), "corpus": corpus.settings.get("kind", "procedural"), "clips_scored": len(done),
        "clips_failed": len(results) - len(done),
        "seconds_of_compute_per_second_of_video": round(sum(r.seconds_of_compute for r in done) / max(video_s, 1e-9), 3),
        "pooled": {s: pooled(results, s) for s in SYSTEMS},
        "clips": [asdict(r) for r in results], "notes": notes,
    }
    return report


def format_table(report: dict) -> str:
    """The pooled figures as a Markdown table, generated beside the still first frame."""
    gen, still = report["pooled"]["generated"], report["pooled"]["still"]
    lines = [f"| figure ({report['clips_scored']} clips, {report['config']['split']} split) | generated | still first frame |",
             "|---|---|---|"]
    for key, label, fmt in TABLE:
        if key not in gen and key not in still:
            continue
        cell = [fmt.format(d[key]) if key in d and np.isfinite(d[key]) else "-" for d in (gen, still)]
        lines.append(f"| {label} | {cell[0]} | {cell[1]} |")
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> Path:
    from ..io import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=_jsonable), encoding="utf-8")
    return Path(path)


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v)}")
