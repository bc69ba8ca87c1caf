"""Reads a medsynth slice store with the reference readers: safetensors (numpy) and pyarrow.

Usage: store_reference.py SHARD MANIFEST
Prints JSON: the shard's tensor names, shapes, dtype, metadata, sum and an index-weighted sum,
and the manifest's column names, types and rows.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.numpy import load_file


def main():
    shard, manifest = sys.argv[1], sys.argv[2]
    tensors = load_file(shard)
    with safe_open(shard, framework="numpy") as f:
        metadata = f.metadata()
    t = tensors["slices"]
    n, c, h, w = np.indices(t.shape, dtype=np.float64)
    table = pq.read_table(manifest)
    out = {
        "names": sorted(tensors),
        "shape": list(t.shape),
        "dtype": str(t.dtype),
        "metadata": metadata,
        "sum": float(t.astype(np.float64).sum()),
        "weighted": float((t.astype(np.float64) * (1 + w + 3 * h + 11 * c + 101 * n)).sum()),
        "columns": table.column_names,
        "types": [str(x) for x in table.schema.types],
        "rows": table.to_pylist(),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
