#!/usr/bin/env bash
# Does a radiograph read as DICOM give the bone age its PNG gives? Writes every PNG of a
# folder as three DX files (scripts/write_dx.py: MONOCHROME1 12-bit windowed, MONOCHROME2
# 16-bit without a window, JPEG lossless), predicts all four with one checkpoint, and
# prints the largest and mean |DICOM − PNG| in months per kind (docs/dicom.md).
#   scripts/dicom_agreement.sh CHECKPOINT [IMAGES_DIR] [HAND_CROP]
# HAND_CROP (off, dicom, on; default off) is passed to predict for every file alike.
set -euo pipefail
ckpt=$1
images=${2:-../shared/data/rsna-raw-sample/train}
crop=${3:-off}
bin=${BONE_AGE_BIN:-target/release/bone-age}
py=${BONE_AGE_VENV:-$HOME/.cache/bone-age/venv}/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
files=()
for png in "$images"/*.png; do
  id=$(basename "$png" .png)
  "$py" scripts/write_dx.py "$png" "$work/$id" > /dev/null
  files+=("$png" "$work/$id/mono1-12bit-window.dcm" "$work/$id/mono2-16bit.dcm" "$work/$id/jpeg-lossless.dcm")
done
BONE_AGE_PROGRESS=0 $bin predict "${files[@]}" --checkpoint "$ckpt" --json --hand-crop "$crop" 2>/dev/null > "$work/readings.jsonl"
python3 - "$work/readings.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
age = lambda r: r.get("bone_age_months", r.get("value"))
kinds = {"mono1-12bit-window.dcm": [], "mono2-16bit.dcm": [], "jpeg-lossless.dcm": []}
for k in range(0, len(rows), 4):
    png = age(rows[k])
    for r in rows[k + 1:k + 4]:
        kinds[r.get("image", r.get("path")).split("/")[-1]].append((abs(age(r) - png), rows[k]["path"]))
for kind, d in kinds.items():
    worst = max(d)
    within = sum(v <= 0.5 for v, _ in d)
    print(f"{kind:24s} n {len(d)}  within 0.5 months {within}  mean |Δ| {sum(v for v, _ in d)/len(d):.3f}"
          f"  max |Δ| {worst[0]:.3f} months ({worst[1].split('/')[-1]})")
PY
