"""The OpenCV/albumentations peer for `bone-age bench pipeline`.

Does what the original recipe's data pipeline does, on one core, for every image of
`<data-dir>/train/` (recipe layout), and prints images/s:

  decode_crop_scale   cv2.imread (grayscale) → [fit] → crop 2000×1500 at (1040, 800),
                      zero-padded → cv2.resize ×0.25, INTER_CUBIC
  redecode_augment    the per-epoch training pipeline: decode → [fit] → albumentations
                      Affine (shift ±5%, scale ±5%, rotate ±5°, black border) →
                      RandomGamma (0.8–1.2) → crop → resize → standardise to float32

Run by `bone-age bench pipeline`; also usable alone:
  python scripts/bench_peer.py --data-dir ../shared/data/rsna-registered-sample
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

cv2.setNumThreads(1)
CENTER, SIZE, SCALE = (1040, 800), (2000, 1500), 0.25


def fit(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    s = min(hw[0] / img.shape[0], hw[1] / img.shape[1])
    nh, nw = round(img.shape[0] * s), round(img.shape[1] * s)
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
    top, left = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    return cv2.copyMakeBorder(img, top, hw[0] - nh - top, left, hw[1] - nw - left, cv2.BORDER_CONSTANT, value=0)


def crop(img: np.ndarray) -> np.ndarray:
    top, left = CENTER[0] - SIZE[0] // 2, CENTER[1] - SIZE[1] // 2
    out = np.zeros(SIZE, np.uint8)
    y0, y1 = max(top, 0), min(top + SIZE[0], img.shape[0])
    x0, x1 = max(left, 0), min(left + SIZE[1], img.shape[1])
    out[y0 - top : y1 - top, x0 - left : x1 - left] = img[y0:y1, x0:x1]
    return out


def load(path: Path, fit_hw):
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        sys.exit(f"cannot decode {path}")
    return fit(img, fit_hw) if fit_hw else img


def scale(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--fit", help="HxW: fit raw images into this size first (e.g. 2080x1600)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    fit_hw = tuple(int(v) for v in a.fit.split("x")) if a.fit else None
    paths = sorted((a.data_dir / "train").glob("*.png"))
    if not paths:
        sys.exit(f"no PNG images in {a.data_dir / 'train'}")

    import albumentations as A

    augment = A.Compose(
        [
            A.Affine(translate_percent=(-0.05, 0.05), scale=(0.95, 1.05), rotate=(-5, 5),
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
            A.RandomGamma(gamma_limit=(80, 120), p=1.0),
        ]
    )
    load(paths[0], fit_hw)  # warm up
    start = time.perf_counter()
    for p in paths:
        scale(crop(load(p, fit_hw)))
    decode = len(paths) / (time.perf_counter() - start)

    start = time.perf_counter()
    for p in paths:
        x = scale(crop(augment(image=load(p, fit_hw))["image"]))
        x = (x.astype(np.float32) - 127.5) / 127.5
    redecode = len(paths) / (time.perf_counter() - start)

    result = {
        "decode_crop_scale": decode,
        "redecode_augment": redecode,
        "versions": f"OpenCV {cv2.__version__}, albumentations {A.__version__}, numpy {np.__version__}",
    }
    print(json.dumps(result) if a.json else f"{decode:.1f} img/s decode+crop+scale, {redecode:.1f} img/s with augmentation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
