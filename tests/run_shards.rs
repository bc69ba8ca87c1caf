//! A run split into 3 shards (prepare, one training job, apply) and merged equals the same
//! pipeline run in one process: the same files, byte-equal volumes and exports, equal
//! tables. The cohort is stored LPS, tilted and anisotropic. Training and merge refuse,
//! naming the shards, while shards are missing; a shard re-run alone changes nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn medsynth(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(args)
        .current_dir(root)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .output()
        .unwrap()
}

fn run(root: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--root", ".", "pipeline.toml"];
    args.extend_from_slice(extra);
    medsynth(root, &args)
}

fn refused(o: &Output, naming: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(o));
    let err = common::stderr(o);
    assert!(
        err.contains(naming),
        "the error does not name {naming}:\n{err}"
    );
}

#[test]
fn three_shards_merged_equal_one_process() {
    let whole = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    for d in [whole.path(), sharded.path()] {
        std::fs::write(d.join("pipeline.toml"), common::runs::PIPELINE).unwrap();
    }
    common::assert_success(&run(whole.path(), &[]));

    let root = sharded.path();
    for k in ["0/3", "1/3"] {
        common::assert_success(&run(root, &["--shard", k, "--stage", "prepare"]));
    }
    // Training needs every shard's slices.
    refused(
        &run(root, &["--shards", "3", "--stage", "train"]),
        "shard(s) 2/3",
    );
    common::assert_success(&run(root, &["--shard", "2/3", "--stage", "prepare"]));
    common::assert_success(&run(root, &["--shards", "3", "--stage", "train"]));
    for k in ["0/3", "1/3"] {
        common::assert_success(&run(root, &["--shard", k, "--stage", "apply"]));
    }
    // Merge refuses while a shard has not applied the model.
    refused(&medsynth(root, &["merge", "runs/shards"]), "shard(s) 2/3");
    common::assert_success(&run(root, &["--shard", "2/3"]));
    let merged = medsynth(root, &["merge", "runs/shards"]);
    common::assert_success(&merged);
    let a = whole.path().join("runs/shards");
    let b = root.join("runs/shards");
    common::runs::assert_same_run(&a, &b);

    // The printed metrics are the single run's.
    let metrics = |o: &Output| -> Vec<String> {
        common::stdout(o)
            .lines()
            .filter(|l| l.contains(" ± "))
            .map(str::to_owned)
            .collect()
    };
    let single = metrics(&run(whole.path(), &[]));
    assert!(!single.is_empty());
    assert_eq!(metrics(&merged), single);

    // Every shard owns at least one subject of seven, and the assignment covers each once.
    let mut owned = Vec::new();
    for k in 0..3 {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(b.join(format!("shards/{k}-of-3/prepared.json"))).unwrap(),
        )
        .unwrap();
        owned.extend(
            rec["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned()),
        );
    }
    owned.sort();
    assert_eq!(
        owned,
        (1..=7).map(|i| format!("sub-{i:03}")).collect::<Vec<_>>()
    );

    // A shard re-run alone resumes (nothing sampled again), and a second merge gives the
    // same run.
    let again = run(root, &["--shard", "1/3"]);
    common::assert_success(&again);
    common::assert_success(&medsynth(root, &["merge", "runs/shards"]));
    common::runs::assert_same_run(&a, &b);
}
