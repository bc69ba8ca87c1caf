//! Phantom subjects: contrasts that look like MRI on the phantom's own tissue masks, a folded
//! cortex, determinism, and files that nibabel reads with the intended geometry.

use crate::common;

use std::collections::BTreeMap;

use medsynth::phantom::{Contrast, PhantomConfig, PhantomSubject, Tissue, generate};
use ndarray::Array3;

fn small(seed: u64, tumour_fraction: f64) -> PhantomConfig {
    PhantomConfig {
        shape: [64, 72, 60],
        spacing_mm: [3.0; 3],
        seed,
        tumour_fraction,
        ..PhantomConfig::default()
    }
}

fn image(s: &PhantomSubject, c: Contrast) -> &Array3<f32> {
    &s.images.iter().find(|(k, _)| *k == c).unwrap().1
}

/// Mean intensity of `c` over the voxels of any of `tissues`.
fn mean(s: &PhantomSubject, c: Contrast, tissues: &[Tissue]) -> f64 {
    let img = image(s, c);
    let (mut sum, mut n) = (0.0, 0usize);
    for (t, v) in s.tissues.iter().zip(img.iter()) {
        if tissues.iter().any(|x| *x as u8 == *t) {
            sum += *v as f64;
            n += 1;
        }
    }
    assert!(n > 20, "too few voxels of {tissues:?}: {n}");
    sum / n as f64
}

#[test]
fn contrasts_order_tissues_as_mri_does() {
    use Contrast::*;
    use Tissue::*;
    for (seed, index) in [(3, 0), (3, 1), (3, 2), (17, 0), (17, 1)] {
        let s = generate(&small(seed, 1.0), index);
        let csf = [Csf, Ventricle];
        let m = |c, t: &[Tissue]| mean(&s, c, t);
        // CSF dark in T1 and FLAIR, bright in T2.
        assert!(
            m(T1, &csf) < 0.7 * m(T1, &[Gm]),
            "{}: CSF not dark on T1",
            s.id
        );
        assert!(
            m(Flair, &csf) < 0.5 * m(Flair, &[Wm]),
            "{}: CSF not dark on FLAIR",
            s.id
        );
        assert!(
            m(T2, &csf) > 1.3 * m(T2, &[Gm]),
            "{}: CSF not bright on T2",
            s.id
        );
        // White matter brighter than grey matter on T1, darker on T2.
        assert!(
            m(T1, &[Wm]) > 1.05 * m(T1, &[Gm]),
            "{}: WM not brighter than GM on T1",
            s.id
        );
        assert!(
            m(T2, &[Wm]) < 0.9 * m(T2, &[Gm]),
            "{}: WM not darker than GM on T2",
            s.id
        );
        // Enhancing tumour brighter after contrast; oedema bright on FLAIR.
        assert!(
            m(T1ce, &[Enhancing]) > 1.4 * m(T1, &[Enhancing]),
            "{}: no enhancement",
            s.id
        );
        assert!(
            m(Flair, &[Oedema]) > 1.2 * m(Flair, &[Wm]),
            "{}: oedema not bright on FLAIR",
            s.id
        );
        assert!(
            m(Flair, &[Oedema]) > m(Flair, &[Gm]),
            "{}: oedema not above GM on FLAIR",
            s.id
        );
        // Contrast agent changes nothing outside the enhancing tissue, except noise.
        let wm_change = (m(T1ce, &[Wm]) - m(T1, &[Wm])).abs() / m(T1, &[Wm]);
        assert!(
            wm_change < 0.25,
            "{}: WM changed by {wm_change} after contrast",
            s.id
        );
    }
}

#[test]
fn every_tissue_is_present_and_labels_follow_brats() {
    let s = generate(&small(5, 1.0), 0);
    let mut counts = BTreeMap::new();
    for t in s.tissues.iter() {
        *counts.entry(*t).or_insert(0usize) += 1;
    }
    for t in Tissue::ALL {
        if t == Tissue::Necrosis {
            continue; // Some tumours are solid.
        }
        assert!(
            counts.get(&(t as u8)).copied().unwrap_or(0) > 0,
            "no {t:?} voxels"
        );
    }
    for (t, l) in s.tissues.iter().zip(s.label.iter()) {
        assert_eq!(*l, Tissue::from_u8(*t).unwrap().brats_label());
    }
    let healthy = generate(&small(5, 0.0), 0);
    assert!(healthy.label.iter().all(|&l| l == 0));
}

