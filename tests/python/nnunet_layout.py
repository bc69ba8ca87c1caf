"""Checks an nnU-Net v2 raw dataset folder the way nnU-Net's verify_dataset_integrity does,
with nibabel reading every volume.

Usage: nnunet_layout.py DATASET_DIR
Prints JSON: the problems found (empty when the layout holds), the training and test case
names, and per case the channels' shapes and whether their affines agree.
"""
import json
import os
import re
import sys

import nibabel as nib
import numpy as np


def cases(folder, ending):
    out = {}
    for f in sorted(os.listdir(folder)):
        m = re.fullmatch(r"(.+)_(\d{4})" + re.escape(ending), f)
        if not m:
            yield None, f
            continue
        out.setdefault(m.group(1), []).append(int(m.group(2)))
    for case, channels in out.items():
        yield case, sorted(channels)


def main():
    root = sys.argv[1]
    problems = []
    with open(os.path.join(root, "dataset.json")) as f:
        ds = json.load(f)
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in ds:
            problems.append(f"dataset.json lacks {key}")
    ending = ds["file_ending"]
    n_channels = len(ds["channel_names"])
    if sorted(int(k) for k in ds["channel_names"]) != list(range(n_channels)):
        problems.append("channel_names keys are not 0..N")
    label_values = sorted(ds["labels"].values())
    if label_values != list(range(len(label_values))) or ds["labels"].get("background") != 0:
        problems.append(f"labels not consecutive from background 0: {ds['labels']}")

    found = {}
    for sub in ("imagesTr", "imagesTs"):
        found[sub] = []
        for case, channels in cases(os.path.join(root, sub), ending):
            if case is None:
                problems.append(f"{sub}/{channels}: not CASE_XXXX{ending}")
                continue
            found[sub].append(case)
            if channels != list(range(n_channels)):
                problems.append(f"{sub}/{case}: channels {channels}, expected 0..{n_channels - 1}")
                continue
            imgs = [nib.load(os.path.join(root, sub, f"{case}_{k:04d}{ending}")) for k in channels]
            shapes = {tuple(i.shape) for i in imgs}
            if len(shapes) != 1:
                problems.append(f"{sub}/{case}: channel shapes differ {shapes}")
            if not all(np.allclose(i.affine, imgs[0].affine, atol=1e-4) for i in imgs):
                problems.append(f"{sub}/{case}: channel affines differ")
            for i, img in zip(channels, imgs):
                if not np.isfinite(img.get_fdata()).all():
                    problems.append(f"{sub}/{case}_{i:04d}: non-finite voxels")
            if sub == "imagesTr":
                lp = os.path.join(root, "labelsTr", case + ending)
                if not os.path.exists(lp):
                    problems.append(f"imagesTr/{case}: no label")
                    continue
                lab = nib.load(lp)
                if tuple(lab.shape) != tuple(imgs[0].shape) or not np.allclose(lab.affine, imgs[0].affine, atol=1e-4):
                    problems.append(f"labelsTr/{case}: grid differs from its images")
                values = np.unique(np.asanyarray(lab.dataobj))
                if not set(values.tolist()) <= set(label_values):
                    problems.append(f"labelsTr/{case}: values {values.tolist()} not all declared")
    labels = sorted(f[: -len(ending)] for f in os.listdir(os.path.join(root, "labelsTr")))
    if labels != sorted(found["imagesTr"]):
        problems.append(f"labelsTr {labels} != imagesTr cases {found['imagesTr']}")
    if ds["numTraining"] != len(found["imagesTr"]):
        problems.append(f"numTraining {ds['numTraining']} != {len(found['imagesTr'])} cases")
    json.dump({
        "problems": problems,
        "training": found["imagesTr"],
        "test": found["imagesTs"],
        "channel_names": ds["channel_names"],
        "synthetic": ds.get("medsynth_synthetic", {}),
    }, sys.stdout)


if __name__ == "__main__":
    main()
