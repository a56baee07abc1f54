#!/usr/bin/env python3
"""Writes an 8-bit radiograph PNG as three DX DICOM files, the way scanners send them:

  mono1-12bit-window.dcm  MONOCHROME1 (bone dark), 12 bits stored, a rescale intercept
                          and a window that maps back to the PNG's grey levels exactly
  mono2-16bit.dcm         MONOCHROME2, 16 bits, no window (a reader must choose one)
  jpeg-lossless.dcm       MONOCHROME2, 12 bits, JPEG lossless SV1 (1.2.840.10008.1.2.4.70)

Each carries PatientSex, PatientBirthDate, StudyDate, BodyPartExamined HAND and a
made-up PatientName and PatientID (the tests check those never reach an output).

    write_dx.py PNG OUT_DIR [--sex M] [--birth 20100315] [--study 20220601]
                [--body-part HAND] [--laterality L] [--bad]

--bad also writes files a reader must refuse: truncated.dcm (the first file cut in half),
no-pixels.dcm (no Pixel Data), jpeg-ls.dcm (JPEG-LS, not decoded here), empty.dcm (0x0)
and bomb.dcm (60000 x 60000 declared over a few bytes of JPEG).
"""
import argparse
import os

import imagecodecs
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
NAME, ID = "Doe^Jane^Testpatient", "SECRET-ID-4711"


def dataset(args, ts, rows, cols):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    ds.PatientName, ds.PatientID = NAME, ID
    ds.PatientSex = args.sex
    ds.PatientBirthDate = args.birth
    ds.StudyDate = args.study
    ds.BodyPartExamined = args.body_part
    ds.ImageLaterality = args.laterality
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    return ds


def save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    print(path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png")
    p.add_argument("out_dir")
    p.add_argument("--sex", default="M")
    p.add_argument("--birth", default="20100315")
    p.add_argument("--study", default="20220601")
    p.add_argument("--body-part", default="HAND")
    p.add_argument("--laterality", default="L")
    p.add_argument("--bad", action="store_true")
    args = p.parse_args()
    g = np.asarray(Image.open(args.png).convert("L"), dtype=np.float64)
    rows, cols = g.shape
    os.makedirs(args.out_dir, exist_ok=True)

    # MONOCHROME1, 12 bits: stored x (0..4095, high = dark); rescale x - 1024; the window
    # (centre 1024, width 4096) maps the rescaled values onto x / 4095, and the inversion
    # gives back g to within 0.03 of a grey level.
    x = np.round((255.0 - g) * 4095.0 / 255.0).astype(np.uint16)
    ds = dataset(args, ExplicitVRLittleEndian, rows, cols)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsStored, ds.HighBit = 12, 11
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 1024, 4096
    ds.PixelData = x.tobytes()
    save(ds, os.path.join(args.out_dir, "mono1-12bit-window.dcm"))

    # MONOCHROME2, 16 bits, no window: a detector's full range, a little dark noise.
    rng = np.random.default_rng(0)
    v = np.clip(g * 200.0 + 3000.0 + rng.normal(0, 20, g.shape), 0, 65535).astype(np.uint16)
    ds = dataset(args, ExplicitVRLittleEndian, rows, cols)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.HighBit = 16, 15
    ds.PixelData = v.tobytes()
    save(ds, os.path.join(args.out_dir, "mono2-16bit.dcm"))

    # JPEG lossless SV1 of 12-bit MONOCHROME2 values with a full-range window.
    y = np.round(g * 4095.0 / 255.0).astype(np.uint16)
    ds = dataset(args, JPEGLosslessSV1, rows, cols)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.HighBit = 12, 11
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    frame = imagecodecs.jpeg8_encode(y, lossless=True, predictor=1, bitspersample=12)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    save(ds, os.path.join(args.out_dir, "jpeg-lossless.dcm"))
    if args.bad:
        write_bad(args, os.path.join(args.out_dir, "mono1-12bit-window.dcm"), frame)


def write_bad(args, good, frame):
    data = open(good, "rb").read()
    path = os.path.join(args.out_dir, "truncated.dcm")
    open(path, "wb").write(data[: len(data) // 2])
    print(path)
    ds = dataset(args, ExplicitVRLittleEndian, 64, 64)
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME2", 12, 11
    save(ds, os.path.join(args.out_dir, "no-pixels.dcm"))
    ds = dataset(args, "1.2.840.10008.1.2.4.80", 64, 64)
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME2", 12, 11
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    save(ds, os.path.join(args.out_dir, "jpeg-ls.dcm"))
    ds = dataset(args, ExplicitVRLittleEndian, 0, 0)
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME2", 12, 11
    ds.PixelData = b""
    save(ds, os.path.join(args.out_dir, "empty.dcm"))
    ds = dataset(args, JPEGLosslessSV1, 60000, 60000)
    ds.PhotometricInterpretation, ds.BitsStored, ds.HighBit = "MONOCHROME2", 12, 11
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    save(ds, os.path.join(args.out_dir, "bomb.dcm"))


if __name__ == "__main__":
    main()
