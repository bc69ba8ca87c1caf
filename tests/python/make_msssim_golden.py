"""Writes fixtures/golden/ms_ssim.json: pytorch-msssim's ms_ssim (float64) on deterministic
images that medsynth's test rebuilds identically (tests/integration/metrics.rs, lcg_image).

Usage: python tests/python/make_msssim_golden.py   (needs torch and pytorch-msssim==1.0.0)
"""
import json
import math
import os

import numpy as np
import torch
from pytorch_msssim import ms_ssim


def lcg_image(shape, seed, smooth):
    state = seed
    out = np.zeros(shape, dtype=np.float32)
    for idx in np.ndindex(*shape):
        state = (state * 1664525 + 1013904223) % (1 << 32)
        noise = np.float32(state >> 8) / np.float32(1 << 24)
        y, x = np.float32(idx[-2]), np.float32(idx[-1])
        z = np.float32(idx[0]) if len(shape) == 3 else np.float32(0)
        pattern = np.float32(math.sin(y / 9.0)) * np.float32(math.cos(x / 13.0)) + np.float32(0.3) * np.float32(math.sin(z / 3.0))
        out[idx] = pattern + np.float32(0.1) * noise if smooth else np.float32(0.5) * pattern + noise
    return out


def main():
    cases = []
    for shape, seeds, data_range in (((161, 170), (1, 2), 2.0), ((200, 180), (3, 4), 3.0), ((24, 165, 168), (5, 6), 2.5)):
        a = lcg_image(shape, seeds[0], True)
        b = lcg_image(shape, seeds[1], False)
        ta = torch.from_numpy(a.astype(np.float64))[None, None]
        tb = torch.from_numpy(b.astype(np.float64))[None, None]
        value = ms_ssim(ta, tb, data_range=data_range, size_average=True).item()
        cases.append({"shape": list(shape), "seed_a": seeds[0], "seed_b": seeds[1], "data_range": data_range, "ms_ssim": value})
    path = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "golden", "ms_ssim.json")
    with open(path, "w") as f:
        json.dump({"source": "pytorch-msssim 1.0.0 ms_ssim, float64, size_average=True", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
