"""Interpolation time against sequence length: bidirectional Mamba vs attention of equal width.

Both models are the same ``MambaInterpolator`` (embeddings, phone tokens,
readout); only the sequence mixer differs: ``n_layers`` BiMambaBlocks, or as
many pre-norm transformer layers of the same width (~equal parameters). The
sequence is 2 h w interleaved keyframe tokens + 2 x max_phones phone tokens;
the grid grows to lengthen it. Prints a table with the growth factor per
doubling of the length (2 = linear, 4 = quadratic) and the fitted exponent.

    python bench/interp_scaling.py [--max-len 4096] [--batch 1] [--device cpu] [--train]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn

from avatarsync.interpolation.mamba import attention_block
from avatarsync.interpolation.model import InterpModelConfig, MambaInterpolator

GRIDS = [(8, 8), (16, 8), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64), (128, 64)]


def build(kind: str, cfg: InterpModelConfig) -> nn.Module:
    model = MambaInterpolator(cfg)
    if kind == "attention":
        model.blocks = nn.ModuleList(attention_block(cfg.d_model) for _ in range(cfg.n_layers))
        model.cfg.transpose_alternate = False
    return model


def time_call(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-len", type=int, default=4096, help="longest sequence (tokens) to time")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train", action="store_true", help="time forward + backward instead of inference")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    cfg = InterpModelConfig(latent_channels=args.channels, d_model=args.d_model, n_layers=args.layers,
                            head_dim=min(32, 2 * args.d_model), max_phones=8)
    models = {k: build(k, cfg).to(dev) for k in ("mamba", "attention")}
    params = {k: sum(p.numel() for p in m.blocks.parameters()) for k, m in models.items()}
    print(f"# device={dev} batch={args.batch} d_model={args.d_model} layers={args.layers} "
          f"mode={'train (fwd+bwd)' if args.train else 'inference'}")
    print(f"# mixer parameters: mamba {params['mamba']:,}  attention {params['attention']:,}")
    print(f"{'tokens':>7} {'grid':>7} {'mamba ms':>10} {'x/doubling':>10} {'attn ms':>10} {'x/doubling':>10} {'attn/mamba':>10}")
    rows = []
    prev: dict[str, float] = {}
    for h, w in GRIDS:
        length = 2 * h * w + 2 * cfg.max_phones
        if length > args.max_len + 2 * cfg.max_phones:
            break
        g = torch.Generator().manual_seed(0)
        x = [torch.randn(args.batch, args.channels, h, w, generator=g).to(dev) for _ in range(2)]
        tau = torch.rand(args.batch).to(dev)
        iv = torch.full((args.batch,), 0.1, device=dev)
        ids = torch.randint(1, 12, (args.batch, 8)).to(dev)
        spans = torch.rand(args.batch, 8, 2).to(dev)
        t = {}
        for k, m in models.items():
            def run(m=m):
                if args.train:
                    m(x[0], x[1], tau, iv, ids, spans).square().mean().backward()
                else:
                    with torch.no_grad():
                        m(x[0], x[1], tau, iv, ids, spans)
            t[k] = time_call(run, args.repeats, sync)
        grow = {k: (t[k] / prev[k] if k in prev else float("nan")) for k in t}
        print(f"{length:>7} {f'{h}x{w}':>7} {1e3 * t['mamba']:>10.1f} {grow['mamba']:>10.2f} "
              f"{1e3 * t['attention']:>10.1f} {grow['attention']:>10.2f} {t['attention'] / t['mamba']:>10.2f}", flush=True)
        rows.append((length, t["mamba"], t["attention"]))
        prev = t
    if len(rows) >= 3:
        tail = rows[-3:]
        for i, k in ((1, "mamba"), (2, "attention")):
            slope = (math.log(tail[-1][i]) - math.log(tail[0][i])) / (math.log(tail[-1][0]) - math.log(tail[0][0]))
            print(f"# {k}: time ~ L^{slope:.2f} over the last three lengths")


if __name__ == "__main__":
    main()
