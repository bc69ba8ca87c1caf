"""The preprocessing chain of benches/preprocess.rs written with numpy and scipy, as a lab
would without medsynth: for each subject, load four contrasts with nibabel, resample to the
target spacing with scipy.ndimage.affine_transform (trilinear, order=1), take the union of
foreground masks (above 0.2 of each contrast's 99th percentile), crop to its bounding box plus
a margin, pad or crop centred to the slice size, clip each contrast to its foreground 0.5/99.5
percentiles and map to [-1, 1], and cut axial slices with at least 10 % foreground.
The same chain in MONAI is benches/suite_reference.py's `preprocess-monai`.

Usage: preprocess_reference.py DIR SPACING MARGIN ROWS COLS REPEATS
Prints JSON: median seconds for the whole set, and the number of slices made.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CONTRASTS = ["t1", "t1ce", "t2", "flair"]


def resample(data, affine, spacing):
    old = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    shape = np.maximum(np.round(np.array(data.shape) * old / spacing).astype(int), 1)
    # Output voxel v samples input voxel (v + 0.5) * spacing / old - 0.5 (corners kept).
    ratio = spacing / old
    offset = 0.5 * ratio - 0.5
    return ndimage.affine_transform(data, ratio, offset=offset, output_shape=tuple(shape), order=1, mode="constant", cval=0.0)


def subject(folder, spacing, margin, rows, cols):
    vols = []
    for c in CONTRASTS:
        img = nib.load(folder / f"{c}.nii.gz")
        vols.append(resample(img.get_fdata(dtype=np.float32), img.affine, spacing))
    mask = np.zeros(vols[0].shape, bool)
    for v in vols:
        mask |= v > 0.2 * np.percentile(v, 99)
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    vols = [v[box] for v in vols]
    mask = mask[box]

    def fit(a):
        out = np.zeros((cols, rows, a.shape[2]), a.dtype)
        src, dst = [], []
        for n, want in zip(a.shape[:2], (cols, rows)):
            start = (n - want) // 2
            s0, d0 = max(start, 0), max(-start, 0)
            length = min(n - s0, want - d0)
            src.append(slice(s0, s0 + length))
            dst.append(slice(d0, d0 + length))
        out[dst[0], dst[1]] = a[src[0], src[1]]
        return out

    vols = [fit(v) for v in vols]
    mask = fit(mask)
    normed = []
    for v in vols:
        lo_, hi_ = np.percentile(v[mask], [0.5, 99.5])
        normed.append((np.clip(v, lo_, hi_) - lo_) / (hi_ - lo_) * 2 - 1)
    stack = np.stack(normed)  # C, x, y, z
    keep = mask.mean(axis=(0, 1)) >= 0.1
    return np.ascontiguousarray(stack[:, :, :, keep].transpose(3, 0, 2, 1))  # N, C, H(y), W(x)


def main():
    root = Path(sys.argv[1])
    spacing = float(sys.argv[2])
    margin, rows, cols, repeats = (int(x) for x in sys.argv[3:7])
    folders = sorted(p for p in root.iterdir() if p.is_dir())

    def run():
        return sum(subject(f, spacing, margin, rows, cols).shape[0] for f in folders)

    n = run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    json.dump({"seconds": statistics.median(times), "slices": n}, sys.stdout)


if __name__ == "__main__":
    main()
