"""Tokenizer data on mixed corpora: a prepared real corpus plus a procedural one, with augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatarsync.data.prepare import PrepareConfig, prepare_corpus
from avatarsync.tokenizers.augment import augment_pair
from avatarsync.tokenizers.data import FrameDataset, TokenizerDataConfig, load_corpus_frames

GRID = Path(__file__).parent / "data" / "grid_s1"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from avatarsync.data.synth import SynthConfig, generate_corpus

    root = tmp_path_factory.mktemp("mixed")
    prepare_corpus(PrepareConfig(src=str(GRID), out=str(root / "real"), speaker="s1", size=96, split="train", limit=2),
                   progress=False)
    generate_corpus(SynthConfig(out=str(root / "synth"), clips=6, seed=0, video=False), progress=False)
    return root / "real", root / "synth"


def test_extra_roots_join_training_with_their_own_landmark_layout(corpora):
    real, synth = corpora
    cfg = TokenizerDataConfig(root=str(real), extra_roots=[str(synth)], crop_size=64, align="stable",
                              landmark_layout="procedural", frames_per_clip=3)
    alone = load_corpus_frames(cfg, "train", 3)
    mixed = load_corpus_frames(cfg, "train", 3, extra=True)
    n_synth_train = 4  # 6 clips: 4 train, 1 val, 1 test
    assert len(alone) == 6 and len(mixed) == 6 + 3 * n_synth_train
    assert (mixed.mouth_boxes[:, 2] > mixed.mouth_boxes[:, 0]).all()


def test_augmentation_changes_pixels_alike_and_keeps_the_mouth_box(corpora):
    real, _ = corpora
    cfg = TokenizerDataConfig(root=str(real), crop_size=64, align="stable", frames_per_clip=4)
    frames = load_corpus_frames(cfg, "train", 4)
    img, ref, box = frames.crops[1], frames.crops[0], frames.mouth_boxes[1]
    a_img, a_ref, a_box = augment_pair(img, ref, box, np.random.default_rng(3))
    assert a_img.shape == img.shape and a_img.dtype == np.uint8 and not np.array_equal(a_img, img)
    # one draw for both: the frame-to-reference difference survives, up to the resampling
    assert np.abs(a_img.astype(float) - a_ref).mean() < np.abs(img.astype(float) - ref).mean() + 6
    assert np.abs(a_box - box).max() <= 8 and (a_box[2:] > a_box[:2]).all()
    torch.manual_seed(0)
    ds = FrameDataset(frames, reference="random", augment=True)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["reference"].shape == (3, 64, 64)
    assert item["image"].min() >= -1 and item["image"].max() <= 1
