"""Writes fixtures/golden/fid.json: Fréchet distances from pytorch-fid's
calculate_frechet_distance and unbiased polynomial-kernel MMD² (KID per subset) from
torch-fidelity, on feature sets both sides compute from the same closed-form formula.

Usage (a venv with numpy, scipy, torch, torchvision, pytorch-fid, torch-fidelity):
    python tests/python/make_fid_golden.py > fixtures/golden/fid.json
"""
import json
import sys

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_kid import kernel_poly, mmd2
import pytorch_fid
import torch_fidelity


def features(kind, n, d):
    """The formula tests/integration/metrics.rs uses too."""
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    if kind == "a":
        return np.sin(0.37 * i * (j + 1.0) + 0.11 * j) + 0.05 * j
    if kind == "b":
        return 1.2 * np.cos(0.29 * i * (j + 2.0)) + 0.1
    if kind == "c":
        return np.sin(0.37 * i * (j + 1.0) + 0.11 * j) + 0.05 * j + 0.01 * np.cos(1.7 * i + j)
    raise ValueError(kind)


def main():
    cases = []
    # The last two have fewer vectors than dimensions (singular covariances), as a small test
    # split's 2048-d Inception features do.
    for (ka, kb, n, d) in [("a", "b", 64, 12), ("a", "c", 64, 12), ("b", "c", 200, 32), ("a", "a", 50, 8),
                           ("a", "b", 12, 40), ("b", "c", 20, 64)]:
        x, y = features(ka, n, d), features(kb, n, d)
        mu1, s1 = x.mean(axis=0), np.cov(x, rowvar=False)
        mu2, s2 = y.mean(axis=0), np.cov(y, rowvar=False)
        fd = float(calculate_frechet_distance(mu1, s1, mu2, s2))
        kw = dict(kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
        m = float(mmd2(kernel_poly(x, x, **kw), kernel_poly(x, y, **kw), kernel_poly(y, y, **kw)))
        cases.append({"a": ka, "b": kb, "n": n, "d": d, "frechet": fd, "mmd2": m})
    json.dump({
        "generator": "tests/python/make_fid_golden.py",
        "pytorch_fid": pytorch_fid.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "cases": cases,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
