#!/usr/bin/env bash
# The ablation of docs/results.md: m46 on ../shared/data/rsna-128 (12,611 radiographs,
# 128×128, whole image, fold 10 of 10 held out: 11,358 train / 1,253 validation), every row
# from seed 42 for the same EPOCHS. Each row trains (peak RSS from GNU time), then its
# best, last and averaged (ema) checkpoints are scored on the validation fold plainly,
# after `--squeeze 100,180` (a washed-out scanner) and after `--darken 1.5` (darker
# mid-tones), with and without the stored recalibration; the final row also with TTA.
# `python3 scripts/results_table.py OUT` prints the tables.
#   scripts/real_data_runs.sh [EPOCHS] [OUT] [ROW...]      (default: every row, 4 epochs)
# Environment: DATA (another data directory), EXTRA (flags for every row, e.g. other
# folds), CHECKPOINTS (default "best last ema").
set -euo pipefail
epochs=${1:-4}
out=${2:-runs/ablation}
shift $(( $# > 2 ? 2 : $# ))
data=${DATA:-../shared/data/rsna-128}
read -r -a extra_all <<< "${EXTRA:-}"
checkpoints=${CHECKPOINTS:-best last ema}
bin=${BONE_AGE_BIN:-target/release/bone-age}
recipe=(--config configs/recipe.toml --set preprocess.whole_image=true --set preprocess.scale=1.0)
final=(--config configs/rsna-128.toml)
pct='preprocess.normalize={method="percentile",low=1.0,high=99.0}'
declare -A rows=(
  # The paper's recipe, then with percentile normalisation over the image's pixels.
  [recipe]="${recipe[*]}"
  [recipe+percentile]="${recipe[*]} --set $pct"
  # configs/rsna-128.toml, then each ingredient taken out (or changed) alone.
  [final]="${final[*]}"
  [final-ema]="${final[*]} --set train.ema_decay=0.0"
  [final-adamw-clip]="${final[*]} --set train.optimizer=\"adam\" --set train.weight_decay=0.0 --set train.clip_grad_norm=0.0"
  [final-intensity-aug]="${final[*]} --set augment.gamma=[0.8,1.2] --set augment.contrast=0.0 --set augment.brightness=0.0"
  [final-percentile]="${final[*]} --set preprocess.normalize={method=\"none\"}"
  [final+clahe]="${final[*]} --set preprocess.normalize={method=\"clahe\",clip_limit=2.0,tiles=8}"
  [final+sex]="${final[*]} --set model.sex_input=true"
  [final+match]="${final[*]} --set preprocess.normalize={method=\"match\",mean=60.0,sd=60.0}"
  [final-b16-lr6e-4]="${final[*]} --set loader.batch_size=16 --set train.lr=6e-4"
  [final-warmup-cosine]="${final[*]} --set train.schedule={kind=\"constant\"} --set train.warmup_epochs=0.0"
  [final-lr1e-3]="${final[*]} --set train.lr=1e-3"
)
order=(recipe recipe+percentile final final-ema final-adamw-clip final-warmup-cosine
       final-intensity-aug final-percentile final+sex final+match final+clahe
       final-b16-lr6e-4 final-lr1e-3)
[ $# -gt 0 ] && order=("$@")
for name in "${order[@]}"; do
  [ -n "${rows[$name]+x}" ] || { echo "unknown row $name (rows: ${order[*]})" >&2; exit 2; }
  dir=$out/$name
  if [ ! -f "$dir/time.txt" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    # shellcheck disable=SC2086
    # time.txt appears only once the row has trained: a killed row is redone from scratch.
    BONE_AGE_PROGRESS=0 /usr/bin/time -v -o "$dir/time.txt.part" \
      $bin ${rows[$name]} "${extra_all[@]}" train --data-dir "$data" --out "$dir/run" --epochs "$epochs" \
      2>&1 | tee "$dir/train.log"
    mv "$dir/time.txt.part" "$dir/time.txt"
  fi
  for ckpt in $checkpoints; do
    [ -f "$dir/run/$ckpt.safetensors" ] || continue
    for check in plain squeeze darken; do
      case $check in
        plain) flags=() ;;
        squeeze) flags=(--squeeze 100,180) ;;
        darken) flags=(--darken 1.5) ;;
      esac
      for cal in cal raw; do
        # Without the recalibration: every check for the final row, the plain score elsewhere.
        [ $cal = raw ] && [ $check != plain ] && [ "$name" != final ] && continue
        extra=(); [ $cal = raw ] && extra=(--no-calibration)
        f=$dir/eval-$ckpt-$check-$cal.json
        [ -f "$f" ] || { $bin evaluate --checkpoint "$dir/run/$ckpt.safetensors" --validation \
           --data-dir "$data" "${flags[@]}" "${extra[@]}" --out "$dir/eval/$ckpt-$check-$cal" --json > "$f.part" \
           && mv "$f.part" "$f"; }
      done
    done
  done
  if [ "$name" = final ] && [ -f "$dir/run/ema.safetensors" ] && [ ! -f "$dir/eval-ema-plain-cal-tta4.json" ]; then
    $bin evaluate --checkpoint "$dir/run/ema.safetensors" --validation --data-dir "$data" --tta 4 \
      --out "$dir/eval/ema-plain-cal-tta4" --json > "$dir/eval-ema-plain-cal-tta4.json"
  fi
done
