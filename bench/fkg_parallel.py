"""Keyframes per second: all keyframes of an utterance decoded as one batch vs one at a time.

    python bench/fkg_parallel.py                       # small model, 20 keyframes, 16x16 grid, 2^14 codes
    python bench/fkg_parallel.py --size base --device cuda

Both modes share the reference prefix computed once (generate.py), so the
ratio measures the parallel decoding itself. The model is randomly
initialised (speed does not depend on the weights); greedy decoding, and the
two modes must produce identical codes.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help="model size: tiny | small | base | large")
    p.add_argument("--keyframes", type=int, default=20, help="keyframes in the utterance")
    p.add_argument("--grid", type=int, default=16, help="token grid side (128 px / 8)")
    p.add_argument("--codebook", type=int, default=2 ** 14, help="visual codebook size")
    p.add_argument("--mask", default="one_to_one", help="attention mask variant")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="fast", choices=["fast", "reference"],
                   help="decoding loop for the batch-vs-single comparison")
    args = p.parse_args()

    from avatarsync.fkg.generate import generate_keyframes
    from avatarsync.fkg.model import FKGModel
    from avatarsync.fkg.vocab import FKGVocab

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    vocab = FKGVocab(units=[f"u{i}" for i in range(40)], codebook_size=args.codebook)
    model = FKGModel(vocab, args.size, args.mask).to(device, getattr(torch, args.dtype)).eval()
    n = args.keyframes
    g = torch.Generator().manual_seed(args.seed)
    ref = torch.randint(0, args.codebook, (args.grid, args.grid), generator=g)
    units = torch.randint(vocab.unit_offset, vocab.unit_offset + 40, (n,), generator=g)
    durs = vocab.duration_offset + torch.randint(0, vocab.n_duration_bins, (n,), generator=g)

    def run(batch_size: int | None, engine: str = args.engine) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        codes = generate_keyframes(model, ref, units, durs, batch_size=batch_size, engine=engine).codes
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, codes

    generate_keyframes(model, ref, units[:2], durs[:2])  # warm-up
    t_batch, c_batch = run(None)
    t_single, c_single = run(1)
    other = "reference" if args.engine == "fast" else "fast"
    t_other, c_other = run(None, other)
    same = torch.equal(c_batch, c_single)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"FKG parallel decoding: size={args.size} ({params:.1f} M params), {n} keyframes of "
          f"{args.grid}x{args.grid} tokens, codebook {args.codebook} (digits {vocab.factors}), mask={args.mask}, "
          f"device={args.device}, dtype={args.dtype}, threads={args.threads}, engine={args.engine}")
    print()
    print("| mode           | keyframes | seconds | keyframes/s |")
    print("|----------------|----------:|--------:|------------:|")
    print(f"| one batch      | {n:9d} | {t_batch:7.2f} | {n / t_batch:11.3f} |")
    print(f"| one at a time  | {n:9d} | {t_single:7.2f} | {n / t_single:11.3f} |")
    print()
    print(f"speed-up at {n} keyframes: {t_single / t_batch:.2f}x (goal >= 5x); identical codes: {'yes' if same else 'NO'}")
    print(f"one batch with the {other} engine: {t_other:.2f} s; {args.engine} / {other} speed-up "
          f"{t_other / t_batch:.2f}x; identical codes: {'yes' if torch.equal(c_batch, c_other) else 'NO'}")


if __name__ == "__main__":
    main()
