"""How medsynth's DICOM reading covers public test files, next to pydicom and dcm2niix, as JSON.

Usage: dicom_coverage.py --medsynth BIN --work DIR [--table OUT.md] [FILE ...]
Without FILE arguments: every DICOM file with PixelData among pydicom's own test files
(pydicom/data/test_files/*.dcm) and the pydicom-data package's files (its data_store/data
folder). Files pydicom cannot read even a header from are skipped (said on stderr).

Each file gets its own subfolder of DIR, where:
1. pydicom reads it: header fields, and whether `ds.pixel_array` decodes; single-sample images
   are mapped as medsynth does (MONOCHROME1 inverted so bright means high: unsigned
   v -> 2^BitsStored - 1 - v, signed v -> -1 - v; then the modality LUT or rescale, taken from
   the functional groups for enhanced multi-frame objects); colour images stay raw (RGB).
2. dcm2niix converts it alone (`-s y`, 60 s limit): whether it wrote any .nii, its warnings,
   and for the first .nii the shape, data type, affine and voxels (scaling applied).
3. medsynth converts it (`BIN convert FILE SUBDIR/medsynth.nii.gz`, 120 s limit).
4. Comparisons: `values_vs_pydicom` (medsynth's planes `nii[:, :, k].T` against pydicom's
   frames, matched as a multiset, since medsynth may sort frames by position; RGB as raw
   triplets, samples over 8 bits as their top byte; lossy codestreams also "close": mean
   difference within 1%, largest within 5% of the range), `dcm2niix_vs_pydicom` (the same for dcm2niix, allowing the row flip it applies
   and its keeping MONOCHROME1 values as stored) and `geometry_vs_dcm2niix`:
   inv(A_medsynth) @ A_dcm2niix must be a signed permutation with an integer translation and
   the voxels must agree under that index map (MONOCHROME1: medsynth's inverted values must
   be a constant minus dcm2niix's). Where dcm2niix wrote no geometry (qform_code =
   sform_code = 0, i.e. no ImagePositionPatient) its affine means nothing: then the voxel sizes
   must equal its pixdim and the voxels must agree up to axis flips.
   `status` sums it up: agree, values-close-lossy, medsynth-refused (or -panicked,
   -timeout), values-differ, geometry-differs, dcm2niix-decodes-differently (grids agree, dcm2niix's voxels disagree
   with pydicom's), dcm2niix-refused (nothing to compare the geometry with),
   pydicom-undecodable, pydicom-error.

stdout: a JSON list, one record per file. --table writes the same as a markdown table.
"""
import argparse
import gzip
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

DCM2NIIX_TIMEOUT = 60
MEDSYNTH_TIMEOUT = 120
VALUE_RTOL = 1e-5  # of the reference's range, medsynth against pydicom
GRID_RTOL = 1e-4  # of the range, medsynth against dcm2niix on the mapped grid
INDEX_TOL = 1e-3  # in voxel index units, for the affine map between the two NIfTIs
# Lossy codestreams (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000 and HTJ2K that
# may be irreversible) decode a little differently from decoder to decoder (IDCT, chroma
# upsampling, colour transform rounding): there "close" means a mean difference within 1% and
# a largest within 5% of the range.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.203",
}
LOSSY_MEAN_RTOL = 0.01
LOSSY_MAX_RTOL = 0.05


# --- which files ---------------------------------------------------------------------------


def pydicom_data_dir():
    """The pydicom-data package's folder of files (its module is `data_store`), or None."""
    for name in ("data_store", "pydicom_data"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        for sub in ("data", "data_store/data"):
            d = Path(module.__file__).parent / sub
            if d.is_dir():
                return d
    print("pydicom-data is not installed: only pydicom's own test files", file=sys.stderr)
    return None


def read_dataset(path: Path, **kwargs):
    """pydicom's dataset, forcing past a missing preamble; (dataset, forced)."""
    try:
        return pydicom.dcmread(str(path), **kwargs), False
    except InvalidDicomError:
        return pydicom.dcmread(str(path), force=True, **kwargs), True


def infer_transfer_syntax(ds) -> bool:
    """Give a dataset without (0002,0010) the uncompressed transfer syntax its body was read
    in, so pydicom can decode it; whether it did."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return False
    encoding = getattr(ds, "original_encoding", None)
    if not encoding or encoding[0] is None:
        return False
    implicit, little = encoding
    if implicit and little:
        uid = ImplicitVRLittleEndian
    elif little:
        uid = ExplicitVRLittleEndian
    else:
        uid = ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return True


def default_files():
    """(source, path) for every .dcm file with PixelData in the two test collections."""
    dirs = [("pydicom", Path(pydicom.__file__).parent / "data" / "test_files")]
    extra = pydicom_data_dir()
    if extra is not None:
        dirs.append(("pydicom-data", extra))
    out = []
    for source, d in dirs:
        for f in sorted(d.glob("*.dcm")):
            try:
                ds, _ = read_dataset(f, defer_size=1024)
            except Exception as e:
                print(f"skip {f.name}: pydicom cannot read it: {one_line(e)}", file=sys.stderr)
                continue
            if "PixelData" not in ds:
                continue
            out.append((source, f))
    return out


# --- small helpers ---------------------------------------------------------------------------


def one_line(e) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def finite(x):
    """A JSON-safe float (None for NaN or infinity)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return finite(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def value_range(arr) -> float:
    if arr.size == 0:
        return 0.0
    return float(np.max(arr)) - float(np.min(arr))


def is_integral(arr) -> bool:
    if arr.dtype.kind in "iub":
        return True
    return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))


