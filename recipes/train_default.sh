#!/usr/bin/env bash
# Train the bundled default model from scratch on CPU, then bundle it into avatarsync/assets/default.
# Each step is skipped when its model exists and resumes from its checkpoints if interrupted;
# see recipes/default.yaml. About 2.5 hours on 2 CPU cores. The mouth-motion model of the real-photo
# renderer learns from GRID speaker s1 (../shared/data/grid, CC BY 4.0; GRID=DIR to point elsewhere):
# 10 minutes to prepare the footage, 2 to train.
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/avatarsync
[ -f runs/corpus/manifest.jsonl ] || $A synth-data --out runs/corpus --clips 500 --seed 0 --identities 200 --lang en --no-video
[ -f runs/corpus_extra/manifest.jsonl ] || $A synth-data --out runs/corpus_extra --clips 3000 --seed 0 --identities 1500 --identity-offset 200 --train-only --lang en --no-video --workers 2
[ -f runs/corpus_extra2/manifest.jsonl ] || $A synth-data --out runs/corpus_extra2 --clips 3000 --seed 1 --identities 1500 --identity-offset 1700 --train-only --lang en --no-video --workers 2
[ -f runs/corpus_extra3/manifest.jsonl ] || $A synth-data --out runs/corpus_extra3 --clips 3000 --seed 2 --identities 1500 --identity-offset 3200 --train-only --lang en --no-video --workers 2
[ -f runs/tokenizer_plain/final/model.safetensors ] || $A train tokenizer --config recipes/tokenizer_plain.yaml
[ -f runs/fkg/final/model.safetensors ] || $A train fkg --config recipes/fkg_default.yaml
[ -f runs/tokenizer/final/model.safetensors ] || $A train tokenizer --config recipes/tokenizer_default.yaml
[ -f runs/fkg_finetune/final/model.safetensors ] || $A train fkg --config recipes/fkg_default_finetune.yaml
[ -f runs/decoder/final/model.safetensors ] || $A train decoder --config recipes/decoder_default.yaml
[ -f runs/interp/final/model.safetensors ] || $A train interp --config recipes/interp_default.yaml
GRID=${GRID:-../shared/data/grid}
[ -f runs/grid_s1/manifest.jsonl ] || $A prepare "$GRID/s1" --out runs/grid_s1 --workers 2
[ -f runs/mouth_real/final/interior.safetensors ] || $A train mouth --config recipes/mouth_real.yaml
$A bundle --tokenizer runs/decoder/final --fkg runs/fkg_finetune/final --interp runs/interp/final --guidance 2 --keyframe-decode expected --paste-region mouth --mouth runs/mouth_real/final --render auto --out avatarsync/assets/default
