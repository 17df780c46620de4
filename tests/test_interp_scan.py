"""Selective-scan backends agree with the reference recurrence; the bidirectional block's causality facts."""

from __future__ import annotations

import pytest
import torch

from avatarsync.errors import InputError
from avatarsync.interpolation.mamba import BiMambaBlock, Mamba2Mixer, MambaMixer, set_backend
from avatarsync.interpolation.scan import (
    SelectiveScan,
    SSDScan,
    available_backends,
    resolve_backend,
    selective_scan_reference,
    selective_scan_torch,
    selective_scan_transformers,
    ssd_scan_chunked,
    ssd_scan_reference,
    ssd_scan_transformers,
)


def _inputs(b=2, d=6, n=4, L=13, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(
        u=r(b, d, L), delta=r(b, d, L) * 0.5, A=-torch.exp(r(d, n) * 0.5), B=r(b, n, L), C=r(b, n, L),
        D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.1, delta_softplus=True,
    )


def _loop_by_hand(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """An independent scalar-loop statement of the recurrence (tiny sizes only)."""
    b, d, L = u.shape
    y = torch.zeros(b, d, L)
    for i in range(b):
        for c in range(d):
            h = torch.zeros(A.shape[1])
            for t in range(L):
                dt = torch.nn.functional.softplus(delta[i, c, t] + delta_bias[c])
                h = torch.exp(dt * A[c]) * h + dt * B[i, :, t] * u[i, c, t]
                y[i, c, t] = (h * C[i, :, t]).sum() + D[c] * u[i, c, t]
    return y * torch.nn.functional.silu(z)


def test_reference_matches_scalar_loop():
    x = _inputs(b=1, d=3, n=2, L=5)
    torch.testing.assert_close(selective_scan_reference(**x), _loop_by_hand(**x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("L", [1, 13, 64])
def test_mambapy_matches_reference(L):
    x = _inputs(L=L, seed=L)
    torch.testing.assert_close(selective_scan_torch(**x), selective_scan_reference(**x), rtol=1e-4, atol=1e-4)


def test_transformers_matches_reference():
    x = _inputs(seed=3)
    torch.testing.assert_close(selective_scan_transformers(**x), selective_scan_reference(**x), rtol=1e-4, atol=1e-4)
    # without the optional terms too
    y = dict(x, D=None, z=None, delta_bias=None, delta_softplus=False, delta=x["delta"].abs())
    torch.testing.assert_close(selective_scan_transformers(**y), selective_scan_reference(**y), rtol=1e-4, atol=1e-4)


def test_gradients_agree_between_reference_and_mambapy():
    grads = []
    for fn in (selective_scan_reference, selective_scan_torch):
        x = _inputs(L=20, seed=5)
        x["u"].requires_grad_(True)
        fn(**x).pow(2).sum().backward()
        grads.append(x["u"].grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-4)


def test_mixer_matches_transformers_mamba_mixer():
    """Our mixer is the Mamba-1 mixer: same weights -> same outputs as transformers' MambaMixer."""
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer as HFMixer

    torch.manual_seed(0)
    ours = MambaMixer(16, d_state=4, expand=2, d_conv=4, backend="reference").eval()
    cfg = MambaConfig(hidden_size=16, state_size=4, expand=2, conv_kernel=4, time_step_rank=ours.dt_rank,
                      use_bias=False, use_conv_bias=True, num_hidden_layers=1)
    theirs = HFMixer(cfg, layer_idx=0).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def _ssd_inputs(b=2, L=37, h=4, p=8, g=2, n=5, seed=0):
    g_ = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g_)  # noqa: E731
    return dict(x=r(b, L, h, p), dt=r(b, L, h), A=-torch.exp(r(h)), B=r(b, L, g, n), C=r(b, L, g, n),
                D=r(h), dt_bias=r(h), dt_softplus=True)


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_ssd_matches_reference(chunk):
    x = _ssd_inputs(seed=chunk)
    torch.testing.assert_close(ssd_scan_chunked(**x, chunk_size=chunk), ssd_scan_reference(**x), rtol=1e-4, atol=1e-4)


def test_ssd_reference_matches_transformers_mamba2_scan():
    x = _ssd_inputs(seed=9)
    torch.testing.assert_close(ssd_scan_transformers(**x, chunk_size=16), ssd_scan_reference(**x), rtol=1e-4, atol=1e-4)


def test_ssd_is_mamba1_scan_with_tied_decay():
    """SSD = S6 where A is one scalar per head, shared by its channels and states (B, C shared in a group)."""
    x = _ssd_inputs(b=1, L=9, h=2, p=3, g=1, n=4, seed=2)
    y2 = ssd_scan_reference(**x)
    h, p = 2, 3
    u = x["x"].reshape(1, 9, h * p).transpose(1, 2)
    delta = x["dt"].repeat_interleave(p, dim=2).transpose(1, 2)
    A = x["A"].repeat_interleave(p)[:, None].expand(h * p, 4)
    B, C = x["B"][:, :, 0].transpose(1, 2), x["C"][:, :, 0].transpose(1, 2)
    y1 = selective_scan_reference(u, delta, A, B, C, D=x["D"].repeat_interleave(p),
                                  delta_bias=x["dt_bias"].repeat_interleave(p), delta_softplus=True)
    torch.testing.assert_close(y1.transpose(1, 2).reshape(1, 9, h, p), y2, rtol=1e-5, atol=1e-5)


def test_mamba2_mixer_matches_transformers_mamba2_mixer():
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMixer2

    torch.manual_seed(0)
    ours = Mamba2Mixer(16, d_state=4, expand=2, head_dim=8, chunk_size=8, backend="torch").eval()
    cfg = Mamba2Config(hidden_size=16, state_size=4, expand=2, head_dim=8, num_heads=4, n_groups=1, conv_kernel=4,
                       chunk_size=8, use_bias=False, use_conv_bias=True, num_hidden_layers=1)
    theirs = HFMixer2(cfg, layer_idx=0).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 19, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
        set_backend(ours, "reference")
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_selective_scan_dispatch():
    assert resolve_backend("auto", "cpu") == "torch"
    assert {"reference", "torch", "transformers"} <= set(available_backends("cpu"))
    assert "cuda" not in available_backends("cpu")
    with pytest.raises(InputError):
        SelectiveScan("fast")
    x = _inputs(seed=7)
    torch.testing.assert_close(SelectiveScan("auto")(**x), selective_scan_reference(**x), rtol=1e-4, atol=1e-4)
    y = _ssd_inputs(seed=8)
    torch.testing.assert_close(SSDScan("auto", chunk_size=8)(**y), ssd_scan_reference(**y), rtol=1e-4, atol=1e-4)


def test_bad_shapes_raise_clear_error():
    x = _inputs()
    x["B"] = x["B"][:, :, :-1]
    with pytest.raises(InputError, match="B must be"):
        selective_scan_reference(**x)


def _dependence(fn, x, i):
    """Which input positions output position i depends on (by gradient)."""
    x = x.detach().clone().requires_grad_(True)
    fn(x)[:, i].sum().backward()
    return x.grad.abs().sum(dim=(0, 2)) > 0


@pytest.mark.parametrize("mixer", ["mamba1", "mamba2"])
def test_bidirectional_block_causality(mixer):
    torch.manual_seed(0)
    block = BiMambaBlock(8, d_state=4, backend="torch", mixer=mixer, head_dim=4)
    x = torch.randn(2, 10, 8)
    h = block.norm(x).detach()
    assert block(x).shape == x.shape
    i = 4
    fwd = _dependence(block.forward_scan, h, i)
    bwd = _dependence(block.backward_scan, h, i)
    both = _dependence(block, x, i)
    assert fwd[: i + 1].all() and not fwd[i + 1:].any()  # forward scan: only inputs <= i
    assert bwd[i:].all() and not bwd[:i].any()  # reverse scan: only inputs >= i
    assert both.all()  # the block sees the whole sequence
    # perturbation check of the same fact, no autograd involved
    x2 = h.clone()
    x2[:, i + 1:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(block.forward_scan(h)[:, : i + 1], block.forward_scan(x2)[:, : i + 1])
        assert not torch.allclose(block.backward_scan(h)[:, : i + 1], block.backward_scan(x2)[:, : i + 1])


@pytest.mark.gpu
def test_cuda_kernels_match_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("mamba_ssm")
    from avatarsync.interpolation.scan import selective_scan_cuda, ssd_scan_cuda

    cuda = lambda d: {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in d.items()}  # noqa: E731
    x = _inputs(b=2, d=64, n=16, L=257, seed=11)
    torch.testing.assert_close(selective_scan_cuda(**cuda(x)).cpu(), selective_scan_reference(**x), rtol=1e-3, atol=1e-3)
    y = _ssd_inputs(b=2, L=200, h=4, p=32, g=1, n=16, seed=12)
    torch.testing.assert_close(ssd_scan_cuda(**cuda(y), chunk_size=64).cpu(), ssd_scan_reference(**y), rtol=1e-3, atol=1e-3)
    for mixer in (MambaMixer(32, d_state=8, backend="reference"), Mamba2Mixer(32, d_state=16, head_dim=16, backend="reference")):
        seq = torch.randn(2, 40, 32)
        with torch.no_grad():
            want = mixer.eval()(seq)
            set_backend(mixer.cuda(), "cuda")
            torch.testing.assert_close(mixer(seq.cuda()).cpu(), want, rtol=1e-3, atol=1e-3)
