"""Open-MAGVIT2 checkpoint loading, on a Lightning-style state dict built here.

The state dict follows Open-MAGVIT2's parameter names and shapes (its
``improved_model`` Encoder/Decoder). A small functional forward written here
from those names serves as the reference: our modules, loaded through the
name mapping, must compute the same latent and the same image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avatarsync.tokenizers.openmagvit2 import infer_config, load_openmagvit2, map_name, openmagvit2_ids_to_ours

CH, MULT, NRB, Z = 32, (1, 1, 2, 2), 1, 10  # widths divisible by 32 so GroupNorm(32) matches exactly


def _res_keys(prefix: str, cin: int, cout: int) -> dict[str, tuple]:
    k = {f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,), f"{prefix}.conv1.weight": (cout, cin, 3, 3),
         f"{prefix}.norm2.weight": (cout,), f"{prefix}.norm2.bias": (cout,), f"{prefix}.conv2.weight": (cout, cout, 3, 3)}
    if cin != cout:
        k[f"{prefix}.nin_shortcut.weight"] = (cout, cin, 1, 1)
    return k


def openmagvit2_shapes() -> dict[str, tuple]:
    s: dict[str, tuple] = {"encoder.conv_in.weight": (CH, 3, 3, 3)}
    cin = CH
    for i, m in enumerate(MULT):
        cout = CH * m
        for j in range(NRB):
            s.update(_res_keys(f"encoder.down.{i}.block.{j}", cin if j == 0 else cout, cout))
        cin = cout
        if i < len(MULT) - 1:
            s[f"encoder.down.{i}.downsample.weight"] = (cout, cout, 3, 3)
            s[f"encoder.down.{i}.downsample.bias"] = (cout,)
    for j in range(NRB):
        s.update(_res_keys(f"encoder.mid_block.{j}", cin, cin))
    s.update({"encoder.norm_out.weight": (cin,), "encoder.norm_out.bias": (cin,), "encoder.conv_out.weight": (Z, cin, 1, 1),
              "encoder.conv_out.bias": (Z,)})
    top = CH * MULT[-1]
    s.update({"decoder.conv_in.weight": (top, Z, 3, 3), "decoder.conv_in.bias": (top,)})
    for j in range(NRB):
        s.update(_res_keys(f"decoder.mid_block.{j}", top, top))
    cin = top
    for i in reversed(range(len(MULT))):
        cout = CH * MULT[i]
        s.update({f"decoder.adaptive.{i}.gamma.weight": (cin, Z), f"decoder.adaptive.{i}.gamma.bias": (cin,),
                  f"decoder.adaptive.{i}.beta.weight": (cin, Z), f"decoder.adaptive.{i}.beta.bias": (cin,)})
        for j in range(NRB):
            s.update(_res_keys(f"decoder.up.{i}.block.{j}", cin if j == 0 else cout, cout))
        cin = cout
        if i > 0:
            s[f"decoder.up.{i}.upsample.conv1.weight"] = (cout * 4, cout, 3, 3)
            s[f"decoder.up.{i}.upsample.conv1.bias"] = (cout * 4,)
    s.update({"decoder.norm_out.weight": (cin,), "decoder.norm_out.bias": (cin,), "decoder.conv_out.weight": (3, cin, 3, 3),
              "decoder.conv_out.bias": (3,)})
    return s


def build_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in openmagvit2_shapes().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or "norm_out.weight" in k:
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            sd[k] = torch.randn(shape, generator=g) / fan_in ** 0.5 * (0.5 if len(shape) > 1 else 0.1)
    return sd


# -- reference forward from Open-MAGVIT2 names --------------------------------------------------
def _gn(sd, p, x):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)


def _res(sd, p, x):
    h = F.conv2d(F.silu(_gn(sd, p + ".norm1", x)), sd[p + ".conv1.weight"], padding=1)
    h = F.conv2d(F.silu(_gn(sd, p + ".norm2", h)), sd[p + ".conv2.weight"], padding=1)
    if p + ".nin_shortcut.weight" in sd:
        x = F.conv2d(x, sd[p + ".nin_shortcut.weight"])
    return x + h


def ref_encode(sd, x):
    x = F.conv2d(x, sd["encoder.conv_in.weight"], padding=1)
    for i in range(len(MULT)):
        for j in range(NRB):
            x = _res(sd, f"encoder.down.{i}.block.{j}", x)
        if i < len(MULT) - 1:
            x = F.conv2d(x, sd[f"encoder.down.{i}.downsample.weight"], sd[f"encoder.down.{i}.downsample.bias"], stride=2, padding=1)
    for j in range(NRB):
        x = _res(sd, f"encoder.mid_block.{j}", x)
    return F.conv2d(F.silu(_gn(sd, "encoder.norm_out", x)), sd["encoder.conv_out.weight"], sd["encoder.conv_out.bias"])


def _d2s_dcr(x, b=2):
    n, c, h, w = x.shape
    x = x.view(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(n, c // (b * b), h * b, w * b)


def ref_decode(sd, z):
    style = z
    x = F.conv2d(z, sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"], padding=1)
    for j in range(NRB):
        x = _res(sd, f"decoder.mid_block.{j}", x)
    for i in reversed(range(len(MULT))):
        p = f"decoder.adaptive.{i}"
        flat = style.flatten(2)
        scale = F.linear((flat.var(-1, unbiased=False) + 1e-6).sqrt(), sd[p + ".gamma.weight"], sd[p + ".gamma.bias"])
        bias = F.linear(flat.mean(-1), sd[p + ".beta.weight"], sd[p + ".beta.bias"])
        x = F.group_norm(x, 32, eps=1e-6) * scale[..., None, None] + bias[..., None, None]
        for j in range(NRB):
            x = _res(sd, f"decoder.up.{i}.block.{j}", x)
        if i > 0:
            x = _d2s_dcr(F.conv2d(x, sd[f"decoder.up.{i}.upsample.conv1.weight"], sd[f"decoder.up.{i}.upsample.conv1.bias"], padding=1))
    return F.conv2d(F.silu(_gn(sd, "decoder.norm_out", x)), sd["decoder.conv_out.weight"], sd["decoder.conv_out.bias"], padding=1)


# -- tests --------------------------------------------------------------------------------------
def test_config_is_read_off_the_shapes():
    cfg = infer_config(build_state_dict()).resolved()
    assert (cfg.channels, cfg.channel_mult, cfg.num_res_blocks, cfg.codebook_bits, cfg.downsample) == (CH, list(MULT), NRB, Z, 8)
    assert cfg.adaptive_norm


def test_lightning_checkpoint_loads_and_computes_like_the_reference(tmp_path):
    sd = build_state_dict()
    ckpt = {"state_dict": {**sd, "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4)}, "epoch": 3,
            "global_step": 1000}
    path = tmp_path / "magvit2.ckpt"
    torch.save(ckpt, path)
    model, report = load_openmagvit2(path, use_ema=False, strict=True)
    assert not report.missing and not report.mismatched
    assert report.unused == []  # the discriminator and loss tensors are not looked at
    assert torch.equal(model.encoder.stem.weight, sd["encoder.conv_in.weight"])
    last = len(MULT) - 1
    assert torch.equal(model.decoder.levels[0].adanorm.gamma.weight, sd[f"decoder.adaptive.{last}.gamma.weight"])

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z_ref = ref_encode(sd, x)
        torch.testing.assert_close(model.encoder(x), z_ref, atol=1e-5, rtol=1e-4)
        codes = torch.where(z_ref > 0, 1.0, -1.0)
        torch.testing.assert_close(model.decode_codes(codes), ref_decode(sd, codes), atol=1e-4, rtol=1e-4)
        # our ids are Open-MAGVIT2's with the bit order reversed; both describe the same codes
        ours = model.encode(x)
        theirs = ((z_ref > 0).long() * (2 ** torch.arange(Z))[None, :, None, None]).sum(1)
        assert torch.equal(openmagvit2_ids_to_ours(theirs, Z), ours)


def test_ema_weights_are_preferred_when_present(tmp_path):
    sd = build_state_dict(seed=1)
    ema = {"model_ema." + k.replace(".", ""): v + 1.0 for k, v in sd.items()}
    ema["model_ema.decay"] = torch.tensor(0.999)
    torch.save({"state_dict": {**sd, **ema}}, tmp_path / "ema.ckpt")
    with_ema, _ = load_openmagvit2(tmp_path / "ema.ckpt", use_ema=True)
    without, _ = load_openmagvit2(tmp_path / "ema.ckpt", use_ema=False)
    assert torch.equal(with_ema.encoder.stem.weight, sd["encoder.conv_in.weight"] + 1.0)
    assert torch.equal(without.encoder.stem.weight, sd["encoder.conv_in.weight"])


def test_unmatched_shapes_are_reported_not_loaded(tmp_path):
    sd = build_state_dict()
    sd["encoder.down.1.block.0.conv_shortcut.weight"] = torch.zeros(CH, CH, 3, 3)  # a variant we do not have
    sd["decoder.conv_out.weight"] = torch.zeros(3, CH, 1, 1)  # wrong kernel size
    torch.save({"state_dict": sd}, tmp_path / "odd.ckpt")
    model, report = load_openmagvit2(tmp_path / "odd.ckpt")
    assert "encoder.down.1.block.0.conv_shortcut.weight" in report.unused
    assert any(m.startswith("decoder.conv_out.weight") for m in report.mismatched)
    assert "decoder.head.weight" in report.missing
    assert map_name("decoder.up.0.block.0.nin_shortcut.weight", 4) == "decoder.levels.3.blocks.0.skip.weight"
