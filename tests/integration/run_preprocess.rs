//! `medsynth run` through the input and preprocess stages on the shipped fixtures: the slice
//! store, the exported volumes and the provenance table are read back by pyarrow, safetensors
//! and nibabel; a re-run reuses the store; bad subjects are skipped with their reason.

use crate::common;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A run root holding a copy of `fixtures/<which>` and the pipeline text.
fn root_with(which: &str, pipeline: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(
        &common::repo().join("fixtures").join(which),
        &dir.path().join("fixtures").join(which),
    );
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, pipeline).unwrap();
    (dir, file)
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(common::repo().join("pipelines").join(name)).unwrap()
}

fn check(run_dir: &Path) -> Value {
    serde_json::from_str(&common::run_python("run_reference.py", &[run_dir])).unwrap()
}

#[test]
fn the_nifti_example_builds_a_store_python_reads_and_a_rerun_reuses_it() {
    let (root, file) = root_with("nifti", &shipped("preprocess-nifti.toml"));
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let run_dir = root.path().join("runs/preprocess-nifti");
    let r = check(&run_dir);

    // Every artifact in provenance exists with the recorded digest.
    let artifacts = r["artifacts"].as_array().unwrap();
    for a in artifacts {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    let kinds = |k: &str| artifacts.iter().filter(|a| a["kind"] == k).count();
    assert_eq!(kinds("slice-shard"), 3);
    assert_eq!(kinds("manifest"), 1);
    assert_eq!(kinds("pipeline"), 1);
    // 3 + 3 + 2 modalities and a label each.
    assert_eq!(kinds("preprocessed-volume"), 11);

    // One subject per split (fractions 0.34 / 0.33 / 0.33), never one subject in two.
    let rows = r["manifest"].as_array().unwrap();
    let mut split_of = std::collections::BTreeMap::new();
    for row in rows {
        let s = row["subject"].as_str().unwrap();
        let split = row["split"].as_str().unwrap();
        assert_eq!(
            *split_of.entry(s).or_insert(split),
            split,
            "{s} in two splits"
        );
    }
    let mut splits: Vec<&str> = split_of.values().copied().collect();
    splits.sort();
    assert_eq!(splits, ["test", "train", "val"]);

    // sub-003 has no FLAIR: marked missing, and its three FLAIR planes are zero.
    let channels: Vec<&str> = r["shards"]["shards/sub-003.safetensors"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        channels,
        [
            "flair@-1", "flair", "flair@+1", "t1@-1", "t1", "t1@+1", "t2@-1", "t2", "t2@+1",
            "label"
        ]
    );
    let zero = |s: &str| r["shards"][s]["zero_channels"].clone();
    assert_eq!(
        zero("shards/sub-003.safetensors").as_array().unwrap()[..3],
        [0, 1, 2]
    );
    for s in ["shards/sub-001.safetensors", "shards/sub-002.safetensors"] {
        let z: Vec<u64> = zero(s)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert!(
            z.iter().all(|&c| c == 9),
            "{s}: only the label may be empty, got {z:?}"
        );
    }
    for row in rows {
        let missing = row["channels_missing"].as_str().unwrap();
        assert_eq!(missing == "flair", row["subject"] == "sub-003", "{row}");
        assert_eq!(row["axis"], "axial");
        // The record says how to go back: the grid and each channel's steps.
        let record: Value = serde_json::from_str(row["record"].as_str().unwrap()).unwrap();
        assert!(
            record["records"]["t1"].as_array().unwrap().len() >= 4,
            "{record}"
        );
    }
    // Shards are N x C x 48 x 48 with N the subject's manifest rows; values normalized to
    // [-1, 1] (the label goes to 3).
    for (name, shard) in r["shards"].as_object().unwrap() {
        let n = rows
            .iter()
            .filter(|row| row["shard"] == name.as_str())
            .count();
        assert_eq!(shard["shape"], serde_json::json!([n, 10, 48, 48]), "{name}");
        assert!(shard["min"].as_f64().unwrap() >= -1.0 && shard["max"].as_f64().unwrap() <= 3.0);
    }
    // Slices of one subject are 4 mm apart in world space.
    let positions: Vec<f64> = rows
        .iter()
        .filter(|row| row["subject"] == "sub-001")
        .map(|row| row["world_position_mm"].as_f64().unwrap())
        .collect();
    for w in positions.windows(2) {
        assert!((w[1] - w[0] - 4.0).abs() < 1e-6, "{positions:?}");
    }
    // sub-002's T2 was stored LPS on a cropped grid; it now shares T1's RAS grid.
    let vol = |p: &str| r["volumes"][p].clone();
    assert_eq!(
        vol("preprocessed/sub-002/t2.nii.gz"),
        vol("preprocessed/sub-002/t1.nii.gz")
    );
    assert_eq!(vol("preprocessed/sub-002/t1.nii.gz")["shape"][0], 48);

    // The summary names the store and the splits.
    let summary = common::stdout(&out);
    assert!(summary.contains("skipped      none"), "{summary}");

    // The same spec again reuses the store, and says so.
    let manifest = |dir: &Path| -> Vec<PathBuf> {
        let mut m: Vec<PathBuf> = std::fs::read_dir(dir.join("slices"))
            .unwrap()
            .map(|e| e.unwrap().path().join("manifest.parquet"))
            .collect();
        m.sort();
        m
    };
    let before = std::fs::read(&manifest(&run_dir)[0]).unwrap();
    let again = common::run_pipeline(root.path(), &file);
    common::assert_success(&again);
    assert!(
        common::stderr(&again).contains("reusing the slice store"),
        "{}",
        common::stderr(&again)
    );
    assert_eq!(std::fs::read(&manifest(&run_dir)[0]).unwrap(), before);

    // A changed preprocessing field builds a second store beside it.
    std::fs::write(
        &file,
        shipped("preprocess-nifti.toml").replace("crop_margin_vox = 2", "crop_margin_vox = 3"),
    )
    .unwrap();
    let changed = common::run_pipeline(root.path(), &file);
    common::assert_success(&changed);
    assert!(!common::stderr(&changed).contains("reusing"));
    assert_eq!(manifest(&run_dir).len(), 2);
}

#[test]
fn the_dicom_example_matches_series_by_description_and_slices_coronally() {
    let (root, file) = root_with("dicom", &shipped("preprocess-dicom.toml"));
    common::assert_success(&common::run_pipeline(root.path(), &file));
    let r = check(&root.path().join("runs/preprocess-dicom"));
    for a in r["artifacts"].as_array().unwrap() {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    let rows = r["manifest"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|row| row["axis"] == "coronal" && row["channels_missing"] == "")
    );
    let subjects: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|row| row["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), 2);
    for shard in r["shards"].as_object().unwrap().values() {
        assert_eq!(shard["channels"], serde_json::json!(["flair", "t1"]));
        assert_eq!(shard["shape"].as_array().unwrap()[2..], [40, 40]);
    }
    // Shard provenance names the DICOM series folders it came from.
    let shard_row = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "slice-shard")
        .unwrap();
    assert!(
        shard_row["sources"].as_str().unwrap().contains("/t1"),
        "{shard_row}"
    );
}

#[test]
fn bad_subjects_are_skipped_with_subject_and_file_named_and_the_rest_go_on() {
    let (root, file) = root_with("nifti", &shipped("preprocess-nifti.toml"));
    let data = root.path().join("fixtures/nifti");
    // sub-001 lacks a required modality.
    std::fs::remove_file(data.join("sub-001/t2.nii.gz")).unwrap();
    // sub-002's label is on another grid (its T2's cropped LPS grid).
    std::fs::copy(
        data.join("sub-002/t2.nii.gz"),
        data.join("sub-002/seg.nii.gz"),
    )
    .unwrap();
    // sub-004 is empty: every voxel zero.
    let zeros = ndarray::Array3::<i16>::zeros((20, 20, 20));
    let affine = medsynth::volume::Affine::centred([20, 20, 20], [5.0; 3]);
    for m in ["t1", "t2"] {
        let p = data.join(format!("sub-004/{m}.nii.gz"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        medsynth::volume::nifti::write(&p, zeros.view(), &affine, "empty").unwrap();
    }
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let summary = common::stdout(&out);
    assert!(summary.contains("skipped      3 subject(s)"), "{summary}");
    let line = |s: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(s))
            .unwrap_or_else(|| panic!("no line for {s} in\n{summary}"))
            .to_owned()
    };
    let one = line("sub-001");
    assert!(
        one.contains("missing required t2") && one.contains("sub-001/t2.nii.gz"),
        "{one}"
    );
    let two = line("sub-002");
    assert!(
        two.contains("label") && two.contains("sub-002/seg.nii.gz") && two.contains("another grid"),
        "{two}"
    );
    let four = line("sub-004");
    assert!(four.contains("foreground is empty"), "{four}");
    // sub-003 went on.
    let r = check(&root.path().join("runs/preprocess-nifti"));
    let subjects: std::collections::BTreeSet<&str> = r["manifest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.into_iter().collect::<Vec<_>>(), ["sub-003"]);
}

#[test]
fn a_glob_that_matches_nothing_stops_the_run_with_the_folder_named() {
    let (root, file) = root_with(
        "nifti",
        &shipped("preprocess-nifti.toml")
            .replace("subject_glob = \"sub-*\"", "subject_glob = \"patient-*\""),
    );
    let out = common::run_pipeline(root.path(), &file);
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(
        err.contains("\"patient-*\" matches no folder") && err.contains("fixtures/nifti"),
        "{err}"
    );
}

#[test]
fn a_split_list_fixes_the_splits_and_unlisted_subjects_are_skipped() {
    let (root, file) = root_with(
        "nifti",
        &shipped("preprocess-nifti.toml").replace(
            "split = { train = 0.34, val = 0.33, test = 0.33 }",
            "split = { list = \"splits.csv\" }",
        ),
    );
    std::fs::write(
        root.path().join("splits.csv"),
        "subject,split\nsub-001,test\nsub-003,train\n",
    )
    .unwrap();
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    assert!(
        common::stdout(&out).contains("sub-002 [preprocess]: not listed in preprocess.split.list")
    );
    let r = check(&root.path().join("runs/preprocess-nifti"));
    for row in r["manifest"].as_array().unwrap() {
        let want = if row["subject"] == "sub-001" {
            "test"
        } else {
            "train"
        };
        assert_eq!(row["split"], want);
    }
}
