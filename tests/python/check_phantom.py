"""Loads medsynth phantom subjects with nibabel and prints what nibabel sees, as JSON.

Usage: check_phantom.py DIR
For every DIR/sub-*/{t1,t1ce,t2,flair,seg}.nii.gz: shape, dtype, zooms, affine (nibabel's
choice from sform/qform), the qform-derived affine, the codes, xyzt units and a checksum of the
data as nibabel reads it (sum of voxel values), so the Rust test can compare each with what
medsynth meant to write.
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def index_weights(shape):
    i, j, k = np.indices(shape, dtype=np.float64)
    return 1.0 + i + 3.0 * j + 11.0 * k


def describe(path: Path) -> dict:
    img = nib.load(str(path))
    hdr = img.header
    data = np.asanyarray(img.dataobj)
    sform, scode = hdr.get_sform(coded=True)
    qform, qcode = hdr.get_qform(coded=True)
    return {
        "shape": list(img.shape),
        "dtype": str(data.dtype),
        "zooms": [float(z) for z in hdr.get_zooms()],
        "affine": img.affine.tolist(),
        "qform": qform.tolist() if qform is not None else None,
        "sform_code": int(scode),
        "qform_code": int(qcode),
        "units": list(hdr.get_xyzt_units()),
        "orientation": "".join(nib.aff2axcodes(img.affine)),
        "sum": float(data.astype(np.float64).sum()),
        # Order-sensitive checksum: a transposed or flipped array gives another value.
        "weighted": float((data.astype(np.float64) * index_weights(data.shape)).sum()),
        "max": float(data.max()),
        "labels": sorted(int(v) for v in np.unique(data)) if path.name == "seg.nii.gz" else None,
    }


def main() -> None:
    root = Path(sys.argv[1])
    out = {}
    for sub in sorted(root.glob("sub-*")):
        out[sub.name] = {f.name: describe(f) for f in sorted(sub.glob("*.nii.gz"))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
