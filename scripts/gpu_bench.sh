#!/usr/bin/env bash
# The training-step benchmark on a GPU box: m46 at the recipe's 500×375, batch 8 and 64,
# with bf16 autocast off and on and channels-last off and on, ours against PyTorch on the
# same GPU (scripts/bench_train_peer.py). For a machine with torch but no Rust: build here,
# carry target/release/bone-age, and point TORCH_VENV at that machine's torch.
#   TORCH_VENV=/opt/torch/.venv scripts/gpu_bench.sh [OUT_DIR]
set -euo pipefail
venv=${TORCH_VENV:-${BONE_AGE_VENV:-$HOME/.cache/bone-age/venv}}
out=${1:-results/gpu-bench}
bin=${BONE_AGE_BIN:-target/release/bone-age}
lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" BONE_AGE_VENV="$venv"
mkdir -p "$out"
"$bin" doctor | tee "$out/doctor.txt"
for batch in 8 64; do
  for autocast in false true; do
    for cl in false true; do
      name="b${batch}-autocast-${autocast}-cl-${cl}"
      echo "== $name"
      "$bin" --device cuda --set train.autocast=$autocast --set train.channels_last=$cl \
        bench train --input-shape 1,500,375 --batch $batch --steps 10 --rounds 2 --json \
        > "$out/$name.json"
      "$venv/bin/python" -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(f\"ours {r['ours']['train_img_s']:.1f} img/s, PyTorch {r['peer']['train_img_s']:.1f}, ratio {r['ratio_train']:.2f}; \
inference ratio {r['ratio_eval']:.2f}\")" "$out/$name.json"
    done
  done
done
