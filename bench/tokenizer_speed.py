"""Tokenizer speed: encode and decode milliseconds per frame (default 128 px, CPU).

    python bench/tokenizer_speed.py                          # the `small` preset, random weights
    python bench/tokenizer_speed.py --checkpoint runs/tokenizer/final --threads 2
    python bench/tokenizer_speed.py --size base --batch 1 8

Speed does not depend on the weights, so random weights measure a trained
model of the same config too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avatarsync.tokenizers import TokenizerConfig, VisualTokenizer


def time_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="tokenizer folder (config.yaml + model.safetensors)")
    p.add_argument("--size", default="small", choices=["tiny", "small", "base"], help="preset when no checkpoint")
    p.add_argument("--bits", type=int, default=14, help="codebook bits when no checkpoint")
    p.add_argument("--reference", action="store_true",
                   help="reference-conditioned decoder when no checkpoint (the default recipe's layout)")
    p.add_argument("--image", type=int, default=128, help="image side in pixels")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        tok = VisualTokenizer.from_pretrained(args.checkpoint, args.device)
        name = args.checkpoint
    else:
        torch.manual_seed(0)
        tok = VisualTokenizer(TokenizerConfig(size=args.size, codebook_bits=args.bits,
                                                  reference=args.reference)).to(args.device).eval()
        name = f"{args.size} (random weights)"
    params = sum(t.numel() for t in tok.parameters()) / 1e6
    h, w = tok.grid_size(args.image)
    print(f"tokenizer {name}: {params:.2f}M parameters, {args.image} px -> {h}x{w} tokens, "
          f"codebook {tok.codebook_size}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'batch':>5} | {'encode ms/frame':>15} | {'decode ms/frame':>15} | {'round trip fps':>14}")
    print("-" * 60)
    with torch.inference_mode():
        ref = None
        if tok.needs_reference:  # computed once per portrait, as the pipeline does
            portrait = torch.rand(1, 3, args.image, args.image, device=args.device) * 2 - 1
            ref_ms = time_ms(lambda: tok.reference_features(portrait), args.repeats)
            ref = tok.reference_features(portrait)
            print(f"reference features (once per portrait): {ref_ms:.1f} ms")
        for b in args.batch:
            x = torch.rand(b, 3, args.image, args.image, device=args.device) * 2 - 1
            ids = tok.encode(x)
            enc = time_ms(lambda: tok.encode(x), args.repeats) / b
            dec = time_ms(lambda: tok.decode(ids, reference=ref), args.repeats) / b
            print(f"{b:>5} | {enc:>15.1f} | {dec:>15.1f} | {1000 / (enc + dec):>14.1f}")


if __name__ == "__main__":
    main()
