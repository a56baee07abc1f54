#!/usr/bin/env bash
# Real-data runs for the closing notes: m46 on ../shared/data/rsna-128 (12,611 radiographs,
# 128×128, whole image) with the recipe optimiser (Adam 2e-5, betas 0.5/0.999, batch 8,
# fold 10 of 10 held out), comparing the recipe, sex as an input, and percentile
# normalisation; then each best checkpoint is scored on the validation fold again after
# squeezing intensities into 100–180 (a washed-out scanner).
#   scripts/real_data_runs.sh [EPOCHS] [OUT]
set -euo pipefail
epochs=${1:-1}
out=${2:-runs/rsna-128}
data=../shared/data/rsna-128
bin=target/release/bone-age
common=(--config configs/recipe.toml --set preprocess.whole_image=true --set preprocess.scale=1.0)
declare -A variants=(
  [recipe]=""
  [sex-input]="--set model.sex_input=true"
  [percentile]="--set preprocess.normalize={method=\"percentile\",low=1.0,high=99.0}"
)
for name in recipe sex-input percentile; do
  # A run that exists is continued with its saved config, extended to EPOCHS.
  if [ -f "$out/$name/last.safetensors" ]; then
    BONE_AGE_PROGRESS=0 $bin train --out "$out/$name" --resume --data-dir $data --epochs "$epochs"
  else
    # shellcheck disable=SC2086
    BONE_AGE_PROGRESS=0 $bin "${common[@]}" ${variants[$name]} train --data-dir $data --out "$out/$name" --epochs "$epochs"
  fi
  for squeeze in "" "100,180"; do
    $bin "${common[@]}" evaluate --checkpoint "$out/$name/best.safetensors" --validation --data-dir $data \
      ${squeeze:+--squeeze $squeeze} --out "$out/$name/eval${squeeze:+-squeezed}" --json
  done
done
