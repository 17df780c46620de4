"""Frames for tokenizer training and token caching: aligned crops plus a mouth box per frame.

``align`` decides the crop: ``none`` keeps (resizes) the frame, ``clip``
aligns every frame of a clip with the transform of its first frame (head
motion stays visible), ``stable`` does the same and then cancels each frame's
head motion with the similarity that maps its eye centres onto the first
frame's (the eyes do not move with speech, so the mouth is left free; the
portrait at inference does not move either), ``frame`` aligns each frame on
its own eye and mouth landmarks (the mouth's motion then moves the crop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..faces.align import alignment_matrix, similarity_transform, transform_points, warp_to_crop
from ..faces.landmarks import FaceLandmarks, landmarks_from_five, landmarks_from_points


@dataclass
class TokenizerDataConfig:
    source: Literal["corpus", "synthetic"] = "corpus"  # synthetic = toy faces (tests, sanity runs)
    root: str | None = "runs/corpus"  # corpus folder (avatarsync synth-data --out)
    train_split: str = "train"
    val_split: str = "val"  # held-out identities
    crop_size: int = 128
    align: Literal["none", "clip", "stable", "frame"] = "clip"
    landmark_layout: str = "procedural"  # layout of truth.npz landmarks, where corpus.json names none
    extra_roots: list[str] = field(default_factory=list)  # more corpora whose train splits are mixed in
    augment: bool = False  # photometric and small geometric augmentation in training (augment.py)
    face_scale: float = 1.0
    frames_per_clip: int = 16  # evenly spaced training frames per clip (0 = every frame)
    val_frames_per_clip: int = 4
    max_clips: int = 0  # 0 = all clips of the split
    hflip: bool = True  # random horizontal flips in training
    train_crop: int = 0  # train on random square crops of this side (multiple of the downsampling; 0 = whole)
    mouth_box: list[float] = field(default_factory=lambda: [0.3, 0.58, 0.7, 0.88])  # fallback box (fractions)
    synthetic_train: int = 512  # toy faces for source: synthetic
    synthetic_val: int = 64
    seed: int = 0


@dataclass
class PreparedFrames:
    crops: np.ndarray  # (N, S, S, 3) uint8
    matrices: np.ndarray  # (N, 2, 3) frame -> crop
    mouth_boxes: np.ndarray  # (N, 4) int (x0, y0, x1, y1) in crop pixels
    clip_start: np.ndarray | None = None  # (N,) index of the first prepared frame of each frame's clip

    def __post_init__(self) -> None:
        if self.clip_start is None:  # one clip
            self.clip_start = np.zeros(len(self.crops), np.int64)

    def __len__(self) -> int:
        return len(self.crops)

    def clip_span(self, i: int) -> tuple[int, int]:
        """[start, end) of the prepared frames of frame ``i``'s clip."""
        start = int(self.clip_start[i])
        end = start + 1
        while end < len(self.crops) and self.clip_start[end] == start:
            end += 1
        return start, end

    @staticmethod
    def concat(parts: list["PreparedFrames"], size: int) -> "PreparedFrames":
        """One set from several clips (each part is one clip, or already a concatenation)."""
        if not parts:
            return PreparedFrames(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 2, 3)), np.zeros((0, 4), np.int64))
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return PreparedFrames(np.concatenate([p.crops for p in parts]), np.concatenate([p.matrices for p in parts]),
                              np.concatenate([p.mouth_boxes for p in parts]),
                              np.concatenate([p.clip_start + o for p, o in zip(parts, offsets)]))


def mouth_box(points: np.ndarray, size: int, margin: float = 0.3) -> np.ndarray:
    """Box around mouth points, grown by ``margin`` x mouth width on every side, clipped to the crop."""
    p = np.asarray(points, dtype=np.float64)
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    pad = margin * max(x1 - x0, 1.0)
    box = np.array([x0 - pad, y0 - pad, x1 + pad, y1 + pad])
    box = np.clip(np.rint(box), 0, size).astype(np.int64)
    box[2:] = np.maximum(box[2:], box[:2] + 1)
    return box


def _fallback_box(cfg: TokenizerDataConfig) -> np.ndarray:
    return np.clip(np.rint(np.asarray(cfg.mouth_box) * cfg.crop_size), 0, cfg.crop_size).astype(np.int64)


