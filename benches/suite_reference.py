"""The reference side of the benchmark suite's short comparisons (benches/run drives it; the
medsynth side is benches/suite.rs, the same tasks on the files `suite prepare DIR` made).

Usage: suite_reference.py TASK DIR
Runs TASK once untimed (imports and caches warm), then once timed, and prints JSON
{"seconds": ...}. Tasks and the calls users would make:
  nifti-read        nibabel: nib.load(path).get_fdata(dtype=float32)
  dicom-read        pydicom: read every file, sort along the slice normal, stack with the
                    modality rescale into float32
  preprocess        numpy/scipy: benches/preprocess_reference.py's chain, subject by subject
  preprocess-monai  MONAI: LoadImaged, EnsureChannelFirstd, ConcatItemsd, Spacingd (bilinear),
                    CropForegroundd (margin 4), ResizeWithPadOrCropd, per-channel
                    ScaleIntensityRangePercentilesd, then the foreground slices
  ssim-2d, ssim-3d  scikit-image: structural_similarity(gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False, data_range=2)
  frechet           scipy: mean and covariance of each feature set, then pytorch-fid's
                    calculate_frechet_distance (scipy.linalg.sqrtm)
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

SUBJECTS = 4
CONTRASTS = ["t1", "t1ce", "t2", "flair"]
SSIM = {"ssim-2d": (256, 256), "ssim-3d": (128, 128, 128)}
FEATURES = (1000, 2048)


def raw(path, shape):
    return np.fromfile(path, dtype="<f4").reshape(shape)


def task(name, root):
    if name == "nifti-read":
        import nibabel as nib
        return lambda: nib.load(root / "t1.nii.gz").get_fdata(dtype=np.float32)
    if name == "dicom-read":
        sys.path.insert(0, str(Path(__file__).parent))
        from io_reference import pydicom_stack
        return lambda: pydicom_stack(root / "series")
    if name == "preprocess":
        sys.path.insert(0, str(Path(__file__).parent))
        from preprocess_reference import subject
        folders = [root / "cohort" / f"sub-{i + 1:03}" for i in range(SUBJECTS)]
        return lambda: sum(subject(f, 1.5, 4, 128, 128).shape[0] for f in folders)
    if name == "preprocess-monai":
        return monai_chain(root)
    if name in SSIM:
        from skimage.metrics import structural_similarity
        a = raw(root / f"{name}-a.f32", SSIM[name]).astype(np.float64)
        b = raw(root / f"{name}-b.f32", SSIM[name]).astype(np.float64)
        return lambda: structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=2.0)
    if name == "frechet":
        a = raw(root / "features-a.f32", FEATURES).astype(np.float64)
        b = raw(root / "features-b.f32", FEATURES).astype(np.float64)
        return lambda: frechet(a, b)
    raise SystemExit(f"unknown task {name!r}")


def frechet(a, b, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance on the two feature sets' Gaussians."""
    from scipy import linalg
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def monai_chain(root):
    import torch
    from monai.transforms import (Compose, ConcatItemsd, CropForegroundd, EnsureChannelFirstd,
                                  LoadImaged, ResizeWithPadOrCropd, ScaleIntensityRangePercentilesd,
                                  Spacingd)

    def foreground(x):
        t = torch.as_tensor(x)
        q = torch.quantile(t.reshape(t.shape[0], -1).float(), 0.99, dim=1)
        return (t > 0.2 * q.view(-1, 1, 1, 1)).any(0, keepdim=True)

    chain = Compose([
        LoadImaged(keys=CONTRASTS, image_only=True),
        EnsureChannelFirstd(keys=CONTRASTS),
        ConcatItemsd(keys=CONTRASTS, name="image"),
        Spacingd(keys="image", pixdim=(1.5, 1.5, 1.5), mode="bilinear"),
        CropForegroundd(keys="image", source_key="image", select_fn=foreground, margin=4,
                        allow_smaller=True),
        ResizeWithPadOrCropd(keys="image", spatial_size=(128, 128, -1)),
        ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=-1.0,
                                        b_max=1.0, clip=True, channel_wise=True),
    ])
    folders = [root / "cohort" / f"sub-{i + 1:03}" for i in range(SUBJECTS)]

    def run():
        n = 0
        for f in folders:
            image = chain({c: str(f / f"{c}.nii.gz") for c in CONTRASTS})["image"]
            mask = foreground(image)[0]
            n += int((mask.float().mean(dim=(0, 1)) >= 0.1).sum())
        return n

    return run


def main():
    name, root = sys.argv[1], Path(sys.argv[2])
    run = task(name, root)
    run()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    json.dump({"task": name, "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
