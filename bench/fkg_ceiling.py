"""What can a keyframe know? The best guess of its mouth openness from what the model is given.

    python bench/fkg_ceiling.py --config recipes/fkg_default.yaml [--split test]

For every keyframe of the training clips (the recipe's corpus and
``data.extra_corpora``, read from their FKG token caches), the truth openness
of the mouth at the keyframe is grouped by a key: the unit's viseme, its
duration bin, its neighbours. Each held-out keyframe is then predicted by the
median of its key's group (its viseme's median when the key was never seen in
training), and the table prints how often that guess is within the tolerance
of ``eval.openness_tol`` (the same tolerance as the FKG's ``mouth_open_acc``).
The "viseme + duration" row is all the one-to-one mask lets a keyframe see;
rows with neighbours show what coarticulation adds (``unit_context``).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

Row = tuple[str, int, str, str, float]  # viseme, duration bin, previous viseme, next viseme, truth openness


def keyframe_rows(cache: Path, split: str, edges: np.ndarray) -> list[Row]:
    from avatarsync.fkg.data import read_cache_index

    out: list[Row] = []
    for clip in read_cache_index(cache)["clips"]:
        if clip["split"] != split:
            continue
        with np.load(cache / "clips" / f"{clip['clip_id']}.npz") as z:
            openness = z["openness"]
        vis = clip["visemes"]
        for i, (v, d, k) in enumerate(zip(vis, clip["durations"], clip["key_frames"])):
            prev = vis[i - 1] if i > 0 else "<pad>"
            nxt = vis[i + 1] if i + 1 < len(vis) else "<pad>"
            out.append((v, int(np.searchsorted(edges, d)), prev, nxt, float(openness[k])))
    return out


def accuracy(train: list[Row], test: list[Row], key: Callable[[Row], tuple], tol: float) -> float:
    groups: dict[tuple, list[float]] = defaultdict(list)
    by_viseme: dict[str, list[float]] = defaultdict(list)
    for r in train:
        groups[key(r)].append(r[4])
        by_viseme[r[0]].append(r[4])
    medians = {k: float(np.median(v)) for k, v in groups.items()}
    fallback = {k: float(np.median(v)) for k, v in by_viseme.items()}
    hits = [abs(medians.get(key(r), fallback.get(r[0], 0.0)) - r[4]) <= tol for r in test]
    return float(np.mean(hits))


def main() -> None:
    from avatarsync.fkg.vocab import DEFAULT_DURATION_EDGES
    from avatarsync.train.registry import load_recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/fkg_default.yaml", help="fkg recipe (its corpora's token caches)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted recipe overrides")
    p.add_argument("--split", default="test", choices=["val", "test"], help="held-out split to score")
    args = p.parse_args()

    cfg, _ = load_recipe("fkg", args.config, args.overrides)
    main_cache = Path(cfg.data.token_cache or Path(cfg.data.corpus) / "fkg_token_cache")
    caches = [main_cache, *(Path(c) / "fkg_token_cache" for c in cfg.data.extra_corpora)]
    edges = np.asarray(cfg.duration_edges or DEFAULT_DURATION_EDGES)
    train = [r for c in caches for r in keyframe_rows(c, "train", edges)]
    test = keyframe_rows(main_cache, args.split, edges)
    tol = cfg.eval.openness_tol
    keys: dict[str, Callable[[Row], tuple]] = {
        "viseme": lambda r: (r[0],),
        "viseme + duration (one-to-one)": lambda r: (r[0], r[1]),
        "viseme + neighbours": lambda r: (r[0], r[2], r[3]),
        "viseme + duration + neighbours": lambda r: (r[0], r[1], r[2], r[3]),
    }
    print(f"truth openness at {len(test)} {args.split} keyframes guessed from {len(train)} training keyframes, "
          f"within {tol}")
    print("| key | open acc |")
    print("|---|---|")
    for name, key in keys.items():
        print(f"| {name} | {accuracy(train, test, key, tol):.3f} |")


if __name__ == "__main__":
    main()
