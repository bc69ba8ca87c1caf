//! The provenance table as pyarrow reads it: the DESIGN.md columns, one row per artifact.

use crate::common;

use medsynth::provenance::{ProvenanceRow, write};

#[test]
fn provenance_reads_back_in_pyarrow_with_every_column() {
    let rows = vec![
        ProvenanceRow {
            artifact: "slices/shard-000.safetensors".into(),
            sha256: "ab".repeat(32),
            kind: "slice-shard".into(),
            subject: "sub-001".into(),
            sources: "data/sub-001/t1.nii.gz;data/sub-001/t2.nii.gz".into(),
            source_sha256: format!("{};{}", "01".repeat(32), "02".repeat(32)),
            stage: "preprocess".into(),
            config_hash: "cd".repeat(32),
            seed: 7,
            medsynth_version: medsynth::VERSION.into(),
            started: "2026-11-23T20:00:00Z".into(),
            finished: "2026-11-23T20:00:01Z".into(),
            ..ProvenanceRow::default()
        },
        ProvenanceRow {
            artifact: "synth/sub-002/t1ce.nii.gz".into(),
            kind: "volume".into(),
            subject: "sub-002".into(),
            stage: "synthesize".into(),
            sampler: r#"{"kind":"ddim","steps":50}"#.into(),
            guidance: r#"{"sag":0.75,"cfg":1.0}"#.into(),
            seed: u64::MAX,
            ..ProvenanceRow::default()
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provenance.parquet");
    write(&path, &rows).unwrap();
    let json = common::run_python("parquet_reference.py", &[&path]);
    let seen: serde_json::Value = serde_json::from_str(&json).unwrap();
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "artifact",
            "sha256",
            "kind",
            "subject",
            "sources",
            "source_sha256",
            "source_series_uids",
            "stage",
            "config_hash",
            "checkpoint_sha256",
            "sampler",
            "guidance",
            "seed",
            "medsynth_version",
            "git_commit",
            "started",
            "finished"
        ]
    );
    assert_eq!(seen["types"][12], "uint64");
    let py = seen["rows"].as_array().unwrap();
    assert_eq!(py.len(), 2);
    assert_eq!(py[0]["artifact"], rows[0].artifact);
    assert_eq!(py[0]["source_sha256"], rows[0].source_sha256);
    assert_eq!(py[1]["seed"].as_u64(), Some(u64::MAX));
    assert_eq!(py[1]["sampler"], rows[1].sampler);
}
