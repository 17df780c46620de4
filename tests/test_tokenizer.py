"""VisualTokenizer: shapes, round trips, quantizer ids, differentiable decoding, checkpoints."""

from __future__ import annotations

import pytest
import torch

from avatarsync.errors import CheckpointError, InputError
from avatarsync.tokenizers import (MODEL_SIZES, TokenizerConfig, TokenizerTrainModel, VisualTokenizer,
                                   save_tokenizer, tokenizer_fingerprint)
from avatarsync.tokenizers.model import depth_to_space, norm_groups


def make(**kw) -> VisualTokenizer:
    torch.manual_seed(0)
    base = dict(size="tiny", codebook_bits=10)
    base.update(kw)
    return VisualTokenizer(TokenizerConfig(**base)).eval()


def images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


# -- config -------------------------------------------------------------------------------------
def test_presets_and_downsampling_levels():
    for size in MODEL_SIZES:
        cfg = TokenizerConfig(size=size).resolved()
        assert len(cfg.channel_mult) == 4 and cfg.channels == MODEL_SIZES[size]["channels"]
    cfg16 = TokenizerConfig(size="tiny", downsample=16).resolved()
    assert len(cfg16.channel_mult) == 5
    assert make(downsample=16).grid_size(128) == (8, 8)
    assert make().grid_size(128) == (16, 16) and make().grid_size((64, 32)) == (8, 4)


@pytest.mark.parametrize("bad", [dict(codebook_bits=19), dict(codebook_bits=10, factors=3),
                                 dict(quantizer="vq", factors=2), dict(channel_mult=[1, 2]),
                                 dict(size="huge")])
def test_bad_configs_are_refused(bad):
    with pytest.raises(InputError):
        TokenizerConfig(**bad).resolved()


def test_norm_groups_keep_several_channels_per_group():
    assert norm_groups(16) == 4 and norm_groups(128) == 32 and norm_groups(48) == 12 and norm_groups(3) == 1


# -- encode / decode ----------------------------------------------------------------------------
@pytest.mark.parametrize("factors", [1, 2])
def test_encode_decode_round_trip(factors):
    tok = make(factors=factors)
    x = images()
    ids = tok.encode(x)
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < tok.codebook_size == 1024
    # indices -> codes -> decode equals decode of encode, and the model's own forward in eval mode
    with torch.no_grad():
        codes = tok.indices_to_codes(ids)
        assert codes.shape == (2, 10, 4, 4) and set(codes.unique().tolist()) <= {-1.0, 1.0}
        via_codes = tok.decode_codes(codes)
        direct = tok.decode(ids, clamp=False)
        forward = tok(x).recon
    assert torch.equal(via_codes, direct)
    torch.testing.assert_close(forward, direct)
    assert tok.decode(ids).abs().max() <= 1.0
    # re-encoding the codes' sign pattern gives the same ids
    assert torch.equal(tok.quantizer.indices_from_latent(codes), ids)


def test_our_ids_match_vector_quantize_pytorch_lfq():
    tok = make(factors=2)
    tok.quantizer.train()
    z = torch.randn(2, 10, 4, 4)
    out = tok.quantizer(z)
    assert torch.equal(out.indices, tok.quantizer.indices_from_latent(z))
    assert torch.equal(out.codes.detach(), torch.where(z > 0, 1.0, -1.0))
    assert {"entropy", "commitment"} <= set(out.losses)


def test_factorized_ids_split_and_merge():
    tok = make(factors=2)
    x = images()
    full, sub = tok.encode(x), tok.encode(x, factorized=True)
    assert sub.shape == (2, 4, 4, 2) and int(sub.max()) < tok.factor_size == 32
    assert torch.equal(full, sub[..., 0] * 32 + sub[..., 1])
    assert torch.equal(tok.decode(sub), tok.decode(full))


def test_large_factorized_codebook_is_cheap():
    tok = make(codebook_bits=18, factors=2)
    tok.train()
    out = tok(images())
    assert out.indices.max() < 2 ** 18 and torch.isfinite(out.losses["entropy"])
    assert tok.decode(out.indices).shape == (2, 3, 32, 32)


def test_bad_inputs_are_refused():
    tok = make()
    with pytest.raises(InputError):
        tok.encode(torch.zeros(1, 3, 30, 30))  # not a multiple of 8
    with pytest.raises(InputError):
        tok.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(InputError):
        tok.decode(torch.full((1, 4, 4), 1024))


# -- differentiable decoding from logits --------------------------------------------------------
def _onehot_logits(ids: torch.Tensor, n: int, scale: float = 60.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, n).float() * scale


