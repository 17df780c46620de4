"""Corpus frames for the tokenizer, on a small fake corpus folder (the token cache FKG trains on is
tested in test_fkg_task / test_prepare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarsync.errors import InputError
from avatarsync.faces.synthetic import toy_face
from avatarsync.tokenizers import TokenizerConfig, TokenizerDataConfig, TokenizerTask, TokenizerTaskConfig
from avatarsync.tokenizers.data import load_corpus_frames, prepare_clip, split_clips

SIZE = 64


def _landmarks16(five: np.ndarray) -> np.ndarray:
    """The renderer's 16-point order (LANDMARK_NAMES) from five points; the rest sit near the mouth."""
    pts = np.repeat(((five[3] + five[4]) / 2)[None], 16, axis=0)
    pts[:5] = five  # left_eye, right_eye, nose_tip, mouth_left, mouth_right
    pts[5] -= [0, 2]
    pts[6] += [0, 2]
    return pts


def make_corpus(root: Path, clips: dict[str, int], frames: int = 5) -> Path:
    """A corpus folder: ``clips`` maps split -> number of clips; each clip one toy identity that moves."""
    rng = np.random.default_rng(0)
    lines = []
    for split, n in clips.items():
        for c in range(n):
            clip_id = f"{split}_{c:03d}"
            folder = root / "clips" / clip_id
            folder.mkdir(parents=True)
            imgs, lms = [], []
            centre = np.array([SIZE / 2, SIZE / 2])
            for f in range(frames):
                img, five = toy_face(rng, SIZE, center=tuple(centre + [f, 0.5 * f]), face_size=SIZE * 0.6, roll=0.02 * f,
                                     openness=f / frames)
                imgs.append(img)
                lms.append(_landmarks16(five))
            np.savez(folder / "frames.npz", frames=np.stack(imgs))
            np.savez(folder / "truth.npz", landmarks=np.stack(lms).astype(np.float32), viseme=np.zeros(frames, np.int64))
            lines.append(json.dumps({"clip_id": clip_id, "split": split, "identity": c, "sentence_id": "s0", "lang": "en",
                                     "text": "hi", "fps": 25.0, "n_frames": frames, "duration": frames / 25,
                                     "size": SIZE}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "corpus", {"train": 2, "val": 1})


def data_cfg(root: Path, **kw) -> TokenizerDataConfig:
    base = dict(source="corpus", root=str(root), crop_size=SIZE, align="clip", landmark_layout="procedural",
                frames_per_clip=3, val_frames_per_clip=2)
    base.update(kw)
    return TokenizerDataConfig(**base)


def test_clip_alignment_uses_the_first_frame_for_the_whole_clip(corpus):
    cfg = data_cfg(corpus)
    clip = split_clips(cfg, "train")[0]
    prep = prepare_clip(clip, cfg)
    assert prep.crops.shape == (5, SIZE, SIZE, 3) and prep.crops.dtype == np.uint8
    assert np.allclose(prep.matrices, prep.matrices[0])  # one transform per clip
    per_frame = prepare_clip(clip, data_cfg(corpus, align="frame"))
    assert not np.allclose(per_frame.matrices[0], per_frame.matrices[-1])  # the face moved
    # the mouth box follows the mouth: lower-middle of the crop, inside it
    x0, y0, x1, y1 = prep.mouth_boxes[0]
    assert 0 <= x0 < x1 <= SIZE and SIZE * 0.45 < (y0 + y1) / 2 < SIZE * 0.9
    none = prepare_clip(clip, data_cfg(corpus, align="none"))
    assert np.array_equal(none.crops, clip.frames())


def test_task_reads_corpus_splits(corpus):
    task = TokenizerTask(TokenizerTaskConfig(model=TokenizerConfig(size="tiny", codebook_bits=10), data=data_cfg(corpus)))
    assert len(task.train_dataset()) == 2 * 3 and len(task.val_dataset()) == 2
    item = task.val_dataset()[0]
    assert item["image"].shape == (3, SIZE, SIZE) and -1 <= float(item["image"].min()) and float(item["image"].max()) <= 1


def test_unknown_landmark_layout_is_explained(corpus):
    with pytest.raises(InputError, match="landmark"):
        load_corpus_frames(data_cfg(corpus, landmark_layout="wflw98"), "train", 2)
    assert len(load_corpus_frames(data_cfg(corpus, landmark_layout="wflw98", align="none"), "train", 2)) == 4


def test_frame_dataset_references_come_from_the_same_clip():
    import numpy as np

    from avatarsync.tokenizers.data import FrameDataset, PreparedFrames

    def clip(value: int, n: int) -> PreparedFrames:
        crops = np.full((n, 8, 8, 3), value, np.uint8)
        crops[:, 0, 0, 0] = np.arange(n)  # frame number in one pixel
        return PreparedFrames(crops, np.zeros((n, 2, 3)), np.zeros((n, 4), np.int64))

    frames = PreparedFrames.concat([clip(10, 3), clip(200, 4), clip(90, 1)], 8)
    assert frames.clip_start.tolist() == [0, 0, 0, 3, 3, 3, 3, 7]
    assert frames.clip_span(5) == (3, 7)
    first = FrameDataset(frames, reference="first")
    assert first.items.tolist() == [1, 2, 4, 5, 6, 7]  # clips' first frames are references, not items
    for k in range(len(first)):
        item = first[k]
        assert item["reference"][0, 1, 1] == item["image"][0, 1, 1]  # same clip
        assert item["reference"][0, 0, 0] == -1.0  # its first frame (frame number 0)
    torch.manual_seed(0)
    rand = FrameDataset(frames, reference="random", hflip=True)
    for k in range(len(rand)):
        item = rand[k]
        assert item["reference"][1, 1, 1] == item["image"][1, 1, 1]
    assert "reference" not in FrameDataset(frames)[0]


def test_stable_alignment_cancels_head_motion_on_the_eyes():
    import numpy as np

    from avatarsync.faces.align import transform_points
    from avatarsync.faces.landmarks import FaceLandmarks
    from avatarsync.tokenizers.data import TokenizerDataConfig, prepare_frames

    def face(shift: float, mouth_drop: float) -> FaceLandmarks:
        le, re = np.array([40.0 + shift, 50.0]), np.array([80.0 + shift, 50.0])
        ml, mr = np.array([45.0 + shift, 90.0 + mouth_drop]), np.array([75.0 + shift, 90.0 + mouth_drop])
        return FaceLandmarks(le, re, ml, mr, np.array([60.0 + shift, 70.0]), (20.0, 20.0, 100.0, 110.0),
                             mouth=np.stack([ml, mr]))

    faces = [face(0, 0), face(6, 5)]  # the head moved 6 px right and the jaw dropped 5 px
    frames = np.zeros((2, 120, 120, 3), np.uint8)
    for mode in ("clip", "stable"):
        prep = prepare_frames(frames, faces, TokenizerDataConfig(crop_size=64, align=mode))
        eyes = [transform_points(np.stack([f.left_eye, f.right_eye]), m) for f, m in zip(faces, prep.matrices)]
        moved = float(np.abs(eyes[1] - eyes[0]).max())
        assert (moved < 1e-6) if mode == "stable" else (moved > 2)
