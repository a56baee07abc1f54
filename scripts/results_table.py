"""Tables of docs/results.md from the runs scripts/real_data_runs.sh leaves.

  python3 scripts/results_table.py OUT [CHECKPOINT]

One row per run directory under OUT (in the script's order): validation MAE and median
error of CHECKPOINT (default `best`, recalibrated where the run fitted a calibration),
the MAE after `--squeeze 100,180` and after `--darken 1.5` with their rise over the
plain score, seconds per epoch and images/s (training, the fastest epoch: an epoch that
shared the cores with other work is slower, never faster) and peak RSS.
Then, for every run, each checkpoint (best, last, ema) with and without recalibration.
"""

import csv
import json
import os
import re
import sys

ORDER = ["recipe", "recipe+percentile", "final", "final-ema", "final-adamw-clip",
         "final-warmup-cosine", "final-intensity-aug", "final-percentile", "final+sex",
         "final+match", "final+clahe", "final-b16-lr6e-4", "final-lr1e-3"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def row(out, name, ckpt):
    d = os.path.join(out, name)
    if not all(os.path.isfile(os.path.join(d, *f)) for f in (("time.txt",), ("run", "metrics.csv"))):
        return None  # still training
    rows = list(csv.DictReader(open(os.path.join(d, "run", "metrics.csv"))))
    secs = min(float(r["seconds"]) for r in rows)
    speed = max(float(r["images_per_s"]) for r in rows)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(os.path.join(d, "time.txt")).read())
    rss = int(rss.group(1)) / 1024**2 if rss else float("nan")
    ev = {c: load(os.path.join(d, f"eval-{ckpt}-{c}-cal.json")) for c in ("plain", "squeeze", "darken")}
    if not ev["plain"]:
        return None
    p = ev["plain"]["mae_months"]
    cell = lambda e: f"{e['mae_months']:.2f} ({e['mae_months'] - p:+.2f})" if e else "–"
    return (f"| {name} | {len(rows)} | {p:.2f} | {ev['plain']['median_abs_error_months']:.2f} | "
            f"{cell(ev['squeeze'])} | {cell(ev['darken'])} | {secs:.0f} | {speed:.1f} | {rss:.2f} |")


def main():
    out = sys.argv[1]
    ckpt = sys.argv[2] if len(sys.argv) > 2 else "best"
    names = [n for n in ORDER if os.path.isdir(os.path.join(out, n))]
    names += sorted(n for n in os.listdir(out) if n not in names and os.path.isdir(os.path.join(out, n, "run")))
    print(f"| row | epochs | val MAE | median | squeezed MAE (rise) | darkened MAE (rise) | s/epoch | img/s | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        r = row(out, n, ckpt)
        if r:
            print(r)
    print()
    print("| row | checkpoint | epoch | plain | squeezed | darkened | plain, no recalibration | squeezed, no recal. | darkened, no recal. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        for c in ("best", "last", "ema"):
            cells = []
            for cal in ("cal", "raw"):
                for check in ("plain", "squeeze", "darken"):
                    e = load(os.path.join(out, n, f"eval-{c}-{check}-{cal}.json"))
                    cells.append(f"{e['mae_months']:.2f}" if e else "–")
            meta = load(os.path.join(out, n, "run", f"{c}.json"))
            if meta:
                print(f"| {n} | {c} | {meta['epoch']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