def tolerance(ref, rtol: float) -> float:
    """rtol times the reference's range (its largest magnitude, or 1, for a constant image)."""
    if ref.size == 0:
        return 0.0
    scale = value_range(ref)
    if scale == 0.0:
        scale = max(float(np.max(np.abs(ref))), 1.0)
    return rtol * scale


# --- 1. pydicom ----------------------------------------------------------------------------


def tag(ds, keyword, convert=str):
    try:
        v = ds.get(keyword)
        return None if v is None or v == "" else convert(v)
    except Exception:
        return None


def frame_rescales(ds, frames: int):
    """Per-frame (slope, intercept) from an enhanced object's functional groups, or None."""

    def first(seq_owner):
        try:
            item = seq_owner.PixelValueTransformationSequence[0]
            return float(item.RescaleSlope), float(item.RescaleIntercept)
        except Exception:
            return None

    shared = None
    if "SharedFunctionalGroupsSequence" in ds:
        shared = first(ds.SharedFunctionalGroupsSequence[0])
    per = ds.get("PerFrameFunctionalGroupsSequence")
    out = []
    for i in range(frames):
        own = first(per[i]) if per is not None and i < len(per) else None
        out.append(own or shared)
    if all(r is None for r in out):
        return None
    return [r or (1.0, 0.0) for r in out]


def modality_values(ds, arr, info):
    """medsynth's map from stored to modality values, as float64, frames first."""
    if info["photometric"] == "MONOCHROME1":
        top = -1 if info["pixel_representation"] == 1 else 2 ** int(ds.BitsStored) - 1
        arr = top - arr.astype(np.int64)
    rescales = None
    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        rescales = frame_rescales(ds, arr.shape[0])
    if rescales is not None:
        info["rescale_source"] = "functional groups"
        slope = np.array([s for s, _ in rescales])[:, None, None]
        inter = np.array([i for _, i in rescales])[:, None, None]
        return arr.astype(np.float64) * slope + inter
    if "ModalityLUTSequence" in ds:
        info["rescale_source"] = "modality LUT"
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        info["rescale_source"] = "rescale"
    else:
        info["rescale_source"] = "none"
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def palette_rgb(ds, arr):
    """A PALETTE COLOR image as 8-bit RGB (16-bit LUT entries keep their high byte)."""
    rgb = apply_color_lut(arr, ds)
    if rgb.dtype.itemsize > 1:
        rgb = (rgb >> 8).astype(np.uint8)
    return rgb


def rgb_bytes(arr, info):
    """Colour samples as NIfTI RGB24 holds them: samples of more than 8 bits keep their top 8
    (v >> (BitsStored - 8)), since RGB24 has a byte per channel."""
    if arr.dtype.itemsize == 1:
        return arr
    shift = max((info.get("bits_stored") or 8 * arr.dtype.itemsize) - 8, 0)
    info["rgb_reference"] = f"v >> {shift}"
    return (arr.astype(np.uint64) >> shift).astype(np.uint8)


def step_pydicom(path: Path):
    """(record, reference) where reference is {"scalar"|"rgb": frames-first array}."""
    ds, forced = read_dataset(path)
    inferred = infer_transfer_syntax(ds)
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    sop = ds.get("SOPClassUID")
    info = {
        "forced": forced,
        "transfer_syntax_inferred": inferred,
        "rows": tag(ds, "Rows", int),
        "columns": tag(ds, "Columns", int),
        "frames": tag(ds, "NumberOfFrames", int) or 1,
        "samples_per_pixel": tag(ds, "SamplesPerPixel", int) or 1,
        "photometric": tag(ds, "PhotometricInterpretation"),
        "bits_allocated": tag(ds, "BitsAllocated", int),
        "bits_stored": tag(ds, "BitsStored", int),
        "pixel_representation": tag(ds, "PixelRepresentation", int),
        "transfer_syntax": str(ts) if ts else None,
        "transfer_syntax_name": ts.name if ts else None,
        "lossy": str(ts) in LOSSY_SYNTAXES if ts else False,
        "sop_class": sop.name if sop else None,
        "modality": tag(ds, "Modality"),
        "has": {
            k: k in ds
            for k in (
                "ImageOrientationPatient",
                "ImagePositionPatient",
                "PixelSpacing",
                "ImagerPixelSpacing",
                "SliceThickness",
                "SpacingBetweenSlices",
                "SharedFunctionalGroupsSequence",
                "PerFrameFunctionalGroupsSequence",
            )
        },
    }
    for k in ("PixelSpacing", "ImagerPixelSpacing", "ImageOrientationPatient",
              "ImagePositionPatient"):
        if k in ds:
            info[k] = tag(ds, k, lambda v: [float(x) for x in v])
    for k in ("SliceThickness", "SpacingBetweenSlices", "GantryDetectorTilt"):
        if k in ds:
            info[k] = tag(ds, k, float)
    reference = {}
    try:
        arr = ds.pixel_array
        spp = info["samples_per_pixel"]
        shape = (info["frames"], info["rows"], info["columns"]) + ((spp,) if spp > 1 else ())
        arr = arr.reshape(shape)
        if spp == 1:
            reference["scalar"] = modality_values(ds, arr, info)
            if info["photometric"] == "MONOCHROME1":
                plain = dict(info, photometric="MONOCHROME2")
                reference["scalar_not_inverted"] = modality_values(ds, arr, plain)
            if info["photometric"] == "PALETTE COLOR":
                try:
                    reference["rgb"] = palette_rgb(ds, arr)
                except Exception as e:
                    info["palette_error"] = one_line(e)
        else:
            reference["rgb"] = rgb_bytes(arr, info)
        info["decoded"] = True
        info["decoded_dtype"] = str(arr.dtype)
        main = reference.get("scalar", reference.get("rgb"))
        info["min"] = finite(np.min(main))
        info["max"] = finite(np.max(main))
    except Exception as e:
        info["decoded"] = False
        info["decode_error"] = one_line(e)
    return info, reference


