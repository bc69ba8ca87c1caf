//! Preprocessing steps invert exactly on the phantom: reorientation, crop and pad, and the
//! intensity maps.

use crate::common;

use medsynth::phantom::{Contrast, PhantomConfig, generate};
use medsynth::preprocess::{Applied, CropPad, Normalize, Record, Reorient, foreground_box};
use medsynth::spec::{NormalizeConfig, NormalizeMethod};
use medsynth::volume::{Volume, orientation_code};

fn phantom() -> Volume {
    let s = generate(
        &PhantomConfig {
            shape: [40, 48, 36],
            spacing_mm: [4.0; 3],
            seed: 3,
            tumour_fraction: 1.0,
            ..PhantomConfig::default()
        },
        0,
    );
    s.volume(Contrast::T2).unwrap()
}

#[test]
fn reorientation_keeps_every_voxel_at_its_world_position_and_inverts_exactly() {
    let v = phantom();
    for code in ["LPS", "LPI", "ASR", "IRP", "RAS"] {
        let (r, applied) = Reorient::new(code).unwrap().apply(&v).unwrap();
        assert_eq!(orientation_code(&r.geometry.affine), code);
        // Spot-check: the same world point holds the same value.
        for (i, j, k) in [(0, 0, 0), (5, 17, 30), (39, 47, 35), (20, 3, 9)] {
            let world = v.geometry.affine.apply([i as f64, j as f64, k as f64]);
            let m = &r.geometry.affine.0;
            // Solve for the index in r: the affine is a signed permutation times spacing.
            let idx: Vec<usize> = (0..3)
                .map(|c| {
                    let row = (0..3).find(|&row| m[row][c] != 0.0).unwrap();
                    ((world[row] - m[row][3]) / m[row][c]).round() as usize
                })
                .collect();
            assert_eq!(
                r.data[[idx[0], idx[1], idx[2], 0]],
                v.data[[i, j, k, 0]],
                "{code} at {i},{j},{k}"
            );
        }
        let back = applied.invert(r).unwrap();
        assert_eq!(back.data, v.data, "{code}");
        assert_eq!(back.geometry, v.geometry, "{code}");
    }
}

#[test]
fn crop_to_foreground_then_pad_inverts_exactly_inside_the_box() {
    let v = phantom();
    // Above the Rician background (noise up to about 10 % of the brightest tissue).
    let threshold = 0.2 * v.value_range().unwrap().1;
    let (start, shape) = foreground_box(&v, threshold, 2).unwrap();
    assert!(
        shape.iter().zip(v.geometry.shape).all(|(a, b)| *a < b),
        "{shape:?}: the box should crop"
    );
    let mut record = Record::default();
    let cropped = record.push(CropPad::new(start, shape).apply(&v).unwrap());
    let padded = record.push(CropPad::centre([48, 48, 40]).apply(&cropped).unwrap());
    // World coordinates of a kept voxel are unchanged by cropping.
    let w0 = v.geometry.affine.apply(start.map(|x| x as f64));
    let w1 = cropped.geometry.affine.apply([0.0, 0.0, 0.0]);
    assert_eq!(w0, w1);
    let back = record.invert_all(padded).unwrap();
    assert_eq!(back.geometry, v.geometry);
    for ((i, j, k, t), &x) in v.data.indexed_iter() {
        let inside = (0..3).all(|a| {
            let idx = [i, j, k][a] as i64;
            idx >= start[a] && idx < start[a] + shape[a] as i64
        });
        let y = back.data[[i, j, k, t]];
        if inside {
            assert_eq!(y, x, "inside the box at {i},{j},{k}");
        } else {
            assert_eq!(y, 0.0, "outside the box at {i},{j},{k}");
        }
    }
    // Records serialize (they go to the manifest).
    let json = serde_json::to_string(&record).unwrap();
    let again: Record = serde_json::from_str(&json).unwrap();
    assert_eq!(again, record);
}

