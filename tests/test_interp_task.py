"""InterpTask end to end on a tiny hand-made corpus: latent cache, examples, the shared loop, export, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avatarsync.interpolation.codec import SpaceToDepthCodec, load_codec
from avatarsync.interpolation.data import InterpDataConfig, LatentCache
from avatarsync.interpolation.evaluate import evaluate_clips, outside_mouth_motion
from avatarsync.interpolation.model import InterpModelConfig, MambaInterpolator
from avatarsync.interpolation.task import InterpConfig, InterpTask
from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit
from avatarsync.phonemes.visemes import VISEME_NAMES, viseme

FPS = 25.0
SIZE = 32


def _clip(rng: np.random.Generator, n_units: int) -> tuple[PhonemeTrack, np.ndarray]:
    """A track of random units and frames whose dark 'mouth' opens as a smooth function of time."""
    t, units = 0.0, []
    for _ in range(n_units):
        d = float(rng.uniform(0.08, 0.3))
        units.append(PhonemeUnit("x", t, t + d, str(rng.choice(VISEME_NAMES))))
        t += d
    n = int(np.ceil(t * FPS))
    track = PhonemeTrack(units=units, lang="en", duration=n / FPS)
    centres = np.array([0.5 * (u.start + u.end) for u in units])
    target = np.array([viseme(u.viseme).openness for u in units])
    times = (np.arange(n) + 0.5) / FPS
    k = np.clip(np.searchsorted(centres, times) - 1, 0, len(units) - 2)
    s = np.clip((times - centres[k]) / (centres[k + 1] - centres[k]), 0, 1)
    openness = target[k] + (target[k + 1] - target[k]) * (3 * s ** 2 - 2 * s ** 3)
    frames = np.full((n, SIZE, SIZE, 3), 180, np.uint8)
    frames[:, 6:10, 8:12] = frames[:, 6:10, 20:24] = 40  # eyes
    for i, o in enumerate(openness):
        frames[i, 22:22 + 1 + int(round(6 * o)), 10:22] = 20  # mouth
        x = 3 + int(round(2 + 2 * np.sin(2.0 * times[i])))
        frames[i, 13:16, x:x + 3] = 250  # a slowly drifting highlight, outside the mouth box
    return track, frames


def _write_corpus(root: Path, splits=("train", "train", "train", "val", "test")) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i, split in enumerate(splits):
        cid = f"fake-{i:03d}"
        folder = root / "clips" / cid
        folder.mkdir(parents=True)
        track, frames = _clip(rng, 10)
        track.save(folder / "track.json")
        np.savez(folder / "frames.npz", frames=frames)
        np.savez(folder / "truth.npz", viseme=np.zeros(len(frames)))
        lines.append(json.dumps({"clip_id": cid, "split": split, "identity": i, "sentence_id": f"s{i}", "lang": "en",
                                 "text": "x", "fps": FPS, "n_frames": len(frames), "duration": track.duration,
                                 "size": SIZE}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("interp_corpus"))


def _cfg(corpus: Path) -> InterpConfig:
    return InterpConfig(
        model=InterpModelConfig(latent_channels=0, d_model=32, n_layers=2, d_state=8, head_dim=16, max_phones=4),
        data=InterpDataConfig(corpus=str(corpus), tokenizer="space_to_depth:4", crop_size=SIZE, align="none"))


def test_space_to_depth_codec_is_exact():
    codec = load_codec("space_to_depth:4")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    lat = codec.encode_latents(x)
    assert lat.shape == (2, 48, 4, 4)
    torch.testing.assert_close(codec.decode_latents(lat), x)


def test_latent_cache_and_examples(corpus):
    task = InterpTask(_cfg(corpus))
    cache = task.cache()
    assert cache.channels == 48 and cache.grid == (8, 8)
    assert cache.clip_ids("train") == ["fake-000", "fake-001", "fake-002"] and cache.clip_ids("test") == ["fake-004"]
    lat = cache.load("fake-000")["latents"]
    frames = np.load(corpus / "clips/fake-000/frames.npz")["frames"]
    assert lat.shape[0] == len(frames)
    again = SpaceToDepthCodec(4).encode_latents(torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    torch.testing.assert_close(torch.from_numpy(lat[:1].astype(np.float32)), again, atol=2e-3, rtol=0)
    ds = task.train_dataset()
    assert len(ds) > 10
    for i in range(0, len(ds), 7):
        item = ds[i]
        c, a, b, j = ds.rows[i]
        assert a < j < b and 0 < float(item["tau"]) < 1
        assert np.isclose(float(item["tau"]), (j - a) / (b - a)) and np.isclose(float(item["interval"]), (b - a) / FPS)
        assert item["lat_a"].shape == (48, 8, 8) and item["phone_ids"].shape == (4,) and int(item["phone_ids"][0]) > 0
    batch = task.collate([ds[i] for i in range(5)])
    model = task.build_model()
    loss, logs = task.compute_loss(model, batch)
    assert loss.ndim == 0 and abs(logs["mse"] - logs["crossfade_mse"]) < 1e-9  # starts at cross-fade
    ev = task.evaluate(model, [task.collate([ds[i] for i in range(k, min(k + 16, len(ds)))]) for k in range(0, len(ds), 16)])
    assert set(ev) == {"latent_mse", "crossfade_latent_mse", "nearest_latent_mse", "gain_over_crossfade_db"}
    assert ev["nearest_latent_mse"] > ev["crossfade_latent_mse"]  # smooth motion: the blend beats holding


def test_trains_with_the_shared_loop_and_exports(corpus, tmp_path):
    from avatarsync.train.config import TrainConfig
    from avatarsync.train.loop import fit

    task = InterpTask(_cfg(corpus))
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=12, batch_size=8, lr=2e-3, warmup_steps=2, device="cpu",
                      eval_every=0, save_every=0, log_every=4, eval_batches=2)
    res = fit(task, cfg, task_config=task.cfg, progress=False)
    assert res.steps == 12 and "val/latent_mse" in res.final_metrics
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert np.isfinite(losses).all()
    folder = tmp_path / "run" / "final"
    model = MambaInterpolator.from_pretrained(folder)
    assert model.cfg.latent_channels == 48
    out = evaluate_clips(model, task.codec, task.cfg.data, task.cache(), split="test")
    assert out["clips"] == 1 and out["in_between_frames"] > 0
    for name in ("model", "crossfade", "nearest", "crossfade_gt", "nearest_gt", "codec"):
        assert np.isfinite(out[f"psnr_{name}"])
    assert out["psnr_codec"] > 60  # space-to-depth is lossless up to float16
    assert out["stability_gt"] > 0 and np.isfinite(out["stability_model_ratio"])


def test_recipe_loads_through_the_registry(corpus):
    from avatarsync.train.registry import load_recipe

    root = Path(__file__).resolve().parents[1]
    for name in ("interp_tiny", "interp_default", "interp_base"):
        task_cfg, train_cfg = load_recipe("interp", root / "recipes" / f"{name}.yaml", [f"data.corpus={corpus}"])
        assert isinstance(task_cfg, InterpConfig) and task_cfg.data.corpus == str(corpus)
        assert task_cfg.model.latent_channels == 0 and train_cfg.steps > 0


def test_outside_mouth_motion_ignores_the_mouth():
    video = torch.zeros(3, 3, 8, 8)
    video[1, :, 2:4, 2:4] = 1.0  # change only inside the box
    boxes = np.array([[2, 2, 4, 4]] * 3)
    assert outside_mouth_motion(video, boxes) == 0.0
    video[2, :, 7, 7] = 1.0  # one pixel outside
    assert outside_mouth_motion(video, boxes) > 0


def test_channel_mismatch_is_a_clear_error(corpus):
    cfg = _cfg(corpus)
    cfg.model.latent_channels = 16
    with pytest.raises(Exception, match="latent_channels"):
        InterpTask(cfg).build_model()
    assert LatentCache(InterpTask(_cfg(corpus)).cache().folder).channels == 48


def test_reference_tokenizer_is_refused_as_an_interpolation_codec():
    from avatarsync.errors import InputError
    from avatarsync.interpolation.codec import TokenizerCodec
    from avatarsync.tokenizers import TokenizerConfig, VisualTokenizer

    with pytest.raises(InputError, match="space_to_depth"):
        TokenizerCodec(VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=10, reference=True)))