# --- NIfTI reading ---------------------------------------------------------------------------


def raw_header(path: Path):
    """The header fields as written (nibabel's loader fixes some, e.g. zero pixdim)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        hdr = nib.Nifti1Header.from_fileobj(f, check=False)
    return {
        "pixdim": [float(x) for x in hdr["pixdim"][:5]],
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "srow": [[float(x) for x in hdr[k]] for k in ("srow_x", "srow_y", "srow_z")],
        "quatern": [float(hdr[k]) for k in ("quatern_b", "quatern_c", "quatern_d",
                                            "qoffset_x", "qoffset_y", "qoffset_z")],
    }


def load_nifti(path: Path):
    """(description, data): RGB24 images as uint8 with a trailing channel axis, the rest as
    float64 with scl_slope/scl_inter applied."""
    img = nib.load(str(path))
    dt = img.get_data_dtype()
    hdr = img.header
    if dt.names:
        raw = np.asanyarray(img.dataobj.get_unscaled())
        data = np.stack([raw[n] for n in dt.names], axis=-1)
    else:
        data = img.get_fdata(dtype=np.float64)
    raw = raw_header(path)
    desc = {
        "shape": list(img.shape),
        "datatype": int(hdr["datatype"]),
        "dtype": str(dt),
        "rgb": bool(dt.names),
        "affine": img.affine.tolist(),
        "pixdim": [float(x) for x in hdr["pixdim"][1 : 1 + len(img.shape)]],
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "raw": raw,
        "scl_slope": finite(hdr["scl_slope"]),
        "scl_inter": finite(hdr["scl_inter"]),
        "min": finite(np.min(data)) if data.size else None,
        "max": finite(np.max(data)) if data.size else None,
    }
    return desc, data, img.affine


# --- 2. dcm2niix ---------------------------------------------------------------------------


def step_dcm2niix(path: Path, sub: Path, rows=None, cols=None):
    """dcm2niix on the file alone; `usable` when it wrote the image (not a 1x1 stand-in for
    pixel data it could not decode)."""
    out = {"converted": False, "usable": False}
    cmd = ["dcm2niix", "-z", "n", "-b", "n", "-s", "y", "-f", "out", "-o", str(sub), str(path)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                           timeout=DCM2NIIX_TIMEOUT)
    except subprocess.TimeoutExpired:
        out["error"] = f"timed out after {DCM2NIIX_TIMEOUT} s"
        return out, None
    lines = (p.stdout + p.stderr).splitlines()
    out["rc"] = p.returncode
    out["warnings"] = [ln.strip() for ln in lines if ln.startswith("Warning")]
    out["messages"] = [ln.strip() for ln in lines[1:] if ln.strip()
                       and not ln.startswith(("Warning", "Conversion required"))][:20]
    errors = [ln.strip() for ln in lines if ln.lower().startswith("error")]
    if errors:
        out["errors"] = errors
    files = sorted(sub.glob("*.nii"))
    out["files"] = [f.name for f in files]
    out["count"] = len(files)
    out["converted"] = bool(files)
    if not files:
        return out, None
    try:
        desc, data, affine = load_nifti(files[0])
    except Exception as e:
        out["load_error"] = one_line(e)
        return out, None
    out.update(desc)
    unsupported = any("Unsupported transfer syntax" in w for w in out["warnings"])
    plane = sorted(desc["shape"][:2] + [1] * (2 - len(desc["shape"][:2])))
    if rows is None or cols is None:
        fits = int(np.prod(desc["shape"])) > 1
    else:
        fits = plane == sorted([rows, cols])
    out["usable"] = not unsupported and fits
    return out, (data, affine)


# --- 3. medsynth ---------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def skip_reasons(binary: str, path: Path, target: Path):
    """Why medsynth skipped the file as not a DICOM image (its debug log says)."""
    try:
        p = subprocess.run([binary, "convert", "-v", str(path), str(target)],
                           capture_output=True, text=True, errors="replace",
                           timeout=MEDSYNTH_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError):
        return []
    lines = [ANSI.sub("", ln) for ln in p.stderr.splitlines()]
    return [ln.split(" reason=", 1)[1].strip() for ln in lines
            if "skipped" in ln and " reason=" in ln]


def step_medsynth(binary: str, path: Path, sub: Path):
    out = {"converted": False}
    target = sub / "medsynth.nii.gz"
    try:
        p = subprocess.run([binary, "convert", str(path), str(target)], capture_output=True,
                           text=True, errors="replace", timeout=MEDSYNTH_TIMEOUT)
    except subprocess.TimeoutExpired:
        out["outcome"] = "timeout"
        out["error"] = f"timed out after {MEDSYNTH_TIMEOUT} s"
        return out, None
    except OSError as e:
        out["outcome"] = "not-run"
        out["error"] = one_line(e)
        return out, None
    lines = [ANSI.sub("", ln).rstrip() for ln in p.stderr.splitlines()]
    out["rc"] = p.returncode
    out["stderr"] = "\n".join(lines)[-4000:]
    out["warnings"] = [ln for ln in lines if " WARN " in ln]
    err = next((ln for ln in lines if ln.startswith("error") or "panicked" in ln), None)
    if err:
        out["error"] = err
    causes = [ln.strip()[len("caused by:"):].strip() for ln in lines
              if ln.strip().startswith("caused by:")]
    if causes:
        out["causes"] = causes
    if p.returncode != 0:
        out["outcome"] = "panic" if p.returncode == 101 else (
            "killed" if p.returncode < 0 else "refused")
        if "see -v for reasons" in p.stderr:
            out["skip_reasons"] = skip_reasons(binary, path, target)
        return out, None
    out["outcome"] = "converted"
    out["converted"] = True
    try:
        desc, data, affine = load_nifti(target)
        out.update(desc)
        return out, (data, affine)
    except Exception as e:
        out["load_error"] = one_line(e)
        return out, None


# --- 4. comparisons ------------------------------------------------------------------------


def nifti_planes(data, rgb: bool):
    """A NIfTI's 2-D planes as (N, rows, cols[, 3]): plane k is nii[:, :, k...].T."""
    spatial = data.shape[:-1] if rgb else data.shape
    nx, ny = (list(spatial) + [1, 1])[:2]
    ch = (data.shape[-1],) if rgb else ()
    d = data.reshape((nx, ny, -1) + ch)
    return np.swapaxes(np.moveaxis(d, 2, 0), 1, 2)


