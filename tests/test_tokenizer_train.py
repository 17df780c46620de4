"""TokenizerTask: losses fall, metrics, perceptual options, adversarial terms, the shared loop, recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatarsync.errors import InputError
from avatarsync.tokenizers import (TokenizerConfig, TokenizerDataConfig, TokenizerLossConfig, TokenizerTask,
                                   TokenizerTaskConfig, VisualTokenizer)
from avatarsync.tokenizers.data import FrameDataset, PreparedFrames, synthetic_frames
from avatarsync.perceptual import PyramidGradientLoss, VGGFeatureLoss, build_perceptual
from avatarsync.tokenizers.losses import PatchDiscriminator, box_mask, discriminator_hinge, generator_hinge, psnr
from avatarsync.tokenizers.task import codebook_stats

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def tiny_task(**loss) -> TokenizerTask:
    data = TokenizerDataConfig(source="synthetic", crop_size=32, align="frame", synthetic_train=8, synthetic_val=4)
    model = TokenizerConfig(size="tiny", codebook_bits=10, factors=2, loss=TokenizerLossConfig(**loss))
    return TokenizerTask(TokenizerTaskConfig(model=model, data=data))


def test_a_few_adam_steps_make_the_loss_fall_and_psnr_rise():
    torch.manual_seed(0)
    task = tiny_task(mouth=1.0)
    model = task.build_model()
    ds = task.train_dataset()
    batch = task.collate([ds[i] for i in range(8)])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses, psnrs = [], []
    for _ in range(40):
        loss, logs = task.compute_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        psnrs.append(logs["psnr"])
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert psnrs[-1] > psnrs[0] + 2.0
    assert {"l1", "l2", "perceptual", "entropy", "commitment", "mouth_l1", "batch_usage"} <= set(logs)
    assert int(model.step) == 40
    model.eval()
    metrics = task.evaluate(model, [batch])
    assert {"psnr", "mouth_psnr", "codebook_perplexity", "codebook_usage", "codes_used", "factor_usage"} <= set(metrics)
    assert metrics["psnr"] > psnrs[0]


def test_codebook_stats_on_known_distributions():
    s = codebook_stats(torch.tensor([0, 1, 2, 3] * 5), 16)
    assert abs(s["perplexity"] - 4.0) < 1e-9 and s["usage"] == 0.25 and s["used"] == 4
    assert abs(codebook_stats(torch.zeros(10, dtype=torch.long), 16)["perplexity"] - 1.0) < 1e-9


def test_psnr_and_box_mask():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[:, :, :4] = 0.2  # error only in the top half
    box = torch.tensor([[0, 4, 8, 8], [0, 0, 8, 4]])
    m = box_mask(box, 8, 8)
    assert m[0, 0, 4:].all() and not m[0, 0, :4].any() and m[1, 0, :4].all()
    p = psnr(b, a, m)
    assert p[0] > 90 and abs(float(p[1]) - 10 * torch.log10(torch.tensor(4 / 0.04))) < 1e-3
    assert abs(float(psnr(b, a)[0]) - 10 * torch.log10(torch.tensor(4 / 0.02))) < 1e-3


def test_fallback_perceptual_loss_sees_edges_and_is_zero_on_equal_images():
    loss = PyramidGradientLoss()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    shifted = x + (blurred - x).mean()  # same mean error magnitude scale, no structural change
    assert float(loss(blurred, x)) > float(loss(shifted, x))
    assert isinstance(build_perceptual("auto", None), PyramidGradientLoss)
    with pytest.raises(InputError):
        build_perceptual("lpips", None)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16_features.pth"
    feats = vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    return path


def test_vgg_perceptual_from_a_local_file(vgg_weights):
    loss = build_perceptual("vgg", str(vgg_weights))
    assert isinstance(loss, VGGFeatureLoss)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_()
    assert float(loss(x, x)) < 1e-8
    value = loss(y, x)
    value.backward()
    assert value > 0 and y.grad.abs().sum() > 0


def test_lpips_perceptual_from_a_local_backbone(vgg_weights):
    pytest.importorskip("lpips")
    loss = build_perceptual("lpips", str(vgg_weights))
    first_conv = loss.net.net.slice1[0].weight
    saved = torch.load(vgg_weights)["features.0.weight"]
    assert torch.equal(first_conv, saved)  # the backbone came from our file, not a download
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) < 1e-6 and float(loss(x.flip(-1), x)) > 0


def test_adversarial_terms_route_gradients_to_the_right_network():
    torch.manual_seed(0)
    disc = PatchDiscriminator(8)
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    generator_hinge(disc, fake).backward()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())  # the generator term leaves D alone
    fake.grad = None
    discriminator_hinge(disc, real, fake).backward()
    assert fake.grad is None  # the discriminator term leaves G alone
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_adversarial_loss_switches_on_at_its_start_step():
    torch.manual_seed(0)
    task = tiny_task(adversarial=0.1, adversarial_start=2, disc_channels=8)
    model = task.build_model()
    batch = task.collate([task.train_dataset()[i] for i in range(2)])
    seen = [("gan_g" in task.compute_loss(model, batch)[1]) for _ in range(4)]
    assert seen == [False, False, True, True]


def test_frame_dataset_flip_moves_the_mouth_box_and_crops_clip_it():
    frames = synthetic_frames(TokenizerDataConfig(source="synthetic", crop_size=32, align="none"), 2, seed=0)
    frames = PreparedFrames(frames.crops, frames.matrices, np.tile(np.array([2, 20, 10, 30]), (2, 1)))
    torch.manual_seed(0)
    ds = FrameDataset(frames, hflip=True)
    seen = {tuple(ds[0]["mouth_box"].tolist()) for _ in range(20)}
    assert seen == {(2, 20, 10, 30), (22, 20, 30, 30)}
    item = FrameDataset(frames, crop=16)[0]
    assert item["image"].shape == (3, 16, 16)
    assert (item["mouth_box"] >= 0).all() and (item["mouth_box"] <= 16).all()


def test_the_shared_loop_trains_and_exports_a_loadable_tokenizer(tmp_path):
    from avatarsync.train.registry import load_recipe, run_training

    task_cfg, train_cfg = load_recipe("tokenizer", RECIPES / "tokenizer_tiny.yaml", [f"train.out_dir={tmp_path}/run"])
    assert task_cfg.model.size == "tiny" and train_cfg.steps == 6
    result = run_training("tokenizer", RECIPES / "tokenizer_tiny.yaml", [f"train.out_dir={tmp_path}/run"], progress=False)
    assert result.steps == 6 and "val/psnr" in result.final_metrics
    tok = VisualTokenizer.from_pretrained(tmp_path / "run" / "final")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert tok.encode(x).shape == (1, 8, 8)
    # a second run resumes from the last checkpoint instead of starting over
    again = run_training("tokenizer", RECIPES / "tokenizer_tiny.yaml", [f"train.out_dir={tmp_path}/run"], progress=False)
    assert again.steps == 6


def test_default_recipe_parses():
    from avatarsync.train.registry import load_recipe

    for name in ("tokenizer_plain.yaml", "tokenizer_default.yaml"):
        task_cfg, train_cfg = load_recipe("tokenizer", RECIPES / name)
        assert task_cfg.model.resolved().codebook_size == 2 ** 14 and task_cfg.data.crop_size == 128
        assert train_cfg.max_minutes > 0 and train_cfg.threads == 2
        task_cfg.init_from, task_cfg.freeze_encoder = "", False  # stage 2 starts from a trained stage 1
        task = TokenizerTask(task_cfg)
        assert task.build_model().tokenizer.grid_size(128) == (16, 16)
    assert task_cfg.model.reference and load_recipe("tokenizer", RECIPES / "tokenizer_default.yaml")[0].freeze_encoder


def test_stage_two_keeps_the_tokens_and_trains_only_decoding(tmp_path):
    """init_from + freeze_encoder: a reference decoder starts from a plain tokenizer, encodes exactly
    as it does, and starts decoding exactly as it does."""
    from avatarsync.tokenizers import TokenizerConfig, TokenizerTask, TokenizerTaskConfig, VisualTokenizer, save_tokenizer

    torch.manual_seed(0)
    plain = VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=10)).eval()
    save_tokenizer(plain, plain.config, tmp_path / "plain")
    cfg = TokenizerTaskConfig(model=TokenizerConfig(size="tiny", codebook_bits=10, reference=True),
                              init_from=str(tmp_path / "plain"), freeze_encoder=True)
    model = TokenizerTask(cfg).build_model()
    tok = model.tokenizer.eval()
    x, ref = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(tok.encode(x), plain.encode(x))
    from avatarsync.tokenizers import token_fingerprint, tokenizer_fingerprint

    assert token_fingerprint(tok) == token_fingerprint(plain)  # caches of stage-1 tokens stay valid
    assert tokenizer_fingerprint(tok) != tokenizer_fingerprint(plain)
    assert token_fingerprint(VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=10))) != token_fingerprint(plain)
    torch.testing.assert_close(tok.decode(tok.encode(x), reference=ref), plain.decode(plain.encode(x)))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("tokenizer.encoder.", "tokenizer.quantizer.")) for n in frozen)
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith("tokenizer.decoder."))


def test_freeze_encoder_without_init_and_mismatched_encoders_are_refused(tmp_path):
    from avatarsync.errors import CheckpointError, InputError
    from avatarsync.tokenizers import TokenizerConfig, TokenizerTask, TokenizerTaskConfig, VisualTokenizer, save_tokenizer

    with pytest.raises(InputError, match="init_from"):
        TokenizerTask(TokenizerTaskConfig(model=TokenizerConfig(size="tiny", codebook_bits=10),
                                          freeze_encoder=True)).build_model()
    other = VisualTokenizer(TokenizerConfig(size="tiny", codebook_bits=12))
    save_tokenizer(other, other.config, tmp_path / "other")
    with pytest.raises(CheckpointError, match="different encoder"):
        TokenizerTask(TokenizerTaskConfig(model=TokenizerConfig(size="tiny", codebook_bits=10),
                                          init_from=str(tmp_path / "other"))).build_model()
