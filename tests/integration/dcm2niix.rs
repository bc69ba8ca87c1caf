//! Round trips through dcm2niix (the converter most users would pick): NIfTI -> medsynth's
//! DICOM series -> NIfTI by dcm2niix gives the same voxels on the same world grid, and
//! medsynth's DICOM-to-NIfTI conversion equals dcm2niix's on the same series.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use medsynth::phantom::{PhantomConfig, generate};
use medsynth::volume::dicom::{self, WriteOptions};
use medsynth::volume::{Affine, Geometry, Metadata, Source, Volume, nifti};

fn dcm2niix(input: &Path, out: &Path, single_file: bool) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let mut cmd = Command::new("dcm2niix");
    cmd.args(["-z", "n", "-b", "n", "-f", "converted", "-o"])
        .arg(out);
    if single_file {
        cmd.args(["-s", "y"]);
    }
    let o = cmd.arg(input).output().unwrap_or_else(|e| {
        panic!("cannot run dcm2niix ({e}); tests/run.sh installs it (apt-get install dcm2niix)")
    });
    assert!(
        o.status.success(),
        "dcm2niix failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nii"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "dcm2niix wrote {found:?}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    found.remove(0)
}

/// Compares two volumes that should hold the same voxels on the same world grid, possibly
/// with axes permuted or flipped: the index map between them must be a signed permutation
/// with integer offsets (to 1e-4 mm), and every voxel must match within `tol`.
fn same_world_grid(ours: &Volume, theirs: &Volume, tol: f32) {
    let full = ours
        .geometry
        .affine
        .inverse()
        .unwrap()
        .then(&theirs.geometry.affine)
        .0;
    let map: [[f64; 4]; 3] = [full[0], full[1], full[2]];
    let spacing = ours.geometry.spacing();
    for (r, row) in map.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            // Index-space error times voxel size is the world error in mm.
            assert!(
                (v - v.round()).abs() * spacing[r] < 1e-4,
                "index map is not a permutation to 1e-4 mm: {map:?} (entry {r},{c})"
            );
        }
    }
    let map = map.map(|row| row.map(|v| v.round() as i64));
    let s = theirs.geometry.shape;
    let mut worst = 0f32;
    for k in 0..s[2] {
        for j in 0..s[1] {
            for i in 0..s[0] {
                let idx: Vec<i64> = (0..3)
                    .map(|r| {
                        map[r][0] * i as i64
                            + map[r][1] * j as i64
                            + map[r][2] * k as i64
                            + map[r][3]
                    })
                    .collect();
                let [a, b, c] = [idx[0] as usize, idx[1] as usize, idx[2] as usize];
                assert!(
                    idx.iter()
                        .zip(ours.geometry.shape)
                        .all(|(x, n)| *x >= 0 && (*x as usize) < n),
                    "voxel outside: {idx:?}"
                );
                worst = worst.max((ours.data[[a, b, c, 0]] - theirs.data[[i, j, k, 0]]).abs());
            }
        }
    }
    assert!(worst <= tol, "largest voxel difference {worst} > {tol}");
}

fn oblique_phantom() -> Volume {
    let s = generate(
        &PhantomConfig {
            shape: [36, 40, 24],
            spacing_mm: [4.0; 3],
            seed: 5,
            tumour_fraction: 1.0,
            ..PhantomConfig::default()
        },
        0,
    );
    let image = s.images[2].1.clone();
    // Rotate the grid 20 degrees about z and 10 about x, with anisotropic voxels.
    let (a, b) = (20f64.to_radians(), 10f64.to_radians());
    let rz = [
        [a.cos(), -a.sin(), 0.0],
        [a.sin(), a.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, b.cos(), -b.sin()],
        [0.0, b.sin(), b.cos()],
    ];
    let vox = [1.1, 0.9, 3.0];
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = (0..3).map(|k| rz[r][k] * rx[k][c]).sum::<f64>() * vox[c];
        }
    }
    m[0][3] = -20.5;
    m[1][3] = 14.25;
    m[2][3] = -31.0;
    m[3][3] = 1.0;
    Volume {
        data: image.insert_axis(ndarray::Axis(3)),
        geometry: Geometry {
            shape: [36, 40, 24],
            affine: Affine(m),
        },
        source: Source::default(),
        meta: Metadata {
            modality: Some("MR".into()),
            ..Metadata::default()
        },
    }
}

#[test]
fn nifti_to_our_dicom_to_dcm2niix_keeps_voxels_and_grid() {
    let dir = tempfile::tempdir().unwrap();
    let v = oblique_phantom();
    dicom::write_series(&v, &dir.path().join("series"), &WriteOptions::default()).unwrap();
    let nii = dcm2niix(&dir.path().join("series"), &dir.path().join("out"), false);
    let theirs = nifti::read(&nii).unwrap();
    same_world_grid(&v, &theirs, 0.0);
}

#[test]
fn our_dicom_to_nifti_equals_dcm2niix() {
    let dir = tempfile::tempdir().unwrap();
    let v = oblique_phantom();
    let series_dir = dir.path().join("series");
    dicom::write_series(&v, &series_dir, &WriteOptions::default()).unwrap();
    let theirs = nifti::read(&dcm2niix(&series_dir, &dir.path().join("out"), false)).unwrap();
    let scan = dicom::scan(&series_dir).unwrap();
    let ours = dicom::read_series(&scan.series[0]).unwrap();
    same_world_grid(&ours, &theirs, 0.0);
}

#[test]
fn single_slices_from_pydicom_convert_like_dcm2niix() {
    let json = common::run_python("dicom_reference.py", &[]);
    let refs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    for name in ["MR_small.dcm", "CT_small.dcm"] {
        let path = refs
            .iter()
            .map(|r| PathBuf::from(r["path"].as_str().unwrap()))
            .find(|p| p.ends_with(name))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let theirs = nifti::read(&dcm2niix(&path, dir.path(), true)).unwrap();
        let scan = dicom::scan(&path).unwrap();
        let ours = dicom::read_series(&scan.series[0]).unwrap();
        // dcm2niix stores the raw integers with the rescale as scl_slope/inter in float32.
        same_world_grid(&ours, &theirs, 1e-3);
    }
}