def prepare_frames(frames: np.ndarray, faces: list[FaceLandmarks] | None, cfg: TokenizerDataConfig,
                   clip_face: FaceLandmarks | None = None) -> PreparedFrames:
    """Crop ``frames`` (N, H, W, 3) as ``cfg.align`` says; ``faces`` are per-frame landmarks (or None).

    With ``align: clip`` the transform comes from ``clip_face`` (default: the first of ``faces``).
    """
    n, h, w = frames.shape[:3]
    s = cfg.crop_size
    if cfg.align != "none" and faces is None:
        raise InputError(f"data.align={cfg.align!r} needs per-frame landmarks",
                         "set data.landmark_layout to the corpus layout, or data.align: none")
    if cfg.align == "none":
        mats = np.repeat(np.array([[[s / w, 0, 0], [0, s / h, 0]]], dtype=np.float64), n, axis=0)
    elif cfg.align == "clip":
        mats = np.repeat(alignment_matrix(clip_face or faces[0], s, cfg.face_scale)[None], n, axis=0)
    elif cfg.align == "stable":
        first = clip_face or faces[0]
        base = alignment_matrix(first, s, cfg.face_scale)
        mats = np.stack([compose_affine(base, eye_similarity(f, first)) for f in faces])
    else:
        mats = np.stack([alignment_matrix(f, s, cfg.face_scale) for f in faces])
    crops = np.empty((n, s, s, 3), np.uint8)
    for i in range(n):
        if cfg.align == "none":
            crops[i] = frames[i] if (h, w) == (s, s) else cv2.resize(frames[i], (s, s), interpolation=cv2.INTER_AREA)
        else:
            crops[i] = warp_to_crop(frames[i], mats[i], s)
    if faces is None:
        boxes = np.repeat(_fallback_box(cfg)[None], n, axis=0)
    else:
        boxes = np.stack([mouth_box(transform_points(f.mouth_points(), m), s) for f, m in zip(faces, mats)])
    return PreparedFrames(crops, mats, boxes)


def eye_similarity(face: FaceLandmarks, target: FaceLandmarks) -> np.ndarray:
    """The 2x3 similarity taking ``face``'s eye centres onto ``target``'s."""
    return similarity_transform(np.stack([face.left_eye, face.right_eye]),
                                np.stack([target.left_eye, target.right_eye]))


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 matrix of ``outer(inner(p))``."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def _pick(n: int, k: int) -> np.ndarray:
    return np.arange(n) if k <= 0 or k >= n else np.unique(np.linspace(0, n - 1, k).round().astype(int))


def clip_faces(landmarks: np.ndarray | None, layout: str) -> list[FaceLandmarks] | None:
    """Per-frame ``FaceLandmarks`` from a (N, K, 2) truth array, or None when the layout is unknown."""
    if landmarks is None:
        return None
    try:
        return [landmarks_from_points(p, layout) for p in landmarks]
    except InputError:
        return None


def clip_layout(clip, cfg: TokenizerDataConfig) -> str:
    """The layout of a clip's truth landmarks: its corpus's (corpus.json), else ``cfg.landmark_layout``."""
    return clip.landmark_layout or cfg.landmark_layout


def prepare_clip(clip, cfg: TokenizerDataConfig, frames_per_clip: int = 0) -> PreparedFrames:
    """Prepared frames of one ``CorpusClip`` (evenly spaced ``frames_per_clip`` of them; 0 = all)."""
    frames = clip.frames()
    keep = _pick(len(frames), frames_per_clip)
    layout = clip_layout(clip, cfg)
    faces = clip_faces(clip.truth().get("landmarks"), layout)
    if cfg.align != "none" and faces is None:
        raise InputError(f"clip {clip.clip_id}: cannot read its truth landmarks with layout "
                         f"{layout!r}, which data.align={cfg.align!r} needs",
                         "set data.landmark_layout to the renderer's layout, or data.align: none")
    return prepare_frames(frames[keep], None if faces is None else [faces[i] for i in keep], cfg,
                          clip_face=None if faces is None else faces[0])


