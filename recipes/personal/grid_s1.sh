#!/usr/bin/env bash
# Personal-avatar recipe on GRID s1 (docs/fine_tune.md): the person's footage is 600 of s1's videos
# (30 minutes), prepared, fine-tuned from the shipped bundle with a 10-minute budget, and the personal
# bundle and the generic shipped one both evaluated on s1 sentences neither saw (the test split of the
# prepared corpus), under the two protocols of `avatarsync evaluate`:
#   --source video        the held-out clip re-spoken with its own speech: its head motion, blinks and
#                         background kept, only the mouth regenerated (how a personal avatar is used:
#                         it drives the person's own footage, the backdrop of its bundle);
#   --source first-frame  the clip's first frame animated as a still photo.
# Each step is skipped when its output exists. Environment: GRID (the GRID folder, default
# ../shared/data/grid), DATA (prepared corpus, default runs/grid_s1), OUT (default runs/personal_s1),
# CLIPS (held-out clips evaluated, default 20), PY (python of the venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
A=${AVATARSYNC:-$(dirname "$PY")/avatarsync}
GRID=${GRID:-../shared/data/grid}
DATA=${DATA:-runs/grid_s1}
OUT=${OUT:-runs/personal_s1}
CLIPS=${CLIPS:-20}
mkdir -p "$OUT"
t0=$(date +%s)
[ -f "$DATA/manifest.jsonl" ] || $A prepare "$GRID/s1" --out "$DATA" --workers 2 --limit 600
echo "prepared: $(( $(date +%s) - t0 )) s"
[ -f "$OUT/bundle/pipeline.yaml" ] || $A train personal --corpus "$DATA" --out "$OUT/bundle" --minutes 10
echo "fine-tuned: $(( $(date +%s) - t0 )) s"
for source in video first-frame; do
  for who in personal generic; do
    json="$OUT/eval_${who}_${source}.json"
    ckpt=(); [ "$who" = personal ] && ckpt=(--checkpoint "$OUT/bundle")
    [ -f "$json" ] || $A evaluate --data "$DATA" --split test --max-clips "$CLIPS" --source "$source" \
      "${ckpt[@]}" --json "$json" --quiet | tee "$OUT/eval_${who}_${source}.txt"
  done
done
echo "done in $(( $(date +%s) - t0 )) s; figures in $OUT/eval_*.json"
