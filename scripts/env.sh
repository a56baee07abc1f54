#!/usr/bin/env bash
# The one definition of the bone-age build/runtime environment.
#
# Source it (`. scripts/env.sh`) to get the variables in your shell, or run a
# command under it (`scripts/env.sh cargo test`). cargo, the tests, the CLI,
# the Makefile and the Jupyter kernel (scripts/setup.sh copies these variables
# into kernel.json) all take the libtorch location from here.
#
#   BONE_AGE_CACHE   heavy, clone-independent state: the venv, evcxr, the evcxr
#                    build dir. Default ${XDG_CACHE_HOME:-~/.cache}/bone-age.
#   BONE_AGE_VENV    the Python venv holding torch==$TORCH_VERSION.
#
# torch-sys finds libtorch by running the venv's `python` (LIBTORCH_USE_PYTORCH=1);
# build.rs then bakes an rpath to that lib/ into every binary and test, so
# running target/*/bone-age needs no LD_LIBRARY_PATH. LD_LIBRARY_PATH is still
# exported here for evcxr, which loads each notebook cell as a cdylib.

_bone_age_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../environment/versions.env
. "$_bone_age_root/environment/versions.env"

export BONE_AGE_CACHE="${BONE_AGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bone-age}"
export BONE_AGE_VENV="${BONE_AGE_VENV:-$BONE_AGE_CACHE/venv}"
export BONE_AGE_CARGO_ROOT="${BONE_AGE_CARGO_ROOT:-$BONE_AGE_CACHE/cargo}"
export EVCXR_TMPDIR="${EVCXR_TMPDIR:-$BONE_AGE_CACHE/evcxr-build}"

export VIRTUAL_ENV="$BONE_AGE_VENV"
case ":$PATH:" in
  *":$BONE_AGE_VENV/bin:"*) ;;
  *) export PATH="$BONE_AGE_VENV/bin:$BONE_AGE_CARGO_ROOT/bin:$PATH" ;;
esac
export LIBTORCH_USE_PYTORCH=1

# The wheel's lib/ (libtorch_cpu.so, libtorch_cuda.so, libc10.so, ...).
BONE_AGE_TORCH_LIB=""
for _d in "$BONE_AGE_VENV"/lib/python3*/site-packages/torch/lib; do
  [ -e "$_d/libtorch_cpu.so" ] && BONE_AGE_TORCH_LIB="$_d"
done
export BONE_AGE_TORCH_LIB
if [ -n "$BONE_AGE_TORCH_LIB" ]; then
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$BONE_AGE_TORCH_LIB:"*) ;;
    *) export LD_LIBRARY_PATH="$BONE_AGE_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
fi
unset _d

# Variables the Jupyter kernel needs (scripts/setup.sh writes them into kernel.json).
export BONE_AGE_KERNEL_VARS="BONE_AGE_CACHE BONE_AGE_VENV BONE_AGE_CARGO_ROOT BONE_AGE_TORCH_LIB VIRTUAL_ENV PATH LIBTORCH_USE_PYTORCH LD_LIBRARY_PATH EVCXR_TMPDIR"

# Executed rather than sourced: run the arguments under this environment.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  if [ -z "$BONE_AGE_TORCH_LIB" ]; then
    echo "bone-age: no torch in $BONE_AGE_VENV; run 'make setup' first" >&2
    exit 1
  fi
  [ $# -gt 0 ] && exec "$@"
fi
