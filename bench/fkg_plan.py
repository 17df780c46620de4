"""Does the mouth-aperture plan steer the mouth? A keyframe model with ``aperture_bins``
decoded with its own plan, with the true bins, and with one forced bin for every keyframe.

    python bench/fkg_plan.py --model avatarsync/assets/default/fkg --split test \
        data.tokenizer=runs/tokenizer/final eval.guidance=2 eval.keyframe_decode=expected

Each row scores the split's keyframes (``--max-utterances 0`` = all of them):
openness accuracy, the mean measured-minus-true openness (below 0: mouths too
closed), PSNR, and how often the bins followed are the true ones. The forced
rows show how far the plan alone moves the measured openness; the true-bin row
bounds what a better plan predictor could give. The last three columns split
the misses: is the plan's bin centre within the openness tolerance of the
truth, is the drawn mouth within it of the plan's centre, and by how much the
drawn mouth is more closed (below 0) than its plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMNS = (("mouth_open_acc", "open acc"), ("mouth_open_bias", "open bias"), ("kf_psnr", "PSNR"),
           ("gen_aperture_acc", "plan = truth"), ("gen_aperture_near_acc", "plan within 1 bin"),
           ("plan_open_acc", "plan centre within tol"), ("mouth_plan_acc", "mouth within tol of plan"),
           ("mouth_plan_bias", "mouth - plan"))


def main() -> None:
    from mask_ablation import evaluate_split

    from avatarsync.fkg.model import FKGModel
    from avatarsync.fkg.task import FKGTask
    from avatarsync.device import resolve_device
    from avatarsync.train.registry import load_recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="FKG model folder with an aperture plan")
    p.add_argument("--config", default="recipes/fkg_default.yaml", help="fkg recipe naming the corpus and cache")
    p.add_argument("--split", default="test", choices=["val", "test"], help="held-out split to score")
    p.add_argument("--max-utterances", type=int, default=0, help="chunks decoded per row; 0 = the whole split")
    p.add_argument("--forced", help="comma-separated bins to force, e.g. 0,9 (default: lowest, a third, two "
                                    "thirds and top bin)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted recipe overrides")
    args = p.parse_args()

    base = [*args.overrides, f"data.val_split={args.split}", f"eval.max_utterances={args.max_utterances or 10**9}"]
    probe, train_cfg = load_recipe("fkg", args.config, base)
    device = resolve_device(train_cfg.device)
    model = FKGModel.from_pretrained(args.model, device)
    bins = model.aperture_bins
    if not bins:
        p.error(f"{args.model} has no aperture plan (aperture_bins: 0)")
    forced = ([int(b) for b in args.forced.split(",") if b.strip()] if args.forced is not None
              else sorted({0, bins // 3, 2 * bins // 3, bins - 1}))
    settings = [("own plan", []), ("true bins", ["eval.oracle_aperture=true"]),
                *((f"every keyframe bin {b}", [f"eval.force_aperture={b}"]) for b in forced)]
    print(f"{args.model}: {bins} bins, {args.split} split, guidance {probe.eval.guidance}")
    print("| plan | " + " | ".join(t for _, t in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for name, extra in settings:
        cfg, _ = load_recipe("fkg", args.config, [*base, *extra])
        cfg.init_from = args.model  # batches laid out as the model reads them
        m = evaluate_split(FKGTask(cfg), model, device)
        cells = [f"{m[k]:+.3f}" if k == "mouth_open_bias" else f"{m[k]:.3f}" if k in m else "-" for k, _ in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
