#!/usr/bin/env bash
# The data of docs/results.md's ablation: a directory of links into ../shared/data/rsna-128
# with 2,506 training radiographs (2 of every 9 of folds 1–9, in file order) followed by
# the 1,253 of fold 10, unchanged. Contiguous folds of 3 then hold out exactly fold 10:
#   scripts/ablation_subset.sh /tmp/abl4
#   DATA=/tmp/abl4 EXTRA="--set folds.n_folds=3 --set folds.val_fold=3" CHECKPOINTS=best \
#     scripts/real_data_runs.sh 4 runs/ablation4
set -euo pipefail
out=${1:?usage: scripts/ablation_subset.sh OUT_DIR}
src=$(realpath "${SRC:-../shared/data/rsna-128}")
[ -f "$src/train.csv" ] || { echo "no $src/train.csv" >&2; exit 1; }
rows=$(( $(wc -l < "$src/train.csv") - 1 ))
[ "$rows" -eq 12611 ] || { echo "$src/train.csv has $rows rows, expected 12,611" >&2; exit 1; }
mkdir -p "$out/train"
{
  head -1 "$src/train.csv"
  head -11359 "$src/train.csv" | tail -n +2 | awk 'NR % 9 == 1 || NR % 9 == 5' | head -2506
  tail -1253 "$src/train.csv"
} > "$out/train.csv"
tail -n +2 "$out/train.csv" | cut -d, -f1 | while read -r id; do
  ln -sf "$src/train/$id.png" "$out/train/$id.png"
done
echo "$out: $(( $(wc -l < "$out/train.csv") - 1 )) radiographs (2,506 training, 1,253 of fold 10)"
