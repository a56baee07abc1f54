#!/usr/bin/env bash
# configs/recipe-plus.toml on a GPU: a few epochs on the 40 registered 2080×1600 hands of
# ../shared/data/rsna-registered-sample repeated to a 12,611-image epoch (the RSNA training
# set's size; fold 10 of 10, 1,262 of them, validates), with bf16 autocast off and on.
# Reports images/s and seconds per epoch (metrics.csv) and the GPU memory in use at its
# peak (nvidia-smi, sampled every second). The repeated images say nothing about accuracy.
# For a machine with torch but no Rust: build here, carry target/release/bone-age, and
# point TORCH_VENV at that machine's torch.
#   TORCH_VENV=/opt/torch/.venv scripts/gpu_recipe_plus.sh [EPOCHS] [OUT_DIR]
set -euo pipefail
epochs=${1:-3}
out=${2:-results/gpu-recipe-plus}
venv=${TORCH_VENV:-${BONE_AGE_VENV:-$HOME/.cache/bone-age/venv}}
bin=${BONE_AGE_BIN:-target/release/bone-age}
src=${REGISTERED:-../shared/data/rsna-registered-sample}
lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" BONE_AGE_PROGRESS=0
mkdir -p "$out"
"$bin" doctor | tee "$out/doctor.txt"
# The repeated set: ids 1..12611, each a link to one of the 40 hands, with its labels.
data=$out/data
if [ ! -f "$data/train.csv" ]; then
  mkdir -p "$data/train"
  "$venv/bin/python" - "$src" "$data" <<'PY'
import csv, os, sys
src, data = sys.argv[1:]
rows = list(csv.DictReader(open(os.path.join(src, "train.csv"))))
with open(os.path.join(data, "train.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "boneage", "male"])
    for i in range(12611):
        r = rows[i % len(rows)]
        os.symlink(os.path.abspath(os.path.join(src, "train", f"{r['id']}.png")),
                   os.path.join(data, "train", f"{i + 1}.png"))
        w.writerow([i + 1, r["boneage"], r["male"]])
PY
fi
for autocast in false true; do
  run=$out/autocast-$autocast
  rm -rf "$run"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -l 1 > "$run.gpu-mem.txt" &
  smi=$!
  "$bin" --config configs/recipe-plus.toml --device cuda --set train.autocast=$autocast \
    train --data-dir "$data" --out "$run" --epochs "$epochs" 2>&1 | tee "$run.log"
  kill $smi
  peak=$(sort -n "$run.gpu-mem.txt" | tail -1)
  "$venv/bin/python" -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); \
print(f\"autocast $autocast: \" + '; '.join(f\"epoch {x['epoch']} {float(x['seconds']):.0f} s, {float(x['images_per_s']):.0f} img/s\" for x in r) + f\"; GPU memory peak $peak MiB\")" \
    "$run/metrics.csv" | tee -a "$out/summary.txt"
done
