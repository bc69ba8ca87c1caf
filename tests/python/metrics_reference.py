"""Metrics with the reference implementations (scikit-image, numpy), for medsynth's tests.

Usage: metrics_reference.py FILE SHAPE DATA_RANGE
FILE holds float32 little-endian arrays of SHAPE (comma-separated, e.g. 40,44,36), three at a
time: real, fake, label. Prints JSON, one object per triple:
- "volume": skimage SSIM (gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=DATA_RANGE, or real.max() - real.min() when DATA_RANGE is 0), PSNR
  (peak_signal_noise_ratio), MSE (mean_squared_error) and MAE;
- "brasyn": each volume clipped to np.percentile 0.5 / 99.5 (lower bound at least 0) and
  scaled to [0, 1]; then SSIM (valid mean), and the full SSIM map's mean inside the tumour
  (label > 0) and the healthy region (real > 0 and label == 0), PSNR / MSE / MAE per region;
- "foreground" in both: the same under the head mask, the voxels of the real volume above
  0.2 of its 99th percentile (the nearest rank, round((n - 1) * 0.99) of the sorted values),
  as medsynth's preprocessing finds the foreground.
"""
import json
import sys

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity


def ssim(a, b, r, full=False):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=r, full=full)


def clip(x):
    lo, hi = np.percentile(x, [0.5, 99.5])
    lo = max(lo, 0.0)
    return (np.clip(x, lo, hi) - lo) / (hi - lo)


def errors(a, b, r, mask=None):
    if mask is not None:
        a, b = a[mask], b[mask]
    mse = mean_squared_error(a, b)
    return {"psnr": float(peak_signal_noise_ratio(a, b, data_range=r)), "mse": float(mse),
            "mae": float(np.mean(np.abs(a - b)))}


def main():
    path, shape, data_range = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], float(sys.argv[3])
    arrays = np.fromfile(path, dtype="<f4").reshape(-1, 3, *shape).astype(np.float64)
    out = []
    for real, fake, label in arrays:
        r = data_range or float(real.max() - real.min())
        volume = {"ssim": float(ssim(real, fake, r)), **errors(real, fake, r)}
        flat = np.sort(real.ravel().astype(np.float32))
        head = real > np.float32(0.2) * flat[int(round((flat.size - 1) * 0.99))]
        _, vfull = ssim(real, fake, r, full=True)
        volume["foreground"] = {"ssim": float(vfull[head].mean()), **errors(real, fake, r, head)}
        cr, cf = clip(real), clip(fake)
        _, full = ssim(cr, cf, 1.0, full=True)
        tumour = label > 0
        healthy = (cr > 0) & ~tumour
        brasyn = {"whole": {"ssim": float(ssim(cr, cf, 1.0)), **errors(cr, cf, 1.0)}}
        for name, mask in (("tumour", tumour), ("healthy", healthy), ("foreground", head)):
            if mask.any():
                brasyn[name] = {"ssim": float(full[mask].mean()), **errors(cr, cf, 1.0, mask)}
        out.append({"volume": volume, "brasyn": brasyn})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