def split_clips(cfg: TokenizerDataConfig, split: str, extra: bool = False) -> list:
    """The corpus clips of ``split`` (at most ``max_clips`` per corpus); ``extra`` adds the training
    clips of ``extra_roots``."""
    from ..data.corpus import Corpus  # noqa: PLC0415

    if not cfg.root:
        raise InputError("data.root is not set", "point it at a corpus made by `avatarsync synth-data --out DIR`")
    clips = Corpus(cfg.root).clips(split)
    if cfg.max_clips > 0:
        clips = clips[: cfg.max_clips]
    if not clips:
        raise InputError(f"corpus {cfg.root} has no clips in split {split!r}", "generate more clips or change data.*_split")
    for root in cfg.extra_roots if extra else ():
        more = Corpus(root).clips("train")
        clips += more[: cfg.max_clips] if cfg.max_clips > 0 else more
    return clips


def load_corpus_frames(cfg: TokenizerDataConfig, split: str, frames_per_clip: int,
                       extra: bool = False) -> PreparedFrames:
    """Prepared frames of every clip of a corpus split (``extra``: and of the extra corpora's training clips)."""
    return PreparedFrames.concat([prepare_clip(c, cfg, frames_per_clip) for c in split_clips(cfg, split, extra)],
                                 cfg.crop_size)


def synthetic_frames(cfg: TokenizerDataConfig, n: int, seed: int) -> PreparedFrames:
    """Toy faces (faces.synthetic), aligned like corpus frames with their exact five-point landmarks."""
    from ..faces.synthetic import toy_faces  # noqa: PLC0415

    imgs, fives = toy_faces(n, cfg.crop_size, seed)
    parts = []
    for img, five in zip(imgs, fives):
        face = landmarks_from_five(five)
        face = FaceLandmarks(face.left_eye, face.right_eye, face.mouth_left, face.mouth_right, face.nose, face.bbox,
                             mouth=np.stack([five[3], five[4], (five[3] + five[4]) / 2 + [0, 0.08 * cfg.crop_size]]))
        parts.append(prepare_frames(img[None], [face], cfg))
    return PreparedFrames.concat(parts, cfg.crop_size)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> [N, 3, S, S] float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class FrameDataset(Dataset):
    """Items ``{"image": [3, S, S] in [-1, 1], "mouth_box": [4] long}``; optional random flips.

    ``reference`` adds ``"reference"``, another frame of the same clip: ``random`` (training: any
    frame of the clip, itself included) or ``first`` (evaluation: the clip's first frame, as the
    portrait is at inference; the first frames themselves are then left out of the items).
    """

    def __init__(self, frames: PreparedFrames, hflip: bool = False, crop: int = 0,
                 reference: Literal["none", "random", "first"] = "none", augment: bool = False) -> None:
        self.frames = frames
        self.augment = augment
        self.hflip = hflip
        self.crop = crop
        self.reference = reference
        idx = np.arange(len(frames))
        if reference == "first":
            multi = np.array([frames.clip_span(i)[1] - frames.clip_span(i)[0] > 1 for i in idx], dtype=bool)
            idx = idx[(idx != frames.clip_start) | ~multi]
        self.items = idx

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = int(self.items[k])
        img_u8, box_np, ref_u8 = self.frames.crops[i], self.frames.mouth_boxes[i].copy(), None
        if self.reference == "first":
            ref_u8 = self.frames.crops[int(self.frames.clip_start[i])]
        elif self.reference == "random":
            start, end = self.frames.clip_span(i)
            ref_u8 = self.frames.crops[int(torch.randint(start, end, ()))]
        if self.augment:
            from .augment import augment_pair  # noqa: PLC0415

            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
            img_u8, ref_u8, box_np = augment_pair(img_u8, ref_u8, box_np, rng)
        img = to_tensor(img_u8[None])[0]
        box = torch.from_numpy(np.asarray(box_np)).long()
        ref = None if ref_u8 is None else to_tensor(ref_u8[None])[0]
        if self.hflip and bool(torch.rand(()) < 0.5):
            size = img.shape[-1]
            img = img.flip(-1)
            ref = None if ref is None else ref.flip(-1)
            box = torch.stack([size - box[2], box[1], size - box[0], box[3]])
        if 0 < self.crop < img.shape[-1]:
            y0, x0 = (int(v) for v in torch.randint(0, img.shape[-1] - self.crop + 1, (2,)))
            img = img[:, y0 : y0 + self.crop, x0 : x0 + self.crop]
            ref = None if ref is None else ref[:, y0 : y0 + self.crop, x0 : x0 + self.crop]
            box = (box - torch.tensor([x0, y0, x0, y0])).clamp(0, self.crop)  # may become empty
        item = {"image": img, "mouth_box": box}
        if ref is not None:
            item["reference"] = ref
        return item


def collate_frames(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