def plane_diffs(ref, planes, order):
    """The max abs difference of each pair (planes[k], ref[order[k]]), frame by frame."""
    return np.array([
        float(np.max(np.abs(planes[k].astype(np.float64) - ref[j].astype(np.float64))))
        if ref[j].size else 0.0
        for k, j in enumerate(order)
    ])


def fingerprint(frames):
    """A few order-sensitive sums per frame, for matching frames that were re-ordered."""
    n = frames[0].size
    w = np.linspace(0.0, 1.0, n) if n > 1 else np.ones(1)
    basis = np.stack([np.ones(n), w, w * w, np.cos(7.0 * w)], axis=1)
    out = []
    for f in frames:  # one frame at a time: colour cine loops are large
        x = f.reshape(-1).astype(np.float64)
        out.append(np.append(x @ basis, x @ x))
    return np.array(out)


def greedy_order(ref, planes):
    """For each plane, the nearest unused reference frame by fingerprint."""
    fr, fp = fingerprint(ref), fingerprint(planes)
    scale = np.maximum(np.abs(fr).max(0), 1e-12)
    dist = np.abs((fp[:, None, :] - fr[None, :, :]) / scale).sum(2)
    order, used = [], set()
    for k in np.argsort(dist.min(1)):
        choice = next(j for j in np.argsort(dist[k]) if j not in used)
        used.add(choice)
        order.append((k, choice))
    return [j for _, j in sorted(order)]


def match_frames(ref, planes, tol):
    """(frame order name, order, per-plane max abs diffs) pairing each plane with a frame:
    in order, reversed, or (when neither fits) by fingerprint."""
    n = ref.shape[0]
    candidates = {"identity": list(range(n))}
    if n > 1:
        candidates["reversed"] = list(range(n))[::-1]
    best = None
    for name, order in candidates.items():
        d = plane_diffs(ref, planes, order)
        if best is None or d.max() < best[2].max():
            best = (name, order, d)
        if d.max() <= tol:
            return best
    if n > 2:
        order = greedy_order(ref, planes)
        d = plane_diffs(ref, planes, order)
        if d.max() < best[2].max():
            best = ("permuted", order, d)
    return best


# How a NIfTI's planes may relate to DICOM's frames: medsynth must match "as-is";
# for dcm2niix the script reports which one fits (it writes rows bottom-up).
PLANE_TRANSFORMS = {
    "as-is": lambda p: p,
    "rows-flipped": lambda p: p[:, ::-1],
    "columns-flipped": lambda p: p[:, :, ::-1],
    "both-flipped": lambda p: p[:, ::-1, ::-1],
}


def mean_abs_diff(ref, planes, order) -> float:
    total = sum(float(np.abs(planes[k].astype(np.float64) - ref[j].astype(np.float64)).sum())
                for k, j in enumerate(order))
    return total / max(ref.size, 1)


