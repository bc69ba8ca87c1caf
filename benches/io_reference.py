"""Times nibabel and pydicom on the files benches/io.rs made, as users would read them.

Usage: io_reference.py NIFTI DICOM_DIR REPEATS
Prints JSON: median seconds for
  nibabel_fdata:  nib.load(path).get_fdata()  (float64, the usual call)
  nibabel_raw:    np.asanyarray(nib.load(path).dataobj)  (stored int16, no scaling)
  pydicom_stack:  read every file with pydicom, sort by ImagePositionPatient along the normal,
                  stack pixel_array with the modality rescale into a float32 volume
"""
import json
import statistics
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def timed(fn, repeats):
    fn()  # warm the page cache and imports
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def pydicom_stack(folder):
    ds = [pydicom.dcmread(str(p)) for p in sorted(Path(folder).glob("*.dcm"))]
    iop = np.array(ds[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    ds.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, dtype=float))))
    return np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in ds], axis=-1)


def main():
    nii, folder, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {
        "nibabel_fdata": timed(lambda: nib.load(nii).get_fdata(), repeats),
        "nibabel_raw": timed(lambda: np.asanyarray(nib.load(nii).dataobj), repeats),
        "pydicom_stack": timed(lambda: pydicom_stack(folder), repeats),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