@pytest.mark.parametrize("factors", [1, 2])
def test_decode_logits_matches_decode_and_is_differentiable(factors):
    tok = make(factors=factors)
    ids = tok.encode(images())
    target = tok.decode(ids, clamp=False)
    logits = _onehot_logits(ids, tok.codebook_size).requires_grad_()
    st = tok.decode_logits(logits, mode="st")
    torch.testing.assert_close(st, target, atol=1e-5, rtol=1e-5)  # forward = hard codes
    soft = tok.decode_logits(logits, mode="soft")
    torch.testing.assert_close(soft, target, atol=1e-3, rtol=1e-3)  # peaked softmax ~ hard codes
    mild = (logits.detach() / 20).requires_grad_()
    tok.decode_logits(mild, mode="soft").square().mean().backward()
    assert mild.grad is not None and mild.grad.abs().sum() > 0
    mild.grad = None
    tok.decode_logits(mild, mode="st").square().mean().backward()
    assert mild.grad.abs().sum() > 0
    if factors == 2:
        sub = tok.quantizer.split(ids)
        sub_logits = _onehot_logits(sub, tok.factor_size)
        torch.testing.assert_close(tok.decode_logits(sub_logits, mode="st"), target, atol=1e-5, rtol=1e-5)
        as_list = [sub_logits[..., 0, :], sub_logits[..., 1, :]]
        torch.testing.assert_close(tok.decode_logits(as_list, mode="st"), target, atol=1e-5, rtol=1e-5)


def test_decode_logits_rejects_wrong_shapes_and_modes():
    tok = make()
    with pytest.raises(InputError):
        tok.decode_logits(torch.zeros(1, 4, 4, 100))
    with pytest.raises(InputError):
        tok.decode_logits(torch.zeros(1, 4, 4, 1024), mode="gumbel")


# -- VQ alternative -----------------------------------------------------------------------------
def test_vq_tokenizer_round_trip_and_logits():
    tok = make(quantizer="vq", codebook_bits=8, vq_dim=8)
    x = images()
    ids = tok.encode(x)
    assert ids.shape == (2, 4, 4) and int(ids.max()) < 256
    with torch.no_grad():
        torch.testing.assert_close(tok(x).recon, tok.decode(ids, clamp=False))
        torch.testing.assert_close(tok.decode_codes(tok.indices_to_codes(ids)), tok.decode(ids, clamp=False))
    st = tok.decode_logits(_onehot_logits(ids, 256), mode="st")
    torch.testing.assert_close(st, tok.decode(ids, clamp=False), atol=1e-5, rtol=1e-5)
    tok.train()
    out = tok(x)
    assert "commitment" in out.losses and out.recon.shape == x.shape


# -- building blocks ----------------------------------------------------------------------------
def test_depth_to_space_uses_dcr_channel_order():
    c, b = 2, 2
    x = torch.arange(4 * c * 3 * 3, dtype=torch.float32).reshape(1, 4 * c, 3, 3)
    y = depth_to_space(x, b)
    assert y.shape == (1, c, 6, 6)
    for i in range(b):
        for j in range(b):
            for ch in range(c):
                assert torch.equal(y[0, ch, i::b, j::b], x[0, (i * b + j) * c + ch])


