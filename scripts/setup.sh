#!/usr/bin/env bash
# `make setup`: everything a fresh machine needs, cached outside the clone.
#
#   1. a Python venv with the pinned torch (libtorch for tch), Jupyter and the
#      dev tools, at $BONE_AGE_VENV;
#   2. evcxr_jupyter, the Rust Jupyter kernel, installed with cargo into
#      $BONE_AGE_CARGO_ROOT;
#   3. the kernel registered inside the venv (share/jupyter/kernels/rust) with
#      the libtorch environment from scripts/env.sh in its kernel.json.
#
# Idempotent: each step is skipped when its stamp matches, so a second run
# takes seconds and changes nothing.
#
# Usage: scripts/setup.sh [venv] [evcxr] [kernel]   (no argument: all three)
set -euo pipefail
steps=" ${*:-venv evcxr kernel} "
want_step() { [[ "$steps" == *" $1 "* ]]; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/env.sh"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
mkdir -p "$BONE_AGE_CACHE" "$EVCXR_TMPDIR"

# --- 1. Python venv -----------------------------------------------------------
req="$root/environment/requirements.txt"
con="$root/environment/constraints.txt"
python_bin="$(command -v "$BONE_AGE_PYTHON" || command -v python3 || true)"
[ -n "$python_bin" ] || { echo "setup: need $BONE_AGE_PYTHON (or python3) on PATH" >&2; exit 1; }
want="$("$python_bin" --version 2>&1) $(cat "$req" "$con" | sha256sum | cut -c1-16)"
stamp="$BONE_AGE_VENV/.bone-age-stamp"
if ! want_step venv; then
  :
elif [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$BONE_AGE_VENV/bin/python" ]; then
  say "venv up to date: $BONE_AGE_VENV"
else
  say "creating venv $BONE_AGE_VENV with $("$python_bin" --version 2>&1) (torch $TORCH_VERSION is ~4.6 GB)"
  [ -x "$BONE_AGE_VENV/bin/python" ] || "$python_bin" -m venv "$BONE_AGE_VENV"
  "$BONE_AGE_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$BONE_AGE_VENV/bin/python" -m pip install --progress-bar on -r "$req" -c "$con"
  "$BONE_AGE_VENV/bin/python" - "$TORCH_VERSION" <<'PY'
import sys, torch
want = sys.argv[1]
got = torch.__version__.split("+")[0]
if got != want:
    sys.exit(f"setup: venv has torch {torch.__version__}, tch needs {want}")
print(f"[setup] torch {torch.__version__} OK")
PY
  echo "$want" > "$stamp"
fi
. "$root/scripts/env.sh"   # picks up the torch lib/ now that it exists

# --- 2. evcxr_jupyter ---------------------------------------------------------
evcxr="$BONE_AGE_CARGO_ROOT/bin/evcxr_jupyter"
if ! want_step evcxr; then
  :
elif [ -x "$evcxr" ] && grep -qF "\"evcxr_jupyter $EVCXR_JUPYTER_VERSION " "$BONE_AGE_CARGO_ROOT/.crates.toml" 2>/dev/null; then
  say "evcxr_jupyter $EVCXR_JUPYTER_VERSION up to date: $evcxr"
else
  say "installing evcxr_jupyter $EVCXR_JUPYTER_VERSION (about 11 min on 2 cores; cached afterwards)"
  cargo install evcxr_jupyter --version "$EVCXR_JUPYTER_VERSION" --locked --root "$BONE_AGE_CARGO_ROOT"
fi

# --- 3. kernel spec -----------------------------------------------------------
# evcxr_jupyter --install (re)writes kernel.json without `env`, so it runs first
# and the environment is merged in afterwards. It goes into the venv's data dir,
# which the venv's jupyter searches, so nothing lands in ~/.local.
want_step kernel || exit 0
kernel_root="$BONE_AGE_VENV/share/jupyter"
kernel_dir="$kernel_root/kernels/rust"
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
JUPYTER_PATH="$fresh" "$evcxr" --install >/dev/null
"$BONE_AGE_VENV/bin/python" "$root/scripts/kernel_env.py" "$fresh/kernels/rust/kernel.json" $BONE_AGE_KERNEL_VARS
if diff -rq "$fresh/kernels/rust" "$kernel_dir" >/dev/null 2>&1; then
  say "kernel spec up to date: $kernel_dir"
else
  mkdir -p "$kernel_root/kernels"
  rm -rf "$kernel_dir"
  mv "$fresh/kernels/rust" "$kernel_dir"
  say "kernel spec written: $kernel_dir"
fi
say "kernel: $("$BONE_AGE_VENV/bin/jupyter" kernelspec list | grep -w rust)"
say "done. Next: 'make demo' (main job), 'make test', 'make jupyter'."
