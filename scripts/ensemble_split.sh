#!/usr/bin/env bash
# The data of docs/ensembles.md's real-data run: a directory of links into
# ../shared/data/rsna-128 whose training split is folds 1–9 of the recipe's 10 (the first
# 11,358 radiographs, in file order) and whose test split is fold 10 (the last 1,253, the
# same images docs/results.md validates on). A K-fold ensemble trains and calibrates on
# the first; the second scores it, held out from every member:
#   scripts/ensemble_split.sh /tmp/rsna-ens
#   target/release/bone-age --config configs/rsna-128.toml train --folds 3 \
#     --data-dir /tmp/rsna-ens --out runs/ens3 --epochs 5
#   target/release/bone-age evaluate --checkpoint runs/ens3 --data-dir /tmp/rsna-ens --split test
set -euo pipefail
out=${1:?usage: scripts/ensemble_split.sh OUT_DIR}
src=$(realpath "${SRC:-../shared/data/rsna-128}")
[ -f "$src/train.csv" ] || { echo "no $src/train.csv" >&2; exit 1; }
rows=$(( $(wc -l < "$src/train.csv") - 1 ))
[ "$rows" -eq 12611 ] || { echo "$src/train.csv has $rows rows, expected 12,611" >&2; exit 1; }
mkdir -p "$out/train" "$out/test"
head -11359 "$src/train.csv" > "$out/train.csv"
{ head -1 "$src/train.csv"; tail -1253 "$src/train.csv"; } > "$out/test.csv"
for split in train test; do
  tail -n +2 "$out/$split.csv" | cut -d, -f1 | while read -r id; do
    ln -sf "$src/train/$id.png" "$out/$split/$id.png"
  done
done
echo "$out: $(( $(wc -l < "$out/train.csv") - 1 )) training and $(( $(wc -l < "$out/test.csv") - 1 )) test radiographs"
