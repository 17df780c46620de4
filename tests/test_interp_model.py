"""The Mamba interpolator: shapes, start-at-cross-fade, parallel inference, and a toy task it must learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarsync.errors import InputError
from avatarsync.interpolation.baselines import linear_crossfade, nearest_keyframe
from avatarsync.interpolation.interpolate import interpolate_frames, interpolate_track
from avatarsync.interpolation.model import InterpModelConfig, MambaInterpolator
from avatarsync.interpolation.schedule import PhoneTable, frame_schedule
from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit


def _inputs(b=3, c=4, h=4, w=4, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g), torch.rand(b, generator=g),
            torch.full((b,), 0.12), torch.randint(0, 12, (b, p), generator=g), torch.rand(b, p, 2, generator=g))


def _tiny(**kw) -> MambaInterpolator:
    torch.manual_seed(0)
    base = dict(latent_channels=4, d_model=32, n_layers=2, d_state=8, head_dim=16, max_phones=3)
    return MambaInterpolator(InterpModelConfig(**{**base, **kw}))


@pytest.mark.parametrize("kw", [{}, {"mixer": "mamba1"}, {"patch": 2}, {"residual": False}])
def test_shapes(kw):
    m = _tiny(**kw)
    a, b, tau, iv, ids, sp = _inputs()
    out = m(a, b, tau, iv, ids, sp)
    assert out.shape == a.shape and torch.isfinite(out).all()
    assert m(a, b, tau, iv).shape == a.shape  # phones are optional


def test_starts_as_linear_crossfade_and_bad_input_raises():
    m = _tiny()
    a, b, tau, iv, ids, sp = _inputs()
    torch.testing.assert_close(m(a, b, tau, iv, ids, sp), linear_crossfade(a, b, tau))  # zero-initialised head
    with pytest.raises(InputError, match="keyframe latents"):
        m(a[:, :3], b[:, :3], tau, iv)
    with pytest.raises(InputError, match="patch"):
        _tiny(patch=3)(a, b, tau, iv)


def test_backends_agree_inside_the_model():
    m = _tiny()
    torch.nn.init.normal_(m.head.weight, std=0.1)  # make the residual path visible
    x = _inputs(seed=4)
    with torch.no_grad():
        want = m(*x)
        for backend in ("reference", "transformers"):
            m.set_backend(backend)
            torch.testing.assert_close(m(*x), want, rtol=1e-4, atol=1e-5)


def _toy_batch(n: int, g: torch.Generator):
    """Latents moving on a nonlinear path: an eased transition centred on the phone boundary, plus a bump
    whose direction depends on the second phone's viseme. Cross-fade misses both."""
    c, h, w = 4, 4, 4
    bumps = torch.randn(12, c, h, w, generator=torch.Generator().manual_seed(123))
    a, b = torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g)
    tau = torch.rand(n, generator=g)
    beta = 0.2 + 0.6 * torch.rand(n, generator=g)  # phone boundary, in tau units
    ids = torch.randint(1, 12, (n, 2), generator=g)
    spans = torch.stack([torch.stack([torch.full_like(beta, -0.5), beta], -1),
                         torch.stack([beta, torch.full_like(beta, 1.5)], -1)], 1)
    sig = lambda x: torch.sigmoid(12 * x)  # noqa: E731
    ease = (sig(tau - beta) - sig(-beta)) / (sig(1 - beta) - sig(-beta))
    e = lambda x: x[:, None, None, None]  # noqa: E731
    target = a + (b - a) * e(ease) + e(torch.sin(math.pi * tau)) * bumps[ids[:, 1]]
    return (a, b, tau, torch.full((n,), 0.12), ids, spans), target


def test_learns_toy_interpolation_better_than_crossfade():
    m = _tiny(max_phones=2)
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        x, y = _toy_batch(32, g)
        loss = (m(*x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _toy_batch(256, torch.Generator().manual_seed(99))  # held-out examples
    with torch.no_grad():
        model_mse = (m(*x) - y).pow(2).mean().item()
        xfade_mse = (linear_crossfade(x[0], x[1], x[2]) - y).pow(2).mean().item()
        near_mse = (nearest_keyframe(x[0], x[1], x[2]) - y).pow(2).mean().item()
        # it reads the phones: moving the boundary changes the prediction
        x2 = (*x[:5], x[5].clone())
        x2[5][:, 0, 1] = 0.8
        x2[5][:, 1, 0] = 0.8
        assert (m(*x2) - m(*x)).abs().mean() > 1e-3
    assert model_mse < 0.8 * xfade_mse and model_mse < near_mse, (model_mse, xfade_mse, near_mse)


def _track():
    units = [PhonemeUnit("sil", 0.0, 0.15, "rest"), PhonemeUnit("m", 0.15, 0.27, "bilabial"),
             PhonemeUnit("a", 0.27, 0.61, "open_vowel"), PhonemeUnit("i", 0.61, 0.83, "spread_vowel"),
             PhonemeUnit("sil", 0.83, 1.1, "rest")]
    return PhonemeTrack(units=units, lang="en", duration=1.1)


def test_parallel_interpolation_of_all_pairs():
    m = _tiny()
    torch.nn.init.normal_(m.head.weight, std=0.1)
    tr = _track()
    keys = torch.randn(len(tr.units), 4, 4, 4)
    out = interpolate_track(m, keys, tr, fps=25)
    assert out.shape == (round(1.1 * 25), 4, 4, 4)
    s = frame_schedule([0.5 * (u.start + u.end) for u in tr.units], 1.1, 25)
    one = interpolate_frames(m, keys, s, PhoneTable.from_track(tr), batch_size=1)
    torch.testing.assert_close(out, one, rtol=1e-4, atol=1e-5)  # batching all pairs changes nothing
    copies = s.is_keyframe_copy()
    assert copies.any() and (~copies).any()
    for j in np.nonzero(copies)[0]:  # holds and exact keyframe times copy the keyframe
        src = s.right[j] if s.tau[j] >= 0.5 else s.left[j]
        assert torch.equal(out[j], keys[src])
    # the baselines run through the same schedule
    xf = interpolate_frames("crossfade", keys, s)
    j = int(np.nonzero(~copies)[0][0])
    torch.testing.assert_close(xf[j], (1 - s.tau[j]) * keys[s.left[j]] + s.tau[j] * keys[s.right[j]])
    with pytest.raises(InputError):
        interpolate_frames(m, keys[:-1], s)
    with pytest.raises(InputError):
        interpolate_frames("cubic", keys, s)
