"""Merge the bone-age environment into an evcxr kernel.json (run by scripts/setup.sh).

Usage: kernel_env.py KERNEL_JSON VAR [VAR ...]

Each VAR is copied from the current environment (set by scripts/env.sh) into the
kernel spec's `env`, so notebook cells find libtorch (LD_LIBRARY_PATH: evcxr loads
every cell as a cdylib, where the binary's rpath does not apply) and reuse one
persistent build directory (EVCXR_TMPDIR).
"""

import json
import os
import subprocess
import sys


def main() -> None:
    path, names = sys.argv[1], sys.argv[2:]
    with open(path) as f:
        spec = json.load(f)
    missing = [n for n in names if n not in os.environ]
    if missing:
        sys.exit(f"kernel_env.py: not set in the environment: {', '.join(missing)}")
    spec["display_name"] = "Rust (bone-age)"
    env = {n: os.environ[n] for n in names}
    # PATH: our entries first, then whatever the Jupyter server was started with
    # (jupyter_client expands ${PATH} when it launches the kernel); cargo and
    # rustc must stay reachable for evcxr.
    env["PATH"] = f"{os.environ['BONE_AGE_VENV']}/bin:{os.environ['BONE_AGE_CARGO_ROOT']}/bin:${{PATH}}"
    # LD_LIBRARY_PATH: the torch lib/ and the toolchain's libstd-*.so, never the
    # setup shell's value. evcxr links each cell against the dynamic libstd, and
    # the $ORIGIN rpath it relies on is computed for target/*/deps/ while it loads
    # the copy one directory up, so without this every cell fails with
    # "dlopen failed".
    rust_libdir = subprocess.run(
        ["rustc", "--print", "target-libdir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    env["LD_LIBRARY_PATH"] = f"{os.environ['BONE_AGE_TORCH_LIB']}:{rust_libdir}"
    spec["env"] = env
    with open(path, "w") as f:
        json.dump(spec, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
