"""Compares two NIfTI files' grids with nibabel.

Usage: same_grid.py A B
Prints JSON: both shapes, whether the affines are exactly equal, their largest difference.
"""
import json
import sys

import nibabel as nib
import numpy as np


def main():
    a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
    json.dump({
        "shape_a": list(a.shape),
        "shape_b": list(b.shape),
        "affine_equal": bool(np.array_equal(a.affine, b.affine)),
        "affine_max_diff": float(np.abs(a.affine - b.affine).max()),
        "finite": bool(np.isfinite(a.get_fdata()).all()),
    }, sys.stdout)


if __name__ == "__main__":
    main()
