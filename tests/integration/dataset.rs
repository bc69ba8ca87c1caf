//! The slice store as Python's reference readers see it: shards through the `safetensors`
//! package, the manifest through pyarrow.

use crate::common;

use std::collections::BTreeMap;

use medsynth::dataset::{ManifestRow, read_shard, write_manifest, write_shard};
use medsynth::phantom::Contrast;
use medsynth::preprocess::cut_slices;
use medsynth::spec::SliceAxis;
use medsynth::volume::Volume;
use ndarray::{Array4, Axis};

#[test]
fn shards_and_manifest_read_back_in_python_with_matching_values() {
    let (s, vols, mask) = common::phantom_contrasts([32, 40, 28], 5.0, 1);
    let refs: Vec<&Volume> = vols.iter().collect();
    let slices = cut_slices(&refs, &mask, SliceAxis::Axial, 0.1, 0).unwrap();
    let views: Vec<_> = slices.iter().map(|s| s.data.view()).collect();
    let tensor: Array4<f32> = ndarray::stack(Axis(0), &views).unwrap();
    let channels: Vec<String> = Contrast::ALL.iter().map(|c| c.name().to_owned()).collect();
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("shard-000.safetensors");
    let manifest = dir.path().join("manifest.parquet");
    write_shard(
        &shard,
        &tensor,
        &channels,
        &BTreeMap::from([("subject".to_owned(), s.id.clone())]),
    )
    .unwrap();
    let rows: Vec<ManifestRow> = slices
        .iter()
        .enumerate()
        .map(|(row, sl)| ManifestRow {
            subject: s.id.clone(),
            split: "train".into(),
            axis: "axial".into(),
            slice_index: sl.index as u32,
            world_position_mm: s.affine.apply([0.0, 0.0, sl.index as f64])[2],
            shard: "shard-000.safetensors".into(),
            row: row as u32,
            channels_real: "t1,t1ce,t2,flair".into(),
            channels_missing: String::new(),
            source_sha256: "00".repeat(32),
            record: "[]".into(),
        })
        .collect();
    write_manifest(&manifest, &rows).unwrap();

    // Rust reads its own shard back.
    let (back, names) = read_shard(&shard).unwrap();
    assert_eq!(back, tensor);
    assert_eq!(names, channels);

    // Python's reference readers agree.
    let json = common::run_python("store_reference.py", &[&shard, &manifest]);
    let seen: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(seen["names"], serde_json::json!(["slices"]));
    assert_eq!(seen["shape"], serde_json::json!(tensor.shape()));
    assert_eq!(seen["dtype"], "float32");
    assert_eq!(seen["metadata"]["channels"], "t1,t1ce,t2,flair");
    assert_eq!(seen["metadata"]["subject"], s.id);
    let sum: f64 = tensor.iter().map(|&x| x as f64).sum();
    let weighted: f64 = tensor
        .indexed_iter()
        .map(|((n, c, h, w), &x)| {
            x as f64 * (1.0 + w as f64 + 3.0 * h as f64 + 11.0 * c as f64 + 101.0 * n as f64)
        })
        .sum();
    assert_eq!(seen["sum"].as_f64().unwrap(), sum);
    assert_eq!(seen["weighted"].as_f64().unwrap(), weighted);
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "subject",
            "split",
            "axis",
            "slice_index",
            "world_position_mm",
            "shard",
            "row",
            "channels_real",
            "channels_missing",
            "source_sha256",
            "record"
        ]
    );
    let py_rows = seen["rows"].as_array().unwrap();
    assert_eq!(py_rows.len(), rows.len());
    for (p, r) in py_rows.iter().zip(&rows) {
        assert_eq!(p["subject"], r.subject);
        assert_eq!(p["slice_index"], r.slice_index);
        assert_eq!(p["row"], r.row);
        assert_eq!(
            p["world_position_mm"].as_f64().unwrap(),
            r.world_position_mm
        );
    }
}

#[test]
fn a_damaged_shard_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    let t = Array4::<f32>::zeros((2, 1, 3, 3));
    write_shard(&p, &t, &["t1".into()], &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 5, 12, bytes.len() - 4] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = read_shard(&p).unwrap_err().to_string();
        assert!(e.contains("x.safetensors"), "{e}");
    }
}
