#!/usr/bin/env python3
"""The grey levels bone-age should read from DICOM files, computed with pydicom.

For every file (default: every file pydicom's wheel ships as test data) this decodes the
first frame with pydicom and its plugins, then redoes bone-age's steps on pydicom's array:
the modality rescale, the VOI transform (the first Window Center/Width, else the first VOI
LUT, else the 0th-100th percentile (min-max) window), MONOCHROME1 inverted, then
floor(255 y + 0.5). Colour: 8-bit RGB by the luminance weights `image` uses, uncompressed
YBR_FULL by its Y plane; other colour models are left to bone-age to refuse.

    dicom_reference.py OUT_DIR [FILE ...]

writes OUT_DIR/<n>.u8 (rows x columns bytes) and OUT_DIR/manifest.json, one entry per
file: path, status (decoded | no-pixel-data | unreadable | colour-model), rows, columns,
lossy, transfer_syntax and pydicom's error. tests/dicom.rs compares bone-age with it.
"""
import json
import os
import sys
import warnings

import numpy as np
import pydicom
import pydicom.pixels

LOSSY = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
}
PERCENTILES = (0.0, 100.0)


def first(v):
    """The first value of a possibly multi-valued element."""
    if isinstance(v, (pydicom.multival.MultiValue, list, tuple)):
        return float(v[0])
    return float(v)


def window_unit(x, center, width, function):
    """PS3.3 C.11.2.1.2 to 0..1, as dicom-pixeldata's WindowLevelTransform."""
    if function == "LINEAR" and width < 1:
        function = "LINEAR_EXACT"
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1.0)))
    if function == "LINEAR_EXACT":
        lo, hi = center - width / 2, center + width / 2
        y = (x - center) / width + 0.5
    else:
        width = max(width, 1.0)
        lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        y = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.where(x <= lo, 0.0, np.where(x > hi, 1.0, y))


def nearest_rank(sorted_values, q):
    k = int(np.floor(q / 100.0 * (len(sorted_values) - 1) + 0.5))
    return sorted_values[min(k, len(sorted_values) - 1)]


def monochrome(ds, arr):
    x = arr.astype(np.float64)
    slope = first(ds.get("RescaleSlope", 1.0))
    intercept = first(ds.get("RescaleIntercept", 0.0))
    x = slope * x + intercept
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
    lut = ds.get("VOILUTSequence")
    if center is not None and width is not None and first(width) > 0:
        y = window_unit(x, first(center), first(width), function)
    elif lut:
        item = lut[0]
        raw = item.LUTData
        data = np.frombuffer(raw, dtype="<u2") if isinstance(raw, bytes) else np.asarray(raw)
        data = data.astype(np.float64).ravel()
        first_mapped = int(item.LUTDescriptor[1])
        i = np.clip(np.floor(x + 0.5) - first_mapped, 0, len(data) - 1).astype(np.int64)
        lo, hi = data.min(), data.max()
        y = (data[i] - lo) / max(hi - lo, 1.0)
    else:
        s = np.sort(x.ravel())
        lo, hi = nearest_rank(s, PERCENTILES[0]), nearest_rank(s, PERCENTILES[1])
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    y = np.clip(y, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    return np.floor(255.0 * y + 0.5).astype(np.uint8)


def luma(rgb):
    rgb = rgb.astype(np.uint32)
    return ((2126 * rgb[..., 0] + 7152 * rgb[..., 1] + 722 * rgb[..., 2]) // 10000).astype(np.uint8)


def reference(path):
    entry = {"path": os.path.abspath(path)}
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # not DICOM, or no file meta
        entry.update(status="unreadable", error=str(e).splitlines()[0][:200])
        return entry, None
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    entry.update(transfer_syntax=ts, lossy=ts in LOSSY)
    if "PixelData" not in ds:
        entry.update(status="no-pixel-data")
        return entry, None
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        index = 0 if frames > 1 else None
        pi = str(ds.PhotometricInterpretation)
        spp = int(ds.SamplesPerPixel)
        encapsulated = ds.file_meta.TransferSyntaxUID.is_compressed
        if spp == 1 and pi in ("MONOCHROME1", "MONOCHROME2"):
            out = monochrome(ds, pydicom.pixels.pixel_array(ds, index=index))
        elif spp == 3 and int(ds.BitsStored) <= 8 and (encapsulated or pi == "RGB"):
            out = luma(pydicom.pixels.pixel_array(ds, index=index, as_rgb=True))
        elif spp == 3 and int(ds.BitsStored) <= 8 and pi == "YBR_FULL":
            out = pydicom.pixels.pixel_array(ds, index=index, as_rgb=False)[..., 0].astype(np.uint8)
        else:
            entry.update(status="colour-model", error=f"{pi}, {spp} samples, {ds.BitsStored} bits")
            return entry, None
    except Exception as e:
        entry.update(status="unreadable", error=str(e).splitlines()[0][:200])
        return entry, None
    entry.update(status="decoded", rows=int(out.shape[0]), columns=int(out.shape[1]))
    return entry, out


def main():
    out_dir = sys.argv[1]
    files = sys.argv[2:]
    if not files:
        d = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
        files = sorted(os.path.join(d, f) for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
    os.makedirs(out_dir, exist_ok=True)
    manifest = []
    warnings.simplefilter("ignore")
    for n, path in enumerate(files):
        entry, out = reference(path)
        if out is not None:
            entry["pixels"] = f"{n}.u8"
            np.ascontiguousarray(out).tofile(os.path.join(out_dir, entry["pixels"]))
        manifest.append(entry)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"pydicom": pydicom.__version__, "files": manifest}, f, indent=1)
    print(f"{len(manifest)} files, {sum(e['status'] == 'decoded' for e in manifest)} decoded by pydicom")


if __name__ == "__main__":
    main()
