"""Writes fixtures/golden/wilcoxon.json: scipy.stats.wilcoxon (two-sided, its defaults) on
paired samples that cover the exact distribution, zero differences, tied ranks (the normal
approximation) and more than 50 pairs. medsynth's test (tests/integration/metrics.rs) reads the pairs
and the answers from the file.

Usage: python tests/python/make_wilcoxon_golden.py   (needs numpy and scipy)
"""
import json
import os

import numpy as np
import scipy
from scipy.stats import wilcoxon


def main():
    rng = np.random.default_rng(7)
    cases = []
    for name, n, shift, rounding in (
        ("exact-5", 5, 0.3, None),
        ("exact-6-all-positive", 6, 5.0, None),
        ("exact-12", 12, 0.2, None),
        ("exact-20-null", 20, 0.0, None),
        ("ties-approx-15", 15, 0.4, 1),
        ("zeros-approx-10", 10, 0.0, 0),
        ("approx-60", 60, 0.15, None),
        ("ties-permutation-9", 9, 0.3, 1),
    ):
        x = rng.normal(size=n)
        y = x - shift - rng.normal(scale=0.5, size=n)
        if rounding is not None:
            x, y = np.round(x, rounding), np.round(y, rounding)
        res = wilcoxon(x, y)
        cases.append(
            {
                "name": name,
                "x": x.tolist(),
                "y": y.tolist(),
                "statistic": float(res.statistic),
                "p": float(res.pvalue),
            }
        )
    out = {"scipy": scipy.__version__, "cases": cases}
    path = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "golden", "wilcoxon.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
