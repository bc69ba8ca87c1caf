"""What nibabel reads from NIfTI files, as JSON, for tests/integration/nifti.rs to compare against.

Usage: nifti_reference.py [FILE ...]
Without arguments: every NIfTI file in nibabel's own test data (nibabel/tests/data) that
nibabel loads as a NIfTI-1 or NIfTI-2 image. For each: the shape, nibabel's affine
(`img.affine`), the data type on disk and, over `img.get_fdata()` (scaling applied),
min, max, sum, an index-weighted sum (order-sensitive) and a few voxels.
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def weights(shape):
    idx = np.indices(shape, dtype=np.float64)
    factors = [1.0, 3.0, 11.0, 101.0, 1009.0, 10007.0, 100003.0]
    return 1.0 + sum(f * i for f, i in zip(factors, idx))


def describe(path: Path):
    img = nib.load(str(path))
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return None
    data = img.get_fdata(dtype=np.float64)
    flat = data.reshape(-1, order="F")
    picks = [0, flat.size // 3, flat.size // 2, flat.size - 1]
    return {
        "path": str(path),
        "version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "shape": list(img.shape),
        "affine": img.affine.tolist(),
        "dtype": str(img.get_data_dtype()),
        "min": float(np.nanmin(data)),
        "max": float(np.nanmax(data)),
        "sum": float(np.nansum(data)),
        "weighted": float(np.nansum(data * weights(data.shape))),
        "samples": [[int(p), None if np.isnan(flat[p]) else float(flat[p])] for p in picks],
    }


def main():
    if len(sys.argv) > 1:
        files = [Path(a) for a in sys.argv[1:]]
    else:
        data = Path(nib.__file__).parent / "tests" / "data"
        files = sorted(list(data.glob("*.nii")) + list(data.glob("*.nii.gz")))
    out = []
    for f in files:
        try:
            d = describe(f)
        except Exception as e:  # nibabel refuses it: not a reference
            print(f"skip {f.name}: {e}", file=sys.stderr)
            continue
        if d is not None:
            out.append(d)
    json.dump(out, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