def values_vs_pydicom(reference, desc, data, transforms=("as-is",), kinds=None, who="medsynth",
                      lossy=False):
    """A NIfTI's voxels against pydicom's decoded values, frames matched as a multiset; the
    best fit over the plane transforms and reference kinds allowed."""
    out = {"ok": False}
    kind = "rgb" if desc["rgb"] else "scalar"
    kinds = [k for k in (kinds or [kind]) if k in reference and k.startswith(kind)]
    out["compared_as"] = kind
    if not kinds:
        have = ", ".join(reference) or "nothing"
        out["reason"] = f"{who} wrote {kind} voxels, pydicom gives {have}"
        return out
    planes0 = nifti_planes(data, desc["rgb"])
    best = None
    for k in kinds:
        ref = reference[k]
        if planes0.shape[1:] != ref.shape[1:] or planes0.shape[0] != ref.shape[0]:
            out["reason"] = (f"planes {list(planes0.shape)} (n, rows, cols) against pydicom "
                             f"frames {list(ref.shape)}")
            continue
        tol = tolerance(ref, VALUE_RTOL) if kind == "scalar" else 0.0
        for t in transforms:
            name, order, d = match_frames(ref, PLANE_TRANSFORMS[t](planes0), tol)
            diff = float(d.max()) if d.size else 0.0
            if best is None or diff - tol < best[0] - best[1]:
                best = (diff, tol, k, t, name, order, d)
    if best is None:
        return out
    out.pop("reason", None)
    diff, tol, k, t, name, order, d = best
    out["max_abs_diff"] = diff
    out["tolerance"] = tol
    out["ok"] = bool(diff <= tol)
    if not out["ok"]:
        ref = reference[k]
        mean = mean_abs_diff(ref, PLANE_TRANSFORMS[t](planes0), order)
        scale = value_range(ref) or 1.0
        out["mean_abs_diff"] = mean
        if lossy:
            out["lossy"] = True
            out["close"] = bool(mean <= LOSSY_MEAN_RTOL * scale and diff <= LOSSY_MAX_RTOL * scale)
        if not out.get("close"):
            out["reason"] = (f"{who}'s values differ from pydicom's by up to {diff:g} "
                             f"(mean {mean:.3g})")
    out["frame_order"] = name
    if len(transforms) > 1:
        out["plane_transform"] = t
    if len(kinds) > 1:
        out["reference"] = k
    if name == "permuted":
        out["order"] = [int(j) for j in order]
    if not out["ok"]:
        out["frames_differing"] = int((d > tol).sum())
    return out


def spatial_shape(desc):
    """A NIfTI's shape as 3 spatial sizes plus the rest (time, ...), channels left out."""
    shape = list(desc["shape"])
    shape3 = (shape[:3] + [1, 1, 1])[:3]
    return shape3, shape[3:]


def pad_spatial(data, desc):
    """The data with singleton axes added so it has 3 spatial axes (before any channel)."""
    shape3, rest = spatial_shape(desc)
    ch = (data.shape[-1],) if desc["rgb"] else ()
    return data.reshape(tuple(shape3) + tuple(rest) + ch)


def affine_map(a_m, a_d, shape_m, shape_d):
    """The dcm2niix -> medsynth voxel index map: per dcm2niix axis, (medsynth axis, sign,
    offset), plus deviations; raises ValueError with the reason when it is no such map."""
    m = np.linalg.inv(a_m) @ a_d
    rot, trans = m[:3, :3], m[:3, 3]
    axes, rot_dev, scale_dev = [], 0.0, 0.0
    for a in range(3):
        col = rot[:, a]
        k = int(np.argmax(np.abs(col)))
        off = np.delete(col, k)
        rot_dev = max(rot_dev, float(np.max(np.abs(off))))
        if shape_d[a] > 1:
            scale_dev = max(scale_dev, abs(abs(col[k]) - 1.0))
        axes.append((k, 1 if col[k] > 0 else -1, float(col[k])))
    trans_dev = float(np.max(np.abs(trans - np.round(trans))))
    info = {
        "matrix": m.tolist(),
        "rotation_deviation": rot_dev,
        "scale_deviation": scale_dev,
        "translation_deviation": trans_dev,
        "strict": bool(np.all(np.abs(np.abs(rot) - np.round(np.abs(rot))) < INDEX_TOL)
                       and trans_dev < INDEX_TOL and rot_dev < INDEX_TOL),
    }
    if rot_dev > INDEX_TOL or scale_dev > INDEX_TOL:
        raise ValueError("not a signed permutation", info)
    if sorted(k for k, _, _ in axes) != [0, 1, 2]:
        raise ValueError("two axes map to one", info)
    if trans_dev > INDEX_TOL:
        raise ValueError("translation is not a whole number of voxels", info)
    flat = [a for a in range(3) if shape_d[a] == 1 and abs(abs(axes[a][2]) - 1.0) > INDEX_TOL]
    if flat:
        info["flat_axis_scale"] = [axes[a][2] for a in flat]
    return [(k, s, int(round(trans[k]))) for k, s, _ in axes], info


