"""What pydicom reads from DICOM files, as JSON, for tests/integration/dicom.rs to compare against.

Usage: dicom_reference.py [FILE ...]
Without arguments: every single-sample (greyscale) MONOCHROME2 image among pydicom's own test
files (pydicom/data/test_files) whose pixel data pydicom can decode here. For each: rows,
columns, frames, transfer syntax and, over `apply_modality_lut(ds.pixel_array, ds)` as
float64: min, max, sum and an index-weighted sum (order-sensitive), plus the files pydicom
could not decode (so the test can check medsynth names their transfer syntax).
"""
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def describe(path: Path):
    ds = pydicom.dcmread(str(path))
    if "PixelData" not in ds or ds.get("SamplesPerPixel", 1) != 1:
        return None
    if ds.get("PhotometricInterpretation", "") != "MONOCHROME2":
        return None
    out = {
        "path": str(path),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "frames": int(ds.get("NumberOfFrames", 1) or 1),
    }
    try:
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    except Exception as e:  # no decoder for this transfer syntax here
        out["undecodable"] = str(e).splitlines()[0]
        return out
    arr = arr.reshape(out["frames"], out["rows"], out["cols"])
    f, r, c = np.indices(arr.shape, dtype=np.float64)
    out.update(
        min=float(arr.min()),
        max=float(arr.max()),
        sum=float(arr.sum()),
        weighted=float((arr * (1.0 + c + 3.0 * r + 11.0 * f)).sum()),
    )
    return out


def main():
    if len(sys.argv) > 1:
        files = [Path(a) for a in sys.argv[1:]]
    else:
        data = Path(pydicom.__file__).parent / "data" / "test_files"
        files = sorted(data.glob("*.dcm"))
    out = []
    for f in files:
        try:
            d = describe(f)
        except Exception as e:
            print(f"skip {f.name}: {e}", file=sys.stderr)
            continue
        if d is not None:
            out.append(d)
    json.dump(out, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