# -- checkpoints --------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    tok = make(factors=2)
    x = images()
    folder = save_tokenizer(tok, tok.config, tmp_path / "tok")
    assert (folder / "config.yaml").is_file() and (folder / "model.safetensors").is_file()
    loaded = VisualTokenizer.from_pretrained(folder, device="cpu")
    assert not loaded.training
    assert torch.equal(loaded.encode(x), tok.encode(x))
    torch.testing.assert_close(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(tok)


def test_load_from_a_training_wrapper_state_dict(tmp_path):
    from avatarsync.train.checkpoint import save_weights

    torch.manual_seed(0)
    wrapper = TokenizerTrainModel(TokenizerConfig(size="tiny", codebook_bits=10, loss=dict_loss(adversarial=0.5)))
    assert wrapper.discriminator is not None
    folder = tmp_path / "raw"
    folder.mkdir()
    save_weights(wrapper, folder / "model.safetensors")
    from avatarsync.config import save_config

    save_config(wrapper.tokenizer.config, folder / "config.yaml")
    loaded = VisualTokenizer.from_pretrained(folder)
    x = images()
    assert torch.equal(loaded.encode(x), wrapper.tokenizer.eval().encode(x))


def dict_loss(**kw):
    from avatarsync.tokenizers import TokenizerLossConfig

    return TokenizerLossConfig(**kw)


def test_missing_or_mismatched_checkpoints_raise(tmp_path):
    with pytest.raises(CheckpointError):
        VisualTokenizer.from_pretrained(tmp_path / "nothing")
    tok = make()
    save_tokenizer(make(codebook_bits=12), tok.config, tmp_path / "b")  # 12-bit weights under a 10-bit config
    with pytest.raises(CheckpointError):
        VisualTokenizer.from_pretrained(tmp_path / "b")


def test_upsampler_starts_as_nearest_neighbour():
    from avatarsync.tokenizers.model import Upsample

    torch.manual_seed(0)
    up = Upsample(4)
    y = up(torch.randn(1, 4, 5, 5))
    assert y.shape == (1, 4, 10, 10)
    assert torch.equal(y[..., 0::2, 0::2], y[..., 1::2, 1::2]) and torch.equal(y[..., 0::2, 0::2], y[..., 0::2, 1::2])


# -- reference-conditioned decoding ----------------------------------------------------------------
def _ref_tokenizer() -> VisualTokenizer:
    tok = make(reference=True)
    with torch.no_grad():  # flows and injections start at zero; give them weight so they matter
        for fusion in tok.decoder.reference_in:
            fusion.proj.weight.normal_(0, 0.2)
            fusion.flow.weight.normal_(0, 0.05)
        tok.decoder.output_blend.weight.normal_(0, 0.05)
        tok.decoder.output_flow.weight.normal_(0, 0.05)
    return tok


def test_untrained_reference_decoder_starts_as_a_plain_decoder():
    tok = make(reference=True)  # flows, feature projections and the output blend start at zero
    x, r1, r2 = images(2, 32, seed=1), images(1, 32, seed=2), images(1, 32, seed=3)
    ids = tok.encode(x)
    torch.testing.assert_close(tok.decode(ids, reference=r1), tok.decode(ids, reference=r2))


def test_full_output_blend_copies_the_warped_reference():
    tok = make(reference=True)
    with torch.no_grad():
        tok.decoder.output_blend.bias.fill_(1.0)  # blend weight 1 everywhere, flow 0
    x, ref = images(2, 32, seed=1), images(1, 32, seed=2)
    torch.testing.assert_close(tok.decode(tok.encode(x), clamp=False, reference=ref), ref.expand(2, -1, -1, -1))


def test_warp_by_zero_flow_is_identity_and_whole_pixel_flow_shifts():
    from avatarsync.tokenizers.model import warp

    f = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    torch.testing.assert_close(warp(f, torch.zeros(1, 2, 5, 6)), f)
    right = torch.zeros(1, 2, 5, 6)
    right[:, 0] = 1.0  # sample one pixel to the right
    torch.testing.assert_close(warp(f, right)[..., :-1], f[..., 1:])


def test_reference_tokenizer_needs_and_uses_its_reference():
    tok = _ref_tokenizer()
    x, ref = images(2, 32, seed=1), images(1, 32, seed=2)
    ids = tok.encode(x)
    assert tok.needs_reference and not make().needs_reference
    with pytest.raises(InputError, match="reference"):
        tok.decode(ids)
    a = tok.decode(ids, reference=ref)
    b = tok.decode(ids, reference=images(1, 32, seed=3))
    assert a.shape == x.shape and not torch.allclose(a, b)


def test_reference_features_broadcast_and_match_per_frame_references():
    tok = _ref_tokenizer()
    x, ref = images(3, 32, seed=1), images(1, 32, seed=2)
    ids = tok.encode(x)
    feats = tok.reference_features(ref)
    once = tok.decode(ids, reference=feats)
    per_frame = tok.decode(ids, reference=ref.expand(3, -1, -1, -1))
    torch.testing.assert_close(once, per_frame)
    with pytest.raises(InputError, match="references"):
        tok.decode(ids, reference=images(2, 32))


def test_reference_round_trip_and_logits_decode():
    tok = _ref_tokenizer()
    x, ref = images(2, 32, seed=1), images(1, 32, seed=2)
    out = tok(x, ref)
    torch.testing.assert_close(tok.decode(out.indices, clamp=False, reference=ref), out.recon)
    onehot = torch.nn.functional.one_hot(out.indices, tok.codebook_size).float() * 50
    torch.testing.assert_close(tok.decode_logits(onehot, mode="st", reference=ref), out.recon, atol=1e-4, rtol=1e-4)


def test_reference_tokenizer_saves_and_loads(tmp_path):
    tok = _ref_tokenizer()
    save_tokenizer(tok, tok.config, tmp_path / "t")
    back = VisualTokenizer.from_pretrained(tmp_path / "t")
    x, ref = images(1, 32, seed=1), images(1, 32, seed=2)
    torch.testing.assert_close(back.decode(back.encode(x), reference=ref), tok.decode(tok.encode(x), reference=ref))


def test_reference_encoder_codes_depend_on_the_reference_and_need_it():
    tok = make(reference=True, reference_encoder=True)
    x = images(2, 32, seed=1)
    with pytest.raises(InputError, match="reference"):
        tok.encode(x)
    a = tok.encode(x, reference=images(1, 32, seed=2))
    b = tok.encode(x, reference=images(1, 32, seed=3))
    assert a.shape == (2, 4, 4) and not torch.equal(a, b)
    ref = images(1, 32, seed=2)
    out = tok(x, ref)
    torch.testing.assert_close(tok.decode(tok.encode(x, reference=ref), clamp=False, reference=ref), out.recon)
    with pytest.raises(InputError, match="reference: true"):
        TokenizerConfig(size="tiny", reference_encoder=True).resolved()


def test_token_cache_encodes_against_the_first_frame():
    import numpy as np

    from avatarsync.fkg.data import encode_crops
    from avatarsync.tokenizers.data import to_tensor

    tok = make(reference=True, reference_encoder=True)
    crops = (np.random.default_rng(0).random((3, 32, 32, 3)) * 255).astype(np.uint8)
    got = encode_crops(tok, crops, batch_size=2)
    want = tok.encode(to_tensor(crops), reference=to_tensor(crops[:1])).numpy()
    np.testing.assert_array_equal(got, want)