/// A plain shell would put white matter a constant distance behind the brain surface. Along
/// the rows of a mid-axial slice, the grey (and sulcal CSF) run before the first white matter
/// voxel must vary, and some runs must be deep (sulci).
#[test]
fn cortex_is_a_folded_ribbon_not_a_shell() {
    let s = generate(
        &PhantomConfig {
            shape: [96, 112, 96],
            spacing_mm: [2.0; 3],
            seed: 9,
            tumour_fraction: 0.0,
            ..PhantomConfig::default()
        },
        0,
    );
    let k = 60; // above the ventricles' centre, through the cerebrum
    let mut runs = Vec::new();
    for j in 0..112 {
        let row: Vec<u8> = (0..96).map(|i| s.tissues[[i, j, k]]).collect();
        let first_gm = row.iter().position(|&t| t == Tissue::Gm as u8);
        let first_wm = row.iter().position(|&t| t == Tissue::Wm as u8);
        if let (Some(g), Some(w)) = (first_gm, first_wm)
            && w > g
        {
            runs.push((w - g) as f64);
        }
    }
    assert!(
        runs.len() > 40,
        "too few rows cross the cortex: {}",
        runs.len()
    );
    let mean = runs.iter().sum::<f64>() / runs.len() as f64;
    let sd = (runs.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / runs.len() as f64).sqrt();
    let max = runs.iter().cloned().fold(0.0, f64::max);
    assert!(
        sd > 1.0,
        "cortical depth barely varies (sd {sd:.2} voxels): a shell, not folds"
    );
    assert!(
        max >= 2.5 * mean.min(3.0),
        "no deep sulcus (max run {max}, mean {mean:.2})"
    );
}