def voxel_relation(m, d, monochrome1: bool, lossy: bool):
    """How medsynth's voxels m relate to dcm2niix's d on one grid: "equal", or (MONOCHROME1
    only: dcm2niix keeps the stored values, medsynth inverts them) "inverted", where m + d
    is one constant, or (lossy codestreams only) "close"; with the deviation and tolerance,
    or None when none holds."""
    if d.size == 0:
        return "equal", 0.0, 0.0
    tol = 0.0 if is_integral(d) and is_integral(m) else tolerance(d, GRID_RTOL)
    # slice by slice along the third axis, to keep float64 copies of large volumes small
    diff, total_abs, lo, hi = 0.0, 0.0, math.inf, -math.inf
    for k in range(d.shape[2]):
        mk = m[:, :, k].astype(np.float64)
        dk = d[:, :, k].astype(np.float64)
        gap = np.abs(mk - dk)
        diff, total_abs = max(diff, float(gap.max())), total_abs + float(gap.sum())
        if monochrome1:
            total = mk + dk
            lo, hi = min(lo, float(total.min())), max(hi, float(total.max()))
    if diff <= tol:
        return "equal", diff, tol
    if monochrome1 and hi - lo <= tol:
        return "inverted", hi - lo, tol
    scale = value_range(d) or 1.0
    if lossy and total_abs / d.size <= LOSSY_MEAN_RTOL * scale and diff <= LOSSY_MAX_RTOL * scale:
        return "close", diff, tol
    return None, diff, tol


