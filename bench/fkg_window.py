"""How much of a keyframe must the keyframe model generate? Frame windows scored on real codes.

    python bench/fkg_window.py --config recipes/fkg_default.yaml data.tokenizer=runs/tokenizer/final
    python bench/fkg_window.py --config recipes/fkg_default.yaml --split test --max-utterances 24 ...

A keyframe model with a frame window (``frame_window`` in the fkg recipe)
generates only the token cells inside it and keeps the reference image's codes
everywhere else. This script measures the best such a model could do: for each
window it takes the ground-truth codes of every held-out keyframe, replaces the
cells outside the window by the reference's codes, decodes them with the
tokenizer, and scores them exactly as `avatarsync train fkg` scores generated
keyframes (PSNR / SSIM against the real frames, mouth state measured from the
pixels). The ``full`` row is the tokenizer's own ceiling; ``cells`` is the
number of sequential decoding steps per keyframe.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

WINDOWS = {
    "full": [],
    "lower half": [0.0, 0.5, 1.0, 1.0],
    "lower face": [0.1875, 0.5, 0.8125, 1.0],
    "mouth + chin": [0.25, 0.5625, 0.75, 0.9375],
    "mouth box": [0.3, 0.58, 0.7, 0.88],
}
COLUMNS = (("kf_psnr", "PSNR"), ("kf_ssim", "SSIM"), ("mouth_viseme_acc", "viseme acc"),
           ("mouth_open_acc", "open acc"), ("mouth_open_px_acc", "open acc (px)"))


def main() -> None:
    from torch.utils.data import DataLoader

    from avatarsync.fkg.layout import crop_window, paste_window, window_grid
    from avatarsync.fkg.task import FKGTask
    from avatarsync.device import resolve_device
    from avatarsync.train.loop import to_device
    from avatarsync.train.registry import load_recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/fkg_default.yaml", help="fkg recipe (data, tokenizer, eval)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted recipe overrides")
    p.add_argument("--split", default="val", choices=["val", "test"], help="held-out split to score")
    p.add_argument("--max-utterances", type=int, default=24, help="utterances scored")
    args = p.parse_args()

    task_cfg, train_cfg = load_recipe("fkg", args.config, [*args.overrides, "frame_window=[]",
                                                          f"data.val_split={args.split}",
                                                          f"eval.max_utterances={args.max_utterances}"])
    device = resolve_device(train_cfg.device)
    task = FKGTask(task_cfg)
    loader = DataLoader(task.val_dataset(), batch_size=4, shuffle=False, collate_fn=task.collate)
    batches = [to_device(b, device) for b in loader]
    grid = tuple(int(x) for x in batches[0]["ref_grid"])

    rows: dict[str, dict[str, float]] = {}
    for name, box in WINDOWS.items():
        sums: dict[str, list[float]] = {}

        def add(key: str, values) -> None:
            sums.setdefault(key, []).extend(np.atleast_1d(np.asarray(values, dtype=np.float64)).tolist())

        def oracle(part: dict[str, torch.Tensor], box=box) -> torch.Tensor:
            return paste_window(part["ref_codes"], crop_window(part["full_codes"], box), box).to(device)

        task.evaluate_codes(batches, oracle, add, device)
        rows[name] = {k: float(np.mean(v)) for k, v in sums.items()}
        fh, fw = window_grid(grid, box)
        rows[name]["cells"] = fh * fw
        rows[name]["box"] = f"{fh}x{fw}"
        print(f"== {name}: {rows[name]}", file=sys.stderr)

    n = len(sums.get("kf_psnr", []))
    print(f"ground-truth codes outside each window replaced by the reference's; {args.split} split, "
          f"{n} keyframes, grid {grid[0]}x{grid[1]}")
    print("| window | cells | " + " | ".join(t for _, t in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, m in rows.items():
        print(f"| {name} ({m['box']}) | {m['cells']} | " + " | ".join(f"{m[k]:.4f}" if k in m else "-"
                                                             for k, _ in COLUMNS) + " |")
    any_row = next(iter(rows.values()))
    still = [any_row.get("still_" + k.removeprefix("kf_")) for k, _ in COLUMNS]
    print("| still reference | 0 | " + " | ".join(f"{v:.4f}" if v is not None else "-" for v in still) + " |")


if __name__ == "__main__":
    main()
