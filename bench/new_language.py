"""Held-out keyframe openness per language, before and after a new-language fine-tune.

Scores keyframe models (``--model NAME=FOLDER``) on the held-out split of one procedural corpus per
language (``--corpus LANG=FOLDER``), decoding every keyframe of the split as ``speak`` does
(guidance and keyframe decode from the recipe: the bundle's 2 / expected), and prints one table:
openness accuracy (the truth mouth openness of each keyframe, within 0.15, measured from the decoded
pixels), the same in pixels, viseme accuracy, keyframe PSNR, and the still portrait's openness
accuracy; then the gain of each model over the first, with a 95% interval from a paired bootstrap
over clips (a clip's keyframes share a face and a sentence, so clips, not keyframes, are the
independent draws).

    python bench/new_language.py --config recipes/new_language/fkg_fr_finetune.yaml \
        --model bundle=avatarsync/assets/default/fkg --model fr=runs/new_language/fkg_fr/final \
        --corpus fr=runs/new_language/corpus_fr --corpus en=runs/new_language/corpus_en \
        --corpus zh=runs/new_language/corpus_zh --split test --results runs/new_language/eval.json

Results are kept per (model, language) in ``--results`` (JSON): a row already there is not scored
again unless its model folder changed (``--rescore`` forces it), so the "before" rows can be scored
before training and the "after" rows later. Corpus token caches are built on first use with the
recipe's ``data.tokenizer`` (in ``<corpus>/fkg_token_cache``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

METRICS = (("mouth_open_acc", "open acc"), ("mouth_open_px_acc", "open acc (px)"),
           ("mouth_viseme_acc", "viseme acc"), ("kf_psnr", "PSNR"), ("still_mouth_open_acc", "still open acc"))


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--{what} takes NAME=FOLDER, got {v!r}")
        out.append((name, path))
    return out


def _stamp(folder: str) -> str:
    files = sorted(Path(folder).glob("*.safetensors"))
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def score(config: str, model_dir: str, corpus: str, split: str, overrides: list[str], max_clips: int = 0) -> dict:
    """Per-clip metrics of one model on one corpus's split: {clip_id: {"n": keyframes, metric: mean}}
    (``max_clips`` > 0: only the split's first that many clips)."""
    import torch
    from torch.utils.data import DataLoader

    from avatarsync.device import resolve_device
    from avatarsync.fkg.model import FKGModel
    from avatarsync.fkg.task import FKGTask
    from avatarsync.train.loop import to_device
    from avatarsync.train.registry import load_recipe

    cache = str(Path(corpus) / "fkg_token_cache")
    cfg, train_cfg = load_recipe("fkg", config, [*overrides, f"data.corpus={corpus}", f"data.token_cache={cache}",
                                                 f"data.val_split={split}", "eval.max_utterances=1000000000"])
    cfg.data.extra_corpora = []  # only the held-out split is read
    cfg.init_from = model_dir  # batches laid out as the model reads them (window, context, plan)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    device = resolve_device(train_cfg.device)
    task = FKGTask(cfg)
    ds = task.val_dataset()
    by_clip: dict[int, list[int]] = {}
    for k, (clip_idx, _, _) in enumerate(ds.items):
        by_clip.setdefault(clip_idx, []).append(k)
    model = FKGModel.from_pretrained(model_dir, device)
    out = {}
    groups = list(by_clip.values())[:max_clips] if max_clips > 0 else list(by_clip.values())
    loader = DataLoader(ds, batch_sampler=groups, collate_fn=task.collate)
    for batch in loader:
        clip_id = batch["clip_ids"][0]
        n = int(batch["n_units"].sum())
        m = task.evaluate(model, [to_device(batch, device)])
        out[clip_id] = {"n": n, **{k: m[k] for k, _ in METRICS if k in m}}
    return out


def summary(clips: dict, metric: str) -> float:
    vals = [(c["n"], c[metric]) for c in clips.values() if metric in c]
    n = sum(w for w, _ in vals)
    return float(sum(w * v for w, v in vals) / n) if n else float("nan")


def paired_gain(before: dict, after: dict, metric: str, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Keyframe-weighted gain after - before and its 95% paired-bootstrap interval over clips."""
    ids = sorted(set(before) & set(after))
    w = np.array([before[i]["n"] for i in ids], float)
    b = np.array([before[i][metric] for i in ids])
    a = np.array([after[i][metric] for i in ids])
    gain = float(np.sum(w * (a - b)) / np.sum(w))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(draws, len(ids)))
    boot = np.sum(w[idx] * (a - b)[idx], 1) / np.sum(w[idx], 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return gain, float(lo), float(hi)


def _cap(spec: str, lang: str) -> int:
    """The clip cap of ``lang`` in a ``--max-clips`` value (``"30"`` or ``"fr=30,en=15"``; 0 = none)."""
    spec = (spec or "").strip()
    if not spec:
        return 0
    if "=" not in spec:
        return int(spec)
    caps = dict(part.split("=", 1) for part in spec.split(",") if part.strip())
    return int(caps.get(lang, 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/new_language/fkg_fr_finetune.yaml",
                   help="fkg recipe: model layout, tokenizer, decoding settings")
    p.add_argument("--model", action="append", required=True, help="NAME=FOLDER of a keyframe model (first: baseline)")
    p.add_argument("--corpus", action="append", required=True, help="LANG=FOLDER of a corpus with a held-out split")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--results", default="runs/new_language/eval.json", help="JSON of the rows scored so far")
    p.add_argument("--rescore", action="store_true", help="score every row again")
    p.add_argument("--only", help="score only these models (comma-separated names); print all known rows")
    p.add_argument("--max-clips", default="", help="score only the first N clips of each split: N, or LANG=N,... "
                                                  "(rows already scored on more clips are kept; the table and the "
                                                  "gains use the clips every model was scored on)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted recipe overrides")
    args = p.parse_args()

    models, corpora = _pairs(args.model, "model"), _pairs(args.corpus, "corpus")
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.is_file() else {}
    only = set(args.only.split(",")) if args.only else None
    for name, folder in models:
        if only is not None and name not in only:
            continue
        for lang, corpus in corpora:
            key = f"{name}/{lang}/{args.split}"
            row = results.get(key)
            cap = _cap(args.max_clips, lang)
            if (row and not args.rescore and row.get("stamp") == _stamp(folder) and row.get("corpus") == corpus
                    and (cap == 0 or len(row["clips"]) >= cap) and (cap > 0 or not row.get("max_clips"))):
                continue
            t0 = time.time()
            clips = score(args.config, folder, corpus, args.split, args.overrides, cap)
            results[key] = {"model": folder, "corpus": corpus, "stamp": _stamp(folder), "clips": clips,
                            "max_clips": cap, "seconds": round(time.time() - t0, 1)}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1))
            print(f"scored {key}: {len(clips)} clips, {sum(c['n'] for c in clips.values())} keyframes, "
                  f"open acc {summary(clips, 'mouth_open_acc'):.3f} ({time.time() - t0:.0f} s)", file=sys.stderr,
                  flush=True)

    print(f"| language | model | clips | keyframes | " + " | ".join(t for _, t in METRICS) + " |")
    print("|---|---|---|---|" + "---|" * len(METRICS))
    for lang, _ in corpora:
        rows = [results.get(f"{name}/{lang}/{args.split}") for name, _ in models]
        common = set.intersection(*[set(r["clips"]) for r in rows if r]) if any(rows) else set()
        for (name, _), row in zip(models, rows):
            if not row:
                continue
            clips = {k: v for k, v in row["clips"].items() if k in common}
            cells = [f"{summary(clips, k):.2f}" if k == "kf_psnr" else f"{summary(clips, k):.3f}" for k, _ in METRICS]
            print(f"| {lang} | {name} | {len(clips)} | {sum(c['n'] for c in clips.values())} | " + " | ".join(cells) + " |")
    base = models[0][0]
    lines = []
    for lang, _ in corpora:
        b = results.get(f"{base}/{lang}/{args.split}")
        for name, _ in models[1:]:
            a = results.get(f"{name}/{lang}/{args.split}")
            if b and a:
                g, lo, hi = paired_gain(b["clips"], a["clips"], "mouth_open_acc")
                lines.append(f"| {lang} | {name} - {base} | {g:+.3f} | [{lo:+.3f}, {hi:+.3f}] |")
    if lines:
        print(f"\n| language | open acc gain | gain | 95% interval (paired bootstrap over clips) |")
        print("|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
