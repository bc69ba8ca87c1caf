//! NIfTI reading checked against nibabel on nibabel's own test files (big endian, scaled,
//! 4-D, NIfTI-2, sform and qform), and writing checked by reading back.

use crate::common;

use std::path::Path;

use medsynth::volume::{Affine, nifti};
use ndarray::Array3;
use serde_json::Value;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

fn weighted(v: &medsynth::volume::Volume) -> f64 {
    let factors = [1.0, 3.0, 11.0, 101.0];
    v.data
        .indexed_iter()
        .filter(|(_, x)| x.is_finite())
        .map(|((i, j, k, t), &x)| {
            let w = 1.0
                + factors[0] * i as f64
                + factors[1] * j as f64
                + factors[2] * k as f64
                + factors[3] * t as f64;
            x as f64 * w
        })
        .sum()
}

fn compare(reference: &Value) {
    let path = Path::new(reference["path"].as_str().unwrap());
    let name = path.file_name().unwrap().to_string_lossy();
    let v = nifti::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape: Vec<usize> = reference["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let mut ours = v.geometry.shape.to_vec();
    if shape.len() > 3 {
        ours.push(v.frames());
    }
    assert_eq!(ours, shape, "{name}: shape");
    for r in 0..4 {
        for c in 0..4 {
            let want = reference["affine"][r][c].as_f64().unwrap();
            let got = v.geometry.affine.0[r][c];
            assert!(
                (want - got).abs() < 1e-9,
                "{name}: affine[{r}][{c}] = {got}, nibabel {want}"
            );
        }
    }
    let finite = v.data.iter().filter(|x| x.is_finite());
    let (min, max) = v.value_range().unwrap();
    let sum: f64 = finite.map(|&x| x as f64).sum();
    assert!(
        close(min as f64, reference["min"].as_f64().unwrap(), 1e-6),
        "{name}: min {min}"
    );
    assert!(
        close(max as f64, reference["max"].as_f64().unwrap(), 1e-6),
        "{name}: max {max}"
    );
    assert!(
        close(sum, reference["sum"].as_f64().unwrap(), 1e-6),
        "{name}: sum {sum}"
    );
    assert!(
        close(weighted(&v), reference["weighted"].as_f64().unwrap(), 1e-6),
        "{name}: weighted sum"
    );
    let fortran: Vec<f32> = {
        // Fortran order: i fastest, then j, k, frame.
        let mut out = Vec::with_capacity(v.data.len());
        let s = v.data.shape();
        for t in 0..s[3] {
            for k in 0..s[2] {
                for j in 0..s[1] {
                    for i in 0..s[0] {
                        out.push(v.data[[i, j, k, t]]);
                    }
                }
            }
        }
        out
    };
    for pick in reference["samples"].as_array().unwrap() {
        let at = pick[0].as_u64().unwrap() as usize;
        match pick[1].as_f64() {
            Some(want) => assert!(
                close(fortran[at] as f64, want, 1e-6),
                "{name}: voxel {at} = {}, nibabel {want}",
                fortran[at]
            ),
            None => assert!(
                fortran[at].is_nan(),
                "{name}: voxel {at} = {}, nibabel NaN",
                fortran[at]
            ),
        }
    }
}

#[test]
fn reads_nibabels_test_files_as_nibabel_does() {
    let json = common::run_python("nifti_reference.py", &[]);
    let refs: Vec<Value> = serde_json::from_str(&json).unwrap();
    let names: Vec<String> = refs
        .iter()
        .map(|r| {
            Path::new(r["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // The files that exercise each rule must be there.
    for must in [
        "anatomical.nii",
        "example4d.nii.gz",
        "example_nifti2.nii.gz",
        "functional.nii",
        "standard.nii.gz",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "nibabel test file {must} missing: {names:?}"
        );
    }
    for r in &refs {
        compare(r);
    }
}

#[test]
fn written_files_read_back_with_sform_and_qform() {
    let dir = tempfile::tempdir().unwrap();
    // An oblique, flipped grid exercises the quaternion path.
    let (s, c) = (0.3f64.sin(), 0.3f64.cos());
    let affine = Affine([
        [-1.2 * c, 0.0, 2.5 * s, 10.0],
        [1.2 * s, 0.0, 2.5 * c, -20.0],
        [0.0, -0.9, 0.0, 31.5],
        [0.0, 0.0, 0.0, 1.0],
    ]);
    let data = Array3::from_shape_fn((7, 5, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f32 - 50.5);
    let path = dir.path().join("oblique.nii.gz");
    nifti::write(&path, data.view(), &affine, "test").unwrap();
    let back = nifti::read(&path).unwrap();
    assert_eq!(back.geometry.shape, [7, 5, 4]);
    assert_eq!(back.frame(0), data.view());
    for r in 0..4 {
        for c in 0..4 {
            assert!((back.geometry.affine.0[r][c] - affine.0[r][c]).abs() < 1e-5);
        }
    }
    // The qform (rigid part as a quaternion, qfac for the flip) gives the same affine.
    let header = nifti::read_header(&path).unwrap();
    let q = header.qform();
    for r in 0..3 {
        for c in 0..4 {
            assert!((q.0[r][c] - affine.0[r][c]).abs() < 1e-5, "qform[{r}][{c}]");
        }
    }
}

#[test]
fn bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.nii");
    nifti::write(
        &good,
        Array3::<i16>::zeros((4, 4, 4)).view(),
        &Affine::centred([4, 4, 4], [1.0; 3]),
        "",
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.nii");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let e = nifti::read(&truncated).unwrap_err().to_string();
    assert!(
        e.contains("truncated.nii is truncated") && e.contains("128 bytes"),
        "{e}"
    );

    let text = dir.path().join("notes.nii");
    std::fs::write(&text, b"hello, this is not an image at all").unwrap();
    let e = nifti::read(&text).unwrap_err().to_string();
    assert!(
        e.contains("notes.nii is not a NIfTI file") && e.contains("sizeof_hdr"),
        "{e}"
    );

    let mut zero_dim = bytes.clone();
    zero_dim[44..46].copy_from_slice(&0i16.to_le_bytes()); // dim[2] = 0
    let p = dir.path().join("zero.nii");
    std::fs::write(&p, &zero_dim).unwrap();
    let e = nifti::read(&p).unwrap_err().to_string();
    assert!(e.contains("zero.nii: header field dim"), "{e}");

    let mut nan_affine = bytes.clone();
    nan_affine[280..284].copy_from_slice(&f32::NAN.to_le_bytes()); // srow_x[0]
    let p = dir.path().join("nan.nii");
    std::fs::write(&p, &nan_affine).unwrap();
    let e = nifti::read(&p).unwrap_err().to_string();
    assert!(
        e.contains("nan.nii: header field srow_x/srow_y/srow_z") && e.contains("finite sform"),
        "{e}"
    );

    let mut complex = bytes.clone();
    complex[70..72].copy_from_slice(&32i16.to_le_bytes());
    let p = dir.path().join("complex.nii");
    std::fs::write(&p, &complex).unwrap();
    let e = nifti::read(&p).unwrap_err().to_string();
    assert!(e.contains("complex64"), "{e}");
}

/// Truncations at many offsets and flipped bytes in gzip and plain files: errors, never panics.
#[test]
fn corrupted_copies_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::from_shape_fn((9, 8, 7), |(i, j, k)| (i + j * k) as f32);
    let mut sources = Vec::new();
    for name in ["v.nii", "v.nii.gz"] {
        let p = dir.path().join(name);
        nifti::write(
            &p,
            data.view(),
            &Affine::centred([9, 8, 7], [1.0, 2.0, 3.0]),
            "fuzz",
        )
        .unwrap();
        sources.push((name, std::fs::read(&p).unwrap()));
    }
    let target = dir.path().join("corrupt.nii");
    let mut cases = 0;
    for (name, bytes) in &sources {
        let target = if name.ends_with(".gz") {
            dir.path().join("corrupt.nii.gz")
        } else {
            target.clone()
        };
        let variants = common::corrupted_copies(bytes, 7, 300, 3);
        for v in variants {
            std::fs::write(&target, &v).unwrap();
            let outcome = std::panic::catch_unwind(|| nifti::read(&target).map(|_| ()));
            assert!(outcome.is_ok(), "{name}: reading a corrupted copy panicked");
            cases += 1;
        }
    }
    assert!(cases > 600);
}
