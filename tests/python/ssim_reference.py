"""SSIM of image pairs with scikit-image, the reference medsynth's metrics match.

Usage: ssim_reference.py FILE H W DATA_RANGE
FILE holds float32 little-endian images, pairs one after the other, each H x W row-major.
Prints JSON: a list with skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=DATA_RANGE) for each pair.
"""
import json
import sys

import numpy as np
from skimage.metrics import structural_similarity


def main():
    path, h, w, data_range = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    images = np.fromfile(path, dtype="<f4").reshape(-1, 2, h, w).astype(np.float64)
    out = [
        structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)
        for a, b in images
    ]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