#[test]
fn one_seed_gives_identical_bytes_and_two_seeds_different_anatomy() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let run = |seed: &str, dir: &std::path::Path| {
        let out = common::medsynth(&[
            "phantom",
            "--subjects",
            "2",
            "--shape",
            "48,56,48",
            "--spacing",
            "4",
            "--seed",
            seed,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    run("1", a.path());
    run("1", b.path());
    run("2", c.path());
    for sub in ["sub-001", "sub-002"] {
        for f in ["t1", "t1ce", "t2", "flair", "seg"] {
            let name = format!("{sub}/{f}.nii.gz");
            let x = std::fs::read(a.path().join(&name)).unwrap();
            let y = std::fs::read(b.path().join(&name)).unwrap();
            assert!(x == y, "{name} differs between two runs with one seed");
        }
    }
    let t1 = generate(
        &PhantomConfig {
            shape: [48, 56, 48],
            spacing_mm: [4.0; 3],
            seed: 1,
            tumour_fraction: 0.5,
            ..PhantomConfig::default()
        },
        0,
    );
    let t2 = generate(
        &PhantomConfig {
            shape: [48, 56, 48],
            spacing_mm: [4.0; 3],
            seed: 2,
            tumour_fraction: 0.5,
            ..PhantomConfig::default()
        },
        0,
    );
    let differ = t1
        .tissues
        .iter()
        .zip(t2.tissues.iter())
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        differ > t1.tissues.len() / 50,
        "seeds 1 and 2 give nearly the same anatomy ({differ} voxels differ)"
    );
    // Threads do not change the result: the in-memory subject equals the file from the CLI.
    let again = generate(
        &PhantomConfig {
            shape: [48, 56, 48],
            spacing_mm: [4.0; 3],
            seed: 1,
            tumour_fraction: 0.5,
            ..PhantomConfig::default()
        },
        0,
    );
    assert_eq!(t1.images[0].1, again.images[0].1);
}

#[test]
fn tumour_fraction_is_stratified() {
    let cfg = small(8, 0.5);
    let with: usize = (0..20).filter(|&i| cfg.has_tumour(i)).count();
    assert_eq!(with, 10);
    let none = small(8, 0.0);
    assert!((0..20).all(|i| !none.has_tumour(i)));
    let all = small(8, 1.0);
    assert!((0..20).all(|i| all.has_tumour(i)));
}

/// `medsynth phantom --subjects 4` as nibabel sees it: five files per subject, the stated
/// shape, spacing and affine (sform and qform), RAS, mm, labels in {0, 1, 2, 3}.
#[test]
fn nibabel_reads_the_written_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::medsynth(&[
        "phantom",
        "--subjects",
        "4",
        "--shape",
        "40,48,36",
        "--spacing",
        "2.5",
        "--seed",
        "4",
        "--tumour-fraction",
        "1",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let json = common::run_python("check_phantom.py", &[dir.path()]);
    let seen: serde_json::Value = serde_json::from_str(&json).unwrap();
    let subjects = seen.as_object().unwrap();
    assert_eq!(
        subjects.keys().collect::<Vec<_>>(),
        ["sub-001", "sub-002", "sub-003", "sub-004"]
    );
    let cfg = PhantomConfig {
        shape: [40, 48, 36],
        spacing_mm: [2.5; 3],
        seed: 4,
        tumour_fraction: 1.0,
        ..PhantomConfig::default()
    };
    let expected_affine = cfg.affine().0;
    for (id, files) in subjects {
        let files = files.as_object().unwrap();
        assert_eq!(files.len(), 5, "{id}: {:?}", files.keys());
        let subject = generate(
            &cfg,
            id.trim_start_matches("sub-").parse::<usize>().unwrap() - 1,
        );
        for (name, f) in files {
            assert_eq!(f["shape"], serde_json::json!([40, 48, 36]), "{id}/{name}");
            assert_eq!(
                f["zooms"],
                serde_json::json!([2.5, 2.5, 2.5]),
                "{id}/{name}"
            );
            assert_eq!(f["orientation"], "RAS");
            assert_eq!(f["sform_code"], 1);
            assert_eq!(f["qform_code"], 1);
            assert_eq!(f["units"], serde_json::json!(["mm", "sec"]));
            for which in ["affine", "qform"] {
                for r in 0..4 {
                    for c in 0..4 {
                        let got = f[which][r][c].as_f64().unwrap();
                        assert!(
                            (got - expected_affine[r][c]).abs() < 1e-5,
                            "{id}/{name} {which}[{r}][{c}] = {got}"
                        );
                    }
                }
            }
            // Voxel values as nibabel reads them equal what was generated, in [i, j, k] order
            // (the index-weighted sum changes under any transpose or flip).
            let data: Array3<f64> = if name == "seg.nii.gz" {
                subject.label.mapv(f64::from)
            } else {
                let c = Contrast::ALL
                    .into_iter()
                    .find(|c| format!("{}.nii.gz", c.name()) == *name)
                    .unwrap();
                image(&subject, c).mapv(f64::from)
            };
            let sum: f64 = data.sum();
            let weighted: f64 = data
                .indexed_iter()
                .map(|((i, j, k), v)| v * (1.0 + i as f64 + 3.0 * j as f64 + 11.0 * k as f64))
                .sum();
            assert_eq!(f["sum"].as_f64().unwrap(), sum, "{id}/{name}");
            assert_eq!(f["weighted"].as_f64().unwrap(), weighted, "{id}/{name}");
            if name == "seg.nii.gz" {
                assert_eq!(f["dtype"], "uint8");
                let labels: Vec<i64> = f["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                assert!(
                    labels.iter().all(|l| [0, 1, 2, 3].contains(l)),
                    "{labels:?}"
                );
                assert!(
                    labels.contains(&2) && labels.contains(&3),
                    "{id}: tumour labels missing: {labels:?}"
                );
            } else {
                assert_eq!(f["dtype"], "int16");
            }
        }
    }
}
