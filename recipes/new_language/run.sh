#!/usr/bin/env bash
# New-language recipe: French (espeak-ng voice `fr`) for the shipped bundle (docs/new_language.md).
#   1. corpora: the procedural corpus spoken in French (G2P and timings from espeak-ng, phones -> PVM
#      visemes), plus English and Mandarin clips to rehearse, all of faces the bundle never saw;
#      then the clips used: the first N of each split (French 400 train / 20 val / 60 test, English
#      and Mandarin 150 train / 30 test each), in $OUT/m, so tokenizing and scoring fit the budget;
#   2. the shipped keyframe model scored on each language's held-out clips ("before"; this also
#      tokenizes the clips with the bundle's tokenizer);
#   3. the keyframe model fine-tuned from the bundle's on French + English + Mandarin training clips;
#   4. the fine-tune scored the same way ("after"), the table printed ($OUT/m/table.md);
#   5. a bundle: the shipped one with the new keyframe model, pipeline.yaml `languages: [en, zh, fr]`.
# Each step is skipped when its output exists and training resumes from its checkpoints.
# Environment: OUT (default runs/new_language), BUNDLE (the bundle to start from, default
# avatarsync/assets/default), PY (python of the venv), TINY=1 (a check of the recipe's plumbing: a
# few clips, a few steps; its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
A=${AVATARSYNC:-$(dirname "$PY")/avatarsync}
OUT=${OUT:-runs/new_language}
BUNDLE=${BUNDLE:-avatarsync/assets/default}
CFG=recipes/new_language/fkg_fr_finetune.yaml
M=$OUT/m
mkdir -p "$M"
if [ "${TINY:-0}" = 1 ]; then
  FR=(--clips 12 --identities 6) EN=(--clips 6 --identities 3) ZH=(--clips 6 --identities 3)
  TRAIN=(train.steps=4 train.eval_every=4 train.save_every=4 train.log_every=2 train.warmup_steps=1
         eval.max_utterances=1)
else
  FR=(--clips 1000 --identities 500) EN=(--clips 500 --identities 250) ZH=(--clips 500 --identities 250)
  TRAIN=()
fi
SYNTH=(--split-seed 0 --no-video --workers 2 --quiet)
t0=$(date +%s)
[ -f "$OUT/corpus_fr/manifest.jsonl" ] || $A synth-data --out "$OUT/corpus_fr" "${FR[@]}" --seed 0 --identity-offset 10000 --lang fr "${SYNTH[@]}"
[ -f "$OUT/corpus_en/manifest.jsonl" ] || $A synth-data --out "$OUT/corpus_en" "${EN[@]}" --seed 5 --identity-offset 11000 --lang en "${SYNTH[@]}"
[ -f "$OUT/corpus_zh/manifest.jsonl" ] || $A synth-data --out "$OUT/corpus_zh" "${ZH[@]}" --seed 5 --identity-offset 12000 --lang zh "${SYNTH[@]}"
# the clips used: the first N of each split of each corpus (a manifest of them beside a link to the clips)
$PY - "$OUT" <<'PYEOF'
import json, os, sys
from pathlib import Path

out = Path(sys.argv[1])
want = {"fr": {"train": 400, "val": 20, "test": 60}, "en": {"train": 150, "test": 30}, "zh": {"train": 150, "test": 30}}
for lang, counts in want.items():
    src, dst = out / f"corpus_{lang}", out / "m" / f"corpus_{lang}"
    dst.mkdir(parents=True, exist_ok=True)
    keep, seen = [], {}
    for line in (src / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        if seen.get(e["split"], 0) < counts.get(e["split"], 0):
            keep.append(e)
            seen[e["split"]] = seen.get(e["split"], 0) + 1
    (dst / "manifest.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in keep), encoding="utf-8")
    (dst / "corpus.json").write_text((src / "corpus.json").read_text())
    if not (dst / "clips").exists():
        os.symlink((src / "clips").resolve(), dst / "clips")
    print(f"{dst}: {seen}")
PYEOF
echo "corpora: $(( $(date +%s) - t0 )) s"
SCORE=($PY bench/new_language.py --config "$CFG" --split test --results "$M/eval.json"
       --corpus "fr=$M/corpus_fr" --corpus "en=$M/corpus_en" --corpus "zh=$M/corpus_zh")
"${SCORE[@]}" --model "bundle=$BUNDLE/fkg" data.tokenizer="$BUNDLE/tokenizer"
echo "before scored: $(( $(date +%s) - t0 )) s"
[ -f "$M/fkg_fr/final/model.safetensors" ] || $A train fkg --config "$CFG" --quiet \
  data.corpus="$M/corpus_fr" data.token_cache="$M/corpus_fr/fkg_token_cache" \
  "data.extra_corpora=[$M/corpus_en, $M/corpus_zh]" init_from="$BUNDLE/fkg" \
  data.tokenizer="$BUNDLE/tokenizer" train.out_dir="$M/fkg_fr" "${TRAIN[@]}"
echo "fine-tuned: $(( $(date +%s) - t0 )) s"
"${SCORE[@]}" --model "bundle=$BUNDLE/fkg" --model "fr-finetune=$M/fkg_fr/final" data.tokenizer="$BUNDLE/tokenizer" \
  | tee "$M/table.md"
$A bundle --tokenizer "$BUNDLE/tokenizer" --fkg "$M/fkg_fr/final" --interp "$BUNDLE/interp" \
  $( [ -d "$BUNDLE/mouth" ] && echo --mouth "$BUNDLE/mouth" ) --out "$OUT/bundle" \
  --guidance 2 --keyframe-decode expected --paste-region mouth --render auto
# the languages it speaks, and what made it (the shipped bundle's other settings kept)
$PY - "$OUT/bundle" "$BUNDLE" <<'PYEOF'
import sys
from pathlib import Path

import yaml

out, base = Path(sys.argv[1]), Path(sys.argv[2])
info = yaml.safe_load((out / "pipeline.yaml").read_text())
shipped = yaml.safe_load((base / "pipeline.yaml").read_text())
for key in ("fps", "crop_size", "face_scale", "unit_key", "guidance", "keyframe_decode", "paste_region", "render"):
    if key in shipped:
        info[key] = shipped[key]
info["languages"] = ["en", "zh", "fr"]
info["trained_on"] = (f"{base}'s models; keyframe model fine-tuned by recipes/new_language "
                      "(French + English + Mandarin procedural clips)")
(out / "pipeline.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
print(f"{out}/pipeline.yaml: languages {info['languages']}")
PYEOF
echo "done in $(( $(date +%s) - t0 )) s: avatarsync speak --checkpoint $OUT/bundle --lang fr --text \"Bonjour à tous.\" -o bonjour.mp4"
