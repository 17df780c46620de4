"""Attention-mask ablation (paper Table 2): train and evaluate the four Text-Frame mask variants.

    # full run on the procedural corpus with a trained tokenizer (hours on CPU; use a GPU recipe there)
    python bench/mask_ablation.py --config recipes/fkg_small.yaml train.steps=2000
    # evaluate models trained earlier (OUT/<variant>/final)
    python bench/mask_ablation.py --config recipes/fkg_small.yaml --eval-only
    # evaluate one trained model (e.g. the bundled default) on the held-out split, no training
    python bench/mask_ablation.py --config recipes/fkg_default.yaml --model runs/fkg/final
    # seconds-long check of the script itself on toy data with a fake tokenizer
    python bench/mask_ablation.py --smoke

Each variant trains with the recipe plus ``mask=<variant>`` and
``train.out_dir=OUT/<variant>``; all are evaluated on the same held-out
split (unseen identities and sentences) by greedy parallel decoding, and the
table prints keyframe PSNR / SSIM against the real frames, the mouth state
measured from the generated pixels, and teacher-forced code accuracy, with the
still reference image as the baseline row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

VARIANTS = ("global", "accumulative", "window", "one_to_one")
COLUMNS = (("kf_psnr", "PSNR"), ("kf_ssim", "SSIM"), ("mouth_viseme_acc", "viseme acc"),
           ("mouth_open_acc", "open acc"), ("mouth_open_px_acc", "open acc (px)"), ("gen_code_acc", "code acc (gen)"),
           ("acc", "code acc (TF)"), ("gen_aperture_acc", "plan acc (gen)"))


def evaluate_split(task, model, device: torch.device, batch_size: int = 4) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from avatarsync.train.loop import to_device

    loader = DataLoader(task.val_dataset(), batch_size=batch_size, shuffle=False, collate_fn=task.collate)
    batches = [to_device(b, device) for b in loader]
    model.eval()
    return task.evaluate(model, batches)


def print_table(rows: dict[str, dict[str, float]]) -> None:
    from avatarsync.fkg.masks import VARIANT_TITLES

    head = "| ID | Setting | " + " | ".join(title for _, title in COLUMNS) + " |"
    print(head)
    print("|" + "---|" * (2 + len(COLUMNS)))
    for i, (variant, m) in enumerate(rows.items(), 1):
        cells = [f"{m[k]:.4f}" if k in m else "-" for k, _ in COLUMNS]
        print(f"| {i} | {VARIANT_TITLES.get(variant, variant)} | " + " | ".join(cells) + " |")
    any_row = next(iter(rows.values()), {})
    if "still_psnr" in any_row:
        still = [any_row.get("still_" + k.removeprefix("kf_")) for k, _ in COLUMNS]
        cells = [f"{v:.4f}" if v is not None else "-" for v in still]
        print("| - | Still reference (baseline) | " + " | ".join(cells) + " |")


def run_recipe(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from avatarsync.fkg.model import FKGModel
    from avatarsync.fkg.task import FKGTask
    from avatarsync.device import resolve_device
    from avatarsync.train.loop import fit
    from avatarsync.train.registry import load_recipe

    rows = {}
    if args.model:
        task_cfg, train_cfg = load_recipe("fkg", args.config, [*args.overrides, f"data.val_split={args.split}",
                                                              f"eval.max_utterances={args.max_utterances or 10**9}"])
        task_cfg.init_from = args.model  # batches laid out as the model reads them (window, context, plan)
        device = resolve_device(train_cfg.device)
        rows[task_cfg.mask] = evaluate_split(FKGTask(task_cfg), FKGModel.from_pretrained(args.model, device), device)
        return rows
    for variant in args.variants:
        overrides = [*args.overrides, f"mask={variant}", f"train.out_dir={Path(args.out) / variant}",
                     f"data.val_split={args.split}", f"eval.max_utterances={args.max_utterances or 10**9}"]
        task_cfg, train_cfg = load_recipe("fkg", args.config, overrides)
        task = FKGTask(task_cfg)
        if not args.eval_only:
            print(f"== training {variant} ({train_cfg.steps} steps) -> {train_cfg.out_dir}", file=sys.stderr)
            fit(task, train_cfg, task_config=task_cfg, progress=not args.quiet)
        device = resolve_device(train_cfg.device)
        model = FKGModel.from_pretrained(Path(train_cfg.out_dir) / "final", device)
        rows[variant] = evaluate_split(task, model, device)
        print(f"== {variant}: {rows[variant]}", file=sys.stderr)
    return rows


def run_smoke(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Toy units -> patterns with a fake tokenizer: checks the script end to end in seconds."""
    import numpy as np

    from avatarsync.fkg.fakes import FakeTokenizer, toy_examples
    from avatarsync.fkg.task import FKGConfig, FKGTask

    tok = FakeTokenizer()

    def with_pixels(exs):
        for ex in exs:
            dec = tok.decode(torch.as_tensor(np.concatenate([ex.ref_codes[None], ex.key_codes])))
            pix = ((dec + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
            ex.ref_pixels, ex.key_pixels = pix[0], pix[1:]
        return exs

    units = list("abcdef")
    train = with_pixels(toy_examples(128, units, codebook_size=tok.codebook_size, seed=0))
    val = with_pixels(toy_examples(8, units, codebook_size=tok.codebook_size, seed=1))
    rows = {}
    for variant in args.variants:
        cfg = FKGConfig(size="tiny", mask=variant)
        cfg.eval.max_utterances = 8
        task = FKGTask(cfg, train_examples=train, val_examples=val, tokenizer=tok)
        torch.manual_seed(0)
        model = task.build_model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        ds = task.train_dataset()
        g = torch.Generator().manual_seed(0)
        for _ in range(40):
            loss, _ = task.compute_loss(model, task.collate([ds[int(i)] for i in torch.randint(0, len(ds), (8,),
                                                                                              generator=g)]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        rows[variant] = evaluate_split(task, model, torch.device("cpu"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/fkg_small.yaml", help="fkg recipe shared by all variants")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted recipe overrides for every variant")
    p.add_argument("--out", default="runs/mask_ablation", help="folder for the four runs")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--split", default="test", choices=["val", "test"], help="held-out split to evaluate")
    p.add_argument("--max-utterances", type=int, default=32,
                   help="chunks (of at most data.max_units units) decoded per variant; 0 = the whole split. The "
                        "test split's first 100 chunks are 13 of its 50 clips")
    p.add_argument("--eval-only", action="store_true", help="evaluate OUT/<variant>/final without training")
    p.add_argument("--model", help="evaluate this one trained FKG folder (the recipe's mask), no training")
    p.add_argument("--smoke", action="store_true", help="toy data + fake tokenizer, a few seconds")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    rows = run_smoke(args) if args.smoke else run_recipe(args)
    print_table(rows)


if __name__ == "__main__":
    main()