#[test]
fn intensity_maps_invert_exactly_up_to_float_rounding() {
    let v = phantom();
    let mask: Vec<bool> = v.data.iter().map(|&x| x > 50.0).collect();
    // Every method inverts exactly; the percentile method with `tails = 0` clips beyond its
    // window, and those voxels come back as the window's bounds.
    for (method, tails) in [
        (NormalizeMethod::Zscore, 0.05),
        (NormalizeMethod::Minmax, 0.05),
        (NormalizeMethod::Percentile, 0.05),
        (NormalizeMethod::Percentile, 0.0),
    ] {
        let cfg = NormalizeConfig {
            method,
            tails,
            ..NormalizeConfig::default()
        };
        let (n, applied) = Normalize::new(cfg).apply(&v, Some(&mask)).unwrap();
        if method != NormalizeMethod::Zscore {
            let (lo, hi) = n.value_range().unwrap();
            assert!(
                lo >= -1.0 - 1e-5 && hi <= 1.0 + 1e-5 || method == NormalizeMethod::Minmax,
                "{method:?}: {lo}..{hi}"
            );
        }
        let Applied::Normalize { low, high, .. } = applied.clone() else {
            panic!()
        };
        let back = applied.invert(n).unwrap();
        let clipped = method == NormalizeMethod::Percentile && tails == 0.0;
        if method == NormalizeMethod::Percentile {
            // The background lies below the foreground's low percentile: the tail is used.
            let low = low.unwrap();
            assert!(
                v.data.iter().any(|&x| (x as f64) < low),
                "nothing below {low}"
            );
        }
        for (a, b) in back.data.iter().zip(v.data.iter()) {
            let expected = if clipped {
                (*b as f64).clamp(
                    low.unwrap_or(f64::NEG_INFINITY),
                    high.unwrap_or(f64::INFINITY),
                ) as f32
            } else {
                *b
            };
            assert!(
                (a - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                "{method:?}: {a} vs {expected}"
            );
        }
    }
}

#[test]
fn resampling_a_linear_field_inverts_exactly_in_the_interior() {
    use medsynth::preprocess::{Interpolation, Resample};
    use medsynth::volume::{Affine, Geometry, Metadata, Source};
    // A linear ramp is reproduced exactly by trilinear interpolation, so 4 mm -> 2 mm -> 4 mm
    // must return it wherever the 2 mm grid surrounds the point (away from the faces).
    let shape = [20, 24, 18];
    let data = ndarray::Array4::from_shape_fn((20, 24, 18, 1), |(i, j, k, _)| {
        3.0 * i as f32 - 2.0 * j as f32 + 0.5 * k as f32 + 7.0
    });
    let v = Volume {
        data,
        geometry: Geometry {
            shape,
            affine: Affine::centred(shape, [4.0, 4.0, 4.0]),
        },
        source: Source::default(),
        meta: Metadata::default(),
    };
    let (fine, applied) = Resample {
        spacing_mm: [2.0, 2.0, 2.0],
        interpolation: Interpolation::Linear,
    }
    .apply(&v)
    .unwrap();
    assert_eq!(fine.geometry.shape, [40, 48, 36]);
    // The field of view is kept: outer corners coincide.
    assert_eq!(
        fine.geometry.affine.apply([-0.5; 3]),
        v.geometry.affine.apply([-0.5; 3])
    );
    let back = applied.invert(fine).unwrap();
    assert_eq!(back.geometry, v.geometry);
    for ((i, j, k, _), &x) in v.data.indexed_iter() {
        let interior = i >= 1 && j >= 1 && k >= 1 && i + 1 < 20 && j + 1 < 24 && k + 1 < 18;
        if interior {
            assert!(
                (back.data[[i, j, k, 0]] - x).abs() < 1e-4,
                "{i},{j},{k}: {} vs {x}",
                back.data[[i, j, k, 0]]
            );
        }
    }
}

#[test]
fn resampling_the_phantom_and_back_stays_close_and_labels_stay_labels() {
    use medsynth::preprocess::{Interpolation, Resample};
    let v = phantom();
    let (fine, applied) = Resample {
        spacing_mm: [3.0, 3.0, 3.0],
        interpolation: Interpolation::Linear,
    }
    .apply(&v)
    .unwrap();
    let back = applied.invert(fine).unwrap();
    let (lo, hi) = v.value_range().unwrap();
    let mae: f64 = back
        .data
        .iter()
        .zip(v.data.iter())
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / v.data.len() as f64;
    // Stated tolerance: mean absolute error under 4 % of the intensity range (measured 2.8 %:
    // two interpolations smooth the noise and the one-voxel tissue edges).
    assert!(
        mae < 0.04 * (hi - lo) as f64,
        "MAE {mae} of range {}",
        hi - lo
    );
    // Nearest neighbour keeps label values.
    let mut labels = v.clone();
    labels.data.mapv_inplace(|x| (x / 300.0).floor());
    let (coarse, _) = Resample {
        spacing_mm: [5.0, 5.0, 5.0],
        interpolation: Interpolation::Nearest,
    }
    .apply(&labels)
    .unwrap();
    let allowed: std::collections::BTreeSet<i64> = labels.data.iter().map(|x| *x as i64).collect();
    assert!(
        coarse
            .data
            .iter()
            .all(|x| x.fract() == 0.0 && allowed.contains(&(*x as i64)))
    );
}

#[test]
fn splits_are_by_subject_stable_for_a_seed_and_match_the_fractions() {
    use medsynth::preprocess::assign_splits;
    use medsynth::spec::{SplitConfig, SplitName};
    let subjects: Vec<String> = (1..=20).map(|i| format!("sub-{i:03}")).collect();
    let cfg = SplitConfig::default(); // 0.8 / 0.1 / 0.1
    let a = assign_splits(&subjects, &cfg, 7);
    assert_eq!(a.len(), 20, "every subject in exactly one split");
    let count = |m: &std::collections::BTreeMap<String, SplitName>, s| {
        m.values().filter(|v| **v == s).count()
    };
    assert_eq!(
        (
            count(&a, SplitName::Train),
            count(&a, SplitName::Val),
            count(&a, SplitName::Test)
        ),
        (16, 2, 2)
    );
    // Stable: same seed, any input order.
    let mut reversed = subjects.clone();
    reversed.reverse();
    assert_eq!(assign_splits(&reversed, &cfg, 7), a);
    // Another seed draws another split.
    assert_ne!(assign_splits(&subjects, &cfg, 8), a);
    // Small cohorts still fill every split with a non-zero fraction: 7 x (0.8, 0.1, 0.1).
    let seven = assign_splits(&subjects[..7], &cfg, 7);
    assert_eq!(
        (
            count(&seven, SplitName::Train),
            count(&seven, SplitName::Val),
            count(&seven, SplitName::Test)
        ),
        (5, 1, 1)
    );
    // Adding a subject moves few others.
    let mut more = subjects.clone();
    more.push("sub-021".into());
    let b = assign_splits(&more, &cfg, 7);
    let moved = subjects.iter().filter(|s| a[*s] != b[*s]).count();
    assert!(
        moved <= 3,
        "{moved} subjects changed split after adding one"
    );
}

/// The cache key changes when any preprocessing field changes (every leaf of the section is
/// perturbed in turn) or any input changes, and not when nothing that matters does.
#[test]
fn cache_key_changes_with_every_preprocessing_field_and_nothing_else() {
    use medsynth::preprocess::cache_key;
    use medsynth::spec::PreprocessSection;
    let inputs = vec![
        ("sub-001".to_owned(), "t1".to_owned(), "aa".repeat(32)),
        ("sub-001".to_owned(), "t2".to_owned(), "bb".repeat(32)),
        ("sub-002".to_owned(), "t1".to_owned(), "cc".repeat(32)),
    ];
    let mut base = PreprocessSection {
        spacing_mm: Some([1.0, 1.0, 1.0]),
        size: Some([128, 128]),
        reference: Some("t1".into()),
        cache: Some("cache".into()),
        ..PreprocessSection::default()
    };
    base.split.list = Some("splits.csv".into());
    let key = cache_key(&base, 7, &inputs);
    let mut shuffled = inputs.clone();
    shuffled.reverse();
    assert_eq!(
        cache_key(&base, 7, &shuffled),
        key,
        "input order must not matter"
    );
    assert_eq!(cache_key(&base.clone(), 7, &inputs), key);
    let mut changed_input = inputs.clone();
    changed_input[1].2 = "bc".repeat(32);
    assert_ne!(cache_key(&base, 7, &changed_input), key);
    assert_ne!(
        cache_key(&base, 8, &inputs),
        key,
        "the seed draws the splits"
    );

    // Every leaf of the section, perturbed one at a time, gives a new key.
    fn leaves(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    path.push(k.clone());
                    leaves(x, path, out);
                    path.pop();
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    leaves(x, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let json = serde_json::to_value(&base).unwrap();
    let mut paths = Vec::new();
    leaves(&json, &mut Vec::new(), &mut paths);
    assert!(paths.len() >= 20, "{paths:?}");
    let mut seen = std::collections::BTreeSet::from([key.clone()]);
    for path in &paths {
        let mut changed = json.clone();
        let mut slot = &mut changed;
        for p in path {
            slot = match slot {
                serde_json::Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
                other => &mut other[p.as_str()],
            };
        }
        *slot = match slot.clone() {
            serde_json::Value::Number(n) if n.is_u64() => {
                serde_json::json!(n.as_u64().unwrap() + 1)
            }
            serde_json::Value::Number(n) => serde_json::json!(n.as_f64().unwrap() + 0.125),
            serde_json::Value::String(s) => match s.as_str() {
                "RAS" => serde_json::json!("LPS"),
                "foreground" => serde_json::json!("none"),
                "percentile" => serde_json::json!("zscore"),
                "axial" => serde_json::json!("coronal"),
                other => serde_json::json!(format!("{other}-changed")),
            },
            other => panic!("unhandled leaf {path:?}: {other}"),
        };
        let cfg: PreprocessSection =
            serde_json::from_value(changed).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let k = cache_key(&cfg, 7, &inputs);
        assert!(seen.insert(k), "changing {path:?} did not change the key");
    }
}

#[test]
fn slices_carry_context_channels_and_assemble_back_exactly() {
    use medsynth::preprocess::{assemble, cut_slices};
    use medsynth::spec::SliceAxis;
    let (_, vols, mask) = common::phantom_contrasts([40, 48, 36], 4.0, 3);
    let refs: Vec<&Volume> = vols.iter().collect();
    for axis in [SliceAxis::Axial, SliceAxis::Coronal, SliceAxis::Sagittal] {
        let slices = cut_slices(&refs, &mask, axis, 0.2, 1).unwrap();
        let a = medsynth::preprocess::voxel_axis(&vols[0].geometry, axis);
        assert!(
            !slices.is_empty() && slices.len() < vols[0].geometry.shape[a],
            "{axis:?}: the filter keeps some, not all"
        );
        for sl in &slices {
            assert!(sl.foreground >= 0.2);
            assert_eq!(sl.data.shape()[0], 4 * 3);
        }
        // Channel 3 * m + 1 is modality m's own plane; assembling it restores the volume in
        // the kept slices and leaves the rest at the fill value.
        let back = assemble(&slices, 3 * 2 + 1, &vols[2], axis, -1.0).unwrap();
        let kept: std::collections::BTreeSet<usize> = slices.iter().map(|s| s.index).collect();
        for ((i, j, k, _), &x) in vols[2].data.indexed_iter() {
            let idx = [i, j, k][a];
            let y = back.data[[i, j, k, 0]];
            if kept.contains(&idx) {
                assert_eq!(y, x);
            } else {
                assert_eq!(y, -1.0);
            }
        }
        // Context planes are the neighbours (clamped at the edge).
        let sl = &slices[slices.len() / 2];
        let n = vols[0].geometry.shape[a];
        let below = sl.index.saturating_sub(1);
        let above = (sl.index + 1).min(n - 1);
        let one = cut_slices(&refs, &mask, axis, 0.0, 0).unwrap();
        assert_eq!(
            sl.data.index_axis(ndarray::Axis(0), 0),
            one[below].data.index_axis(ndarray::Axis(0), 0)
        );
        assert_eq!(
            sl.data.index_axis(ndarray::Axis(0), 2),
            one[above].data.index_axis(ndarray::Axis(0), 0)
        );
    }
    // Axial slices are [C, y, x].
    let axial = cut_slices(&refs, &mask, SliceAxis::Axial, 0.0, 0).unwrap();
    assert_eq!(axial[0].data.shape(), [4, 48, 40]);
}

#[test]
fn globs_match_like_the_shell() {
    use medsynth::names::glob_match;
    assert!(glob_match("sub-*", "sub-001"));
    assert!(!glob_match("sub-*", "ses-001"));
    assert!(glob_match("sub-00?", "sub-007"));
    assert!(glob_match("BraTS-[A-Z][A-Z][A-Z]-*", "BraTS-GLI-00001-000"));
    assert!(!glob_match("sub-[12]*", "sub-3"));
    assert!(glob_match("*t1*post*", "ax t1 post gad"));
    assert!(glob_match("*", ""));
}

#[test]
fn subjects_are_discovered_with_present_and_missing_modalities() {
    use medsynth::phantom::{PhantomFormat, write_cohort};
    use medsynth::preprocess::{dicom_subjects, nifti_subjects};
    use medsynth::spec::SeriesMatch;
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let cfg = PhantomConfig {
        shape: [24, 28, 20],
        spacing_mm: [8.0; 3],
        seed: 2,
        tumour_fraction: 0.0,
        ..PhantomConfig::default()
    };
    write_cohort(&cfg, 3, dir.path(), PhantomFormat::Nifti, false).unwrap();
    std::fs::remove_file(dir.path().join("sub-002/flair.nii.gz")).unwrap();
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    let modalities = BTreeMap::from([
        ("t1".to_owned(), "{subject}/t1.nii.gz".to_owned()),
        ("flair".to_owned(), "{subject}/flair.nii.gz".to_owned()),
    ]);
    let subjects = nifti_subjects(
        dir.path(),
        "sub-*",
        &modalities,
        Some("{subject}/seg.nii.gz"),
    )
    .unwrap();
    let ids: Vec<&str> = subjects.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["sub-001", "sub-002", "sub-003"]);
    assert_eq!(subjects[1].missing, ["flair"]);
    assert!(subjects[0].missing.is_empty() && subjects[0].label.is_some());
    let e = nifti_subjects(dir.path(), "patient-*", &modalities, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"patient-*\" matches no folder under"), "{e}");

    let dcm = tempfile::tempdir().unwrap();
    write_cohort(&cfg, 2, dcm.path(), PhantomFormat::Dicom, false).unwrap();
    let by_header = |d: &str| SeriesMatch {
        modality: Some("MR".into()),
        description: Some(d.into()),
    };
    let series = BTreeMap::from([
        ("t2".to_owned(), by_header("*phantom t2")),
        ("pd".to_owned(), by_header("*proton*")),
    ]);
    let input = |series: BTreeMap<String, SeriesMatch>| medsynth::spec::InputSection {
        series,
        ..toml::from_str("format = \"dicom\"\nsubject_glob = \"sub-*\"").unwrap()
    };
    let (subjects, map) = dicom_subjects(dcm.path(), &input(series), None).unwrap();
    assert!(map.is_empty());
    assert_eq!(subjects.len(), 2);
    assert!(subjects[0].modalities.contains_key("t2"));
    assert_eq!(subjects[0].missing, ["pd"]);
    let greedy = BTreeMap::from([("any".to_owned(), by_header("*phantom*"))]);
    let e = dicom_subjects(dcm.path(), &input(greedy), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input.series.any matches 4 series"), "{e}");
}

/// The whole chain of one subject (reorient, onto the reference grid, foreground crop, pad to
/// the slice size, z-score) inverts exactly inside the kept box, for every modality, even one
/// stored in another orientation.
#[test]
fn a_prepared_subject_inverts_back_onto_each_original_grid() {
    use medsynth::preprocess::{Reorient, prepare};
    use medsynth::spec::{NormalizeConfig, NormalizeMethod, PreprocessSection, SliceAxis};
    let (_, vols, _) = common::phantom_contrasts([40, 48, 36], 4.0, 5);
    let (lps, _) = Reorient::new("LPI").unwrap().apply(&vols[2]).unwrap();
    let originals: std::collections::BTreeMap<String, Volume> =
        [("t1".to_owned(), vols[0].clone()), ("t2".to_owned(), lps)].into();
    let section = PreprocessSection {
        size: Some([56, 44]),
        crop_margin_vox: 1,
        normalize: NormalizeConfig {
            method: NormalizeMethod::Zscore,
            ..NormalizeConfig::default()
        },
        ..PreprocessSection::default()
    };
    let order = ["t1".to_owned(), "t2".to_owned()];
    let p = prepare(&section, originals.clone(), None, &order, SliceAxis::Axial).unwrap();
    // Axial slices are 56 rows (y) by 44 columns (x); every modality on one RAS grid.
    assert_eq!(p.grid.shape[..2], [44, 56]);
    assert_eq!(p.grid.orientation(), "RAS");
    for (name, (v, record)) in &p.modalities {
        assert_eq!(v.geometry, p.grid);
        let back = record.invert_all(v.clone()).unwrap();
        let original = &originals[name];
        assert_eq!(back.geometry, original.geometry, "{name}");
        let (lo, hi) = original.value_range().unwrap();
        let mut compared = 0;
        for (x, y) in original.data.iter().zip(back.data.iter()) {
            // Outside the kept box voxels come back as the fill value (0 before z-scoring).
            if *y != 0.0 {
                assert!((x - y).abs() <= 1e-4 * (hi - lo), "{name}: {x} vs {y}");
                compared += 1;
            }
        }
        assert!(
            compared > original.data.len() / 4,
            "{name}: {compared} voxels kept"
        );
    }
    // With resampling to 3 mm, the interior comes back exactly as resampling there and back
    // alone brings it (whose own tolerance the test above states): the other steps add nothing.
    let section = PreprocessSection {
        spacing_mm: Some([3.0, 3.0, 3.0]),
        ..section
    };
    let p = prepare(&section, originals.clone(), None, &order, SliceAxis::Axial).unwrap();
    for (name, (v, record)) in &p.modalities {
        let back = record.invert_all(v.clone()).unwrap();
        let original = &originals[name];
        let (lo, hi) = original.value_range().unwrap();
        // Resampling alone, in RAS (where the reference grid is), then back.
        let (ras, to_ras) = Reorient::new("RAS").unwrap().apply(original).unwrap();
        let (there, applied) = medsynth::preprocess::Resample {
            spacing_mm: [3.0; 3],
            interpolation: medsynth::preprocess::Interpolation::Linear,
        }
        .apply(&ras)
        .unwrap();
        let reference = to_ras.invert(applied.invert(there).unwrap()).unwrap();
        // The interior: kept voxels at least two voxels from the edge of the kept box, where
        // the second interpolation never reaches the fill outside it.
        let kept = back.data.index_axis(ndarray::Axis(3), 0).mapv(|y| y != 0.0);
        let sh = kept.shape().to_vec();
        let interior = |i: usize, j: usize, k: usize| {
            (0..3).all(|a| {
                (-2i64..=2).all(|d| {
                    let mut at = [i as i64, j as i64, k as i64];
                    at[a] += d;
                    (0..3).all(|b| at[b] >= 0 && at[b] < sh[b] as i64)
                        && kept[[at[0] as usize, at[1] as usize, at[2] as usize]]
                })
            })
        };
        let mut n = 0;
        for ((i, j, k, t), x) in reference.data.indexed_iter() {
            if interior(i, j, k) {
                let y = back.data[[i, j, k, t]];
                assert!(
                    (x - y).abs() <= 1e-4 * (hi - lo),
                    "{name} at {i},{j},{k}: {x} vs {y}"
                );
                n += 1;
            }
        }
        assert!(n > original.data.len() / 4, "{name}: {n} interior voxels");
    }
}

#[test]
fn modalities_that_do_not_overlap_in_world_space_are_refused_by_name() {
    use medsynth::preprocess::prepare;
    use medsynth::spec::{PreprocessSection, SliceAxis};
    let (_, vols, _) = common::phantom_contrasts([40, 48, 36], 4.0, 5);
    let mut far = vols[2].clone();
    far.geometry.affine.0[0][3] += 1000.0;
    far.source.path = "elsewhere/t2.nii.gz".into();
    let mut t1 = vols[0].clone();
    t1.source.path = "here/t1.nii.gz".into();
    let order = ["t1".to_owned(), "t2".to_owned()];
    let err = prepare(
        &PreprocessSection::default(),
        [("t1".to_owned(), t1), ("t2".to_owned(), far)].into(),
        None,
        &order,
        SliceAxis::Axial,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("t2 (elsewhere/t2.nii.gz) does not overlap the reference t1 (here/t1.nii.gz)"),
        "{err}"
    );
}
