"""Checks a medsynth run folder with the reference readers (pyarrow, safetensors, nibabel).

Usage: run_reference.py RUN_DIR
Prints JSON: every provenance row with whether its file exists and its SHA-256 matches, the
manifest rows, and per shard its shape, channel names, which channels are all zero, and the
value of every (row, channel) at the centre pixel; plus each NIfTI artifact's shape and affine.
"""
import hashlib
import json
import os
import sys

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
from safetensors import safe_open


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    run = sys.argv[1]
    prov = pq.read_table(os.path.join(run, "provenance.parquet")).to_pylist()
    artifacts = []
    manifest_rows = []
    shards = {}
    volumes = {}
    for row in prov:
        path = row["artifact"] if os.path.isabs(row["artifact"]) else os.path.join(run, row["artifact"])
        exists = os.path.isfile(path)
        artifacts.append({
            "artifact": row["artifact"],
            "kind": row["kind"],
            "stage": row["stage"],
            "exists": exists,
            "sha_ok": exists and sha256(path) == row["sha256"],
            "subject": row["subject"],
            "sources": row["sources"],
        })
        if row["kind"] == "manifest":
            manifest_rows = pq.read_table(path).to_pylist()
            base = os.path.dirname(path)
            for r in manifest_rows:
                shard = os.path.join(base, r["shard"])
                if r["shard"] not in shards:
                    with safe_open(shard, framework="numpy") as f:
                        t = f.get_tensor("slices")
                        meta = f.metadata()
                    n, c, h, w = t.shape
                    shards[r["shard"]] = {
                        "shape": list(t.shape),
                        "channels": meta["channels"].split(","),
                        "zero_channels": [int(i) for i in range(c) if not np.any(t[:, i])],
                        "centre": t[:, :, h // 2, w // 2].astype(float).tolist(),
                        "min": float(t.min()),
                        "max": float(t.max()),
                    }
        if row["artifact"].endswith(".nii.gz"):
            img = nib.load(path)
            volumes[row["artifact"]] = {"shape": list(img.shape), "affine": img.affine.tolist()}
    json.dump({"artifacts": artifacts, "manifest": manifest_rows, "shards": shards, "volumes": volumes}, sys.stdout)


if __name__ == "__main__":
    main()