def without_geometry(m_desc, m, m_affine, d_desc, d, out, monochrome1, lossy):
    """dcm2niix wrote qform_code = sform_code = 0 (no DICOM position): there is no world grid
    to share, so compare the voxel sizes (its pixdim, 0 read as 1 like nibabel) and the
    voxels up to flips of the axes (dcm2niix stores rows bottom-up)."""
    out["mode"] = "dcm2niix wrote no geometry (qform_code = sform_code = 0)"
    shape3, _ = spatial_shape(d_desc)
    pixdim = [x if x > 0 else 1.0 for x in d_desc["raw"]["pixdim"][1:4]]
    zooms = np.linalg.norm(m_affine[:3, :3], axis=0)
    out["pixdim_dcm2niix"] = pixdim
    out["voxel_size_medsynth"] = zooms.tolist()
    checked = [a for a in range(3) if shape3[a] > 1]
    dev = max([abs(zooms[a] - pixdim[a]) / pixdim[a] for a in checked] or [0.0])
    out["spacing_deviation"] = dev
    out["spacing_ok"] = bool(dev <= GRID_RTOL)
    out["grid_ok"] = out["spacing_ok"]
    best = None
    for flips in itertools.product((False, True), repeat=3):
        if any(f and shape3[a] == 1 for a, f in enumerate(flips)):
            continue
        view = d[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
        relation, diff, tol = voxel_relation(m, view, monochrome1, lossy)
        if best is None or (relation and not best[1]) or (not best[1] and diff < best[2]):
            best = (flips, relation, diff, tol)
        if relation:
            break
    flips, relation, diff, tol = best
    out["flipped_axes"] = [a for a, f in enumerate(flips) if f]
    out["max_abs_diff"] = diff
    out["tolerance"] = tol
    out["voxels_ok"] = relation is not None
    if relation:
        out["voxel_relation"] = relation
    out["ok"] = out["voxels_ok"] and out["spacing_ok"]
    if not out["voxels_ok"]:
        out["reason"] = f"voxels differ by up to {diff:g} under any flip"
    elif not out["spacing_ok"]:
        out["reason"] = f"voxel size {zooms.round(6).tolist()} vs pixdim {pixdim}"
    return out


def geometry_vs_dcm2niix(m_desc, m_data, m_affine, d_desc, d_data, d_affine, monochrome1=False,
                         lossy=False):
    """Whether both NIfTIs hold the same voxels on the same world grid."""
    out = {"ok": False, "affine_medsynth": m_affine.tolist(),
           "affine_dcm2niix": d_affine.tolist()}
    if m_desc["rgb"] != d_desc["rgb"]:
        out["reason"] = f"rgb: medsynth {m_desc['rgb']}, dcm2niix {d_desc['rgb']}"
        return out
    shape_m, rest_m = spatial_shape(m_desc)
    shape_d, rest_d = spatial_shape(d_desc)
    if rest_m != rest_d:
        out["reason"] = f"shapes {m_desc['shape']} (medsynth) vs {d_desc['shape']} (dcm2niix)"
        return out
    m = pad_spatial(m_data, m_desc)
    d = pad_spatial(d_data, d_desc)
    raw = d_desc.get("raw", {})
    if raw.get("qform_code") == 0 and raw.get("sform_code") == 0:
        if shape_m != shape_d:
            out["reason"] = f"shapes {m_desc['shape']} (medsynth) vs {d_desc['shape']} (dcm2niix)"
            return out
        return without_geometry(m_desc, m, m_affine, d_desc, d, out, monochrome1, lossy)
    try:
        index_map, info = affine_map(m_affine, d_affine, shape_m, shape_d)
    except ValueError as e:
        out["reason"] = e.args[0]
        out.update(e.args[1])
        return out
    except np.linalg.LinAlgError as e:
        out["reason"] = f"singular affine: {one_line(e)}"
        return out
    out.update(info)
    out["grid_ok"] = True
    picks = []
    for a, (k, s, t) in enumerate(index_map):
        if shape_m[k] != shape_d[a]:
            out["grid_ok"] = False
            out["reason"] = f"axis {a} of dcm2niix ({shape_d[a]}) vs axis {k} ({shape_m[k]})"
            return out
        idx = s * np.arange(shape_d[a]) + t
        if idx.min() < 0 or idx.max() >= shape_m[k]:
            out["grid_ok"] = False
            out["reason"] = f"axis {a} maps outside medsynth's grid (offset {t})"
            return out
        picks.append(idx)
    order = [k for k, _, _ in index_map] + list(range(3, m.ndim))
    m = m.transpose(order)[picks[0]][:, picks[1]][:, :, picks[2]]
    relation, diff, tol = voxel_relation(m, d, monochrome1, lossy)
    out["max_abs_diff"] = diff
    out["tolerance"] = tol
    out["voxels_ok"] = relation is not None
    if relation:
        out["voxel_relation"] = relation
    out["ok"] = out["voxels_ok"]
    if not out["ok"]:
        out["reason"] = f"voxels differ by up to {diff:g}"
    return out


def summary(rec):
    p, d, m = rec["pydicom"], rec.get("dcm2niix", {}), rec.get("medsynth", {})
    if "error" in p:
        return "pydicom-error"
    outcome = m.get("outcome")
    if outcome != "converted":
        return {"timeout": "medsynth-timeout", "panic": "medsynth-panicked",
                "killed": "medsynth-crashed", "not-run": "medsynth-not-run"}.get(
            outcome, "medsynth-refused")
    if "load_error" in m:
        return "medsynth-unreadable"
    v, g = rec.get("values_vs_pydicom"), rec.get("geometry_vs_dcm2niix")
    if v is not None and not v.get("ok") and not v.get("close"):
        return "values-differ"
    if g is not None and not g.get("ok"):
        dv = rec.get("dcm2niix_vs_pydicom")
        if g.get("grid_ok") and dv is not None and not dv.get("ok"):
            return "dcm2niix-decodes-differently"  # the grids agree; dcm2niix's voxels are off
        return "geometry-differs"
    if not d.get("usable"):
        return "dcm2niix-refused"
    if v is None:
        return "pydicom-undecodable"
    if not v.get("ok"):
        return "values-close-lossy"  # within what lossy decoders differ by; geometry agrees
    return "agree"


def describe(source: str, path: Path, sub: Path, binary: str):
    rec = {"file": path.name, "source": source, "path": str(path), "work": str(sub)}
    if sub.exists():
        shutil.rmtree(sub)
    sub.mkdir(parents=True)
    reference = {}
    try:
        rec["pydicom"], reference = step_pydicom(path)
    except Exception as e:
        rec["pydicom"] = {"error": one_line(e)}
    try:
        rec["dcm2niix"], d_nii = step_dcm2niix(path, sub, rec["pydicom"].get("rows"),
                                               rec["pydicom"].get("columns"))
    except Exception as e:
        rec["dcm2niix"], d_nii = {"converted": False, "error": one_line(e)}, None
    try:
        rec["medsynth"], m_nii = step_medsynth(binary, path, sub)
    except Exception as e:
        rec["medsynth"], m_nii = {"converted": False, "error": one_line(e)}, None
    if m_nii is not None and reference:
        try:
            rec["values_vs_pydicom"] = values_vs_pydicom(
                reference, rec["medsynth"], m_nii[0], lossy=rec["pydicom"].get("lossy", False))
        except Exception as e:
            rec["values_vs_pydicom"] = {"ok": False, "reason": f"comparison failed: {one_line(e)}"}
    if d_nii is not None and reference and rec["dcm2niix"]["usable"]:
        try:
            rec["dcm2niix_vs_pydicom"] = values_vs_pydicom(
                reference, rec["dcm2niix"], d_nii[0], transforms=tuple(PLANE_TRANSFORMS),
                kinds=["scalar", "scalar_not_inverted", "rgb"], who="dcm2niix",
                lossy=rec["pydicom"].get("lossy", False))
        except Exception as e:
            rec["dcm2niix_vs_pydicom"] = {"ok": False,
                                          "reason": f"comparison failed: {one_line(e)}"}
    if m_nii is not None and d_nii is not None and rec["dcm2niix"].get("usable"):
        try:
            rec["geometry_vs_dcm2niix"] = geometry_vs_dcm2niix(
                rec["medsynth"], m_nii[0], m_nii[1], rec["dcm2niix"], d_nii[0], d_nii[1],
                rec["pydicom"].get("photometric") == "MONOCHROME1",
                rec["pydicom"].get("lossy", False))
        except Exception as e:
            rec["geometry_vs_dcm2niix"] = {"ok": False,
                                           "reason": f"comparison failed: {one_line(e)}"}
    rec["status"] = summary(rec)
    return rec


# --- 5. the table ----------------------------------------------------------------------------


def shorten(text: str, rec) -> str:
    """A message without the file's folder (paths make the table unreadable)."""
    folder = str(Path(rec["path"]).parent)
    text = text.replace(rec["path"], rec["file"]).replace(folder + "/", "").replace(folder, ".")
    text = text.replace(rec.get("work", "") + "/", "")
    return re.sub(r"\s+", " ", text).strip()


def dcm2niix_reason(d) -> str:
    """Why dcm2niix wrote nothing usable: its error, else its most specific warning."""
    if d.get("error"):
        return d["error"]
    if d.get("errors"):
        return d["errors"][0]
    refusals = [m for m in d.get("messages", []) if m.startswith(("Unsupported", "Unable to"))]
    if refusals and not d.get("converted"):
        return refusals[0]
    specific = [w for w in d.get("warnings", []) if "manufacturer" not in w]
    if specific:
        return specific[0]
    if d.get("converted"):
        return f"wrote {'x'.join(str(x) for x in d.get('shape', []))} only"
    rc = d.get("rc")
    if rc is not None and rc < 0:
        return f"crashed (signal {-rc})"
    return f"no output (exit {rc})"


def short_reason(rec) -> str:
    p, d, m = rec["pydicom"], rec.get("dcm2niix", {}), rec.get("medsynth", {})
    notes = []
    if "error" in p:
        notes.append(f"pydicom: {p['error']}")
    elif not p.get("decoded"):
        notes.append(f"pydicom: {p.get('decode_error', '?')}")
    if m.get("outcome") != "converted":
        text = (m.get("causes") or [m.get("error") or f"exit {m.get('rc')}"])[-1]
        if m.get("skip_reasons"):
            text = "skipped: " + m["skip_reasons"][0]
        text = re.sub(r"^series \S+ \([^)]*\): ", "", shorten(text, rec))
        notes.append(re.sub(r"^\S+\.dcm: ", "", text))
    else:
        v, g = rec.get("values_vs_pydicom"), rec.get("geometry_vs_dcm2niix")
        notes += [x["reason"] for x in (v, g) if x and not x.get("ok") and x.get("reason")]
        dv = rec.get("dcm2niix_vs_pydicom")
        if dv and not dv.get("ok") and dv.get("reason"):
            notes.append(dv["reason"])
        if g and not g.get("ok") and p.get("GantryDetectorTilt"):
            notes.append(f"gantry tilt {p['GantryDetectorTilt']:g} deg: dcm2niix shears the grid")
    if not d.get("usable"):
        notes.append("dcm2niix: " + shorten(dcm2niix_reason(d), rec))
    return "; ".join(notes).replace("|", "\\|")[:220]


def table_row(rec) -> str:
    p, d, m = rec["pydicom"], rec.get("dcm2niix", {}), rec.get("medsynth", {})
    sop = p.get("sop_class") or "?"
    sop = sop.replace(" Image Storage", "").replace(" Storage", "")
    size = "?"
    if p.get("rows") is not None:
        size = f"{p['columns']}x{p['rows']}x{p['frames']}, {p['samples_per_pixel']}"
    if "error" in p:
        pyd = "unreadable"
    else:
        pyd = "ok" if p.get("decoded") else "no decode"
    if d.get("usable"):
        d2n = f"ok {'x'.join(str(s) for s in d.get('shape', []))}"
        if d.get("count", 1) > 1:
            d2n += f" ({d['count']} files)"
    elif d.get("converted"):
        d2n = "stand-in " + "x".join(str(s) for s in d.get("shape", []))
    else:
        d2n = "crashed" if (d.get("rc") or 0) < 0 else "refused"
    ms = m.get("outcome", "?")
    if ms == "converted":
        ms = f"ok {'x'.join(str(s) for s in m.get('shape', []))}"
    v = rec.get("values_vs_pydicom")
    vals = "–" if v is None else ("=" if v["ok"] else f"≠ {v.get('max_abs_diff', '')}")
    if v is not None and v.get("close"):
        vals = f"≈ (lossy, max {v['max_abs_diff']:g}, mean {v['mean_abs_diff']:.2g})"
    g = rec.get("geometry_vs_dcm2niix")
    geo = "–" if g is None else ("=" if g["ok"] else "≠")
    if g is not None and g["ok"] and g.get("mode"):
        geo += " (no geometry)"
    if g is not None and g.get("voxel_relation") in ("inverted", "close"):
        geo += f" ({g['voxel_relation']})"
    cells = [rec["file"], f"{sop} / {p.get('modality') or '-'}",
             p.get("transfer_syntax_name") or "?", size, pyd, d2n, ms, vals, geo,
             short_reason(rec)]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_table(records, path: Path):
    head = ["file", "SOP class / modality", "transfer syntax", "size (cols x rows x frames, spp)",
            "pydicom", "dcm2niix", "medsynth", "values", "geometry", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [table_row(r) for r in sorted(records, key=lambda r: (r["file"], r["source"]))]
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines += ["", "Status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    path.write_text("\n".join(lines) + "\n")


# --- main ----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--medsynth", required=True, help="the medsynth binary")
    ap.add_argument("--work", required=True, type=Path, help="a folder for the outputs")
    ap.add_argument("--table", type=Path, help="also write a markdown table here")
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args()
    if args.files:
        jobs = [("arg", f) for f in args.files]
    else:
        jobs = default_files()
    args.work.mkdir(parents=True, exist_ok=True)
    records, seen = [], set()
    start = time.monotonic()
    for i, (source, path) in enumerate(jobs, 1):
        name = f"{source}-{path.stem}"
        while name in seen:
            name += "_"
        seen.add(name)
        t0 = time.monotonic()
        rec = describe(source, path, args.work / name, args.medsynth)
        rec["seconds"] = round(time.monotonic() - t0, 3)
        records.append(rec)
        print(f"[{i}/{len(jobs)}] {path.name}: {rec['status']} ({rec['seconds']:.1f} s)",
              file=sys.stderr)
    print(f"{len(records)} files in {time.monotonic() - start:.0f} s", file=sys.stderr)
    if args.table:
        write_table(records, args.table)
    json.dump(jsonable(records), sys.stdout, allow_nan=False, indent=1)
    print()


if __name__ == "__main__":
    main()
