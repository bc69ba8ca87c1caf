//! A run split into 3 shards (prepare, one training job, apply) and merged equals the same
//! pipeline run in one process: the same files, byte-equal volumes and exports, equal
//! tables. The cohort is stored LPS, tilted and anisotropic. Training and merge refuse,
//! naming the shards, while shards are missing; a shard re-run alone changes nothing.

use crate::common;

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
        std::fs::write(d.join("pipeline.toml"), common::runs::pipeline()).unwrap();
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
    // Merging again leaves no half-written (temporary) file behind.
    let mut stack = vec![b.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    !name.contains("-partial-"),
                    "left behind: {}",
                    path.display()
                );
            }
        }
    }
}

/// FID and KID, which need the whole cohort, are computed by merge: the merged run's
/// set-level scores equal a single run's (untrained deterministic Inception weights, so the
/// numbers are not meaningful FIDs, only the same computation), and the shards report them
/// as left to merge. One test subject: the other shard has none to synthesize.
#[test]
fn set_level_metrics_of_a_merged_run_equal_a_single_runs() {
    let pipeline = common::Pipeline::tiny("fid")
        .set("pipeline.seed", "4")
        .set("input.phantom", "{ subjects = 4, shape = [40, 44, 16], spacing_mm = [5.0, 5.0, 8.0] }")
        .set("preprocess.slices", r#"{ axis = "axial", min_foreground = 0.15 }"#)
        .set("preprocess.split", "{ train = 0.75, val = 0.0, test = 0.25 }")
        .set("train", "{ epochs = 1, max_steps = 3, batch_size = 4 }")
        .set("synthesize", r#"{ split = "test", sampler = { kind = "ddim", steps = 2 } }"#)
        .set("evaluate", r#"{ metrics = ["psnr", "fid", "kid"], fid_weights = "inception.safetensors", kid_subsets = [2, 4] }"#)
        .set("output", r#"{ formats = ["nifti"] }"#)
        .text();
    let whole = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    for d in [whole.path(), sharded.path()] {
        std::fs::write(d.join("pipeline.toml"), &pipeline).unwrap();
        common::inception::write_weights(&d.join("inception.safetensors"));
    }
    common::assert_success(&run(whole.path(), &[]));
    let root = sharded.path();
    for k in ["0/2", "1/2"] {
        common::assert_success(&run(root, &["--shard", k, "--stage", "prepare"]));
    }
    common::assert_success(&run(root, &["--shards", "2", "--stage", "train"]));
    for k in ["0/2", "1/2"] {
        let out = run(root, &["--shard", k, "--stage", "apply"]);
        common::assert_success(&out);
        let printed = common::stdout(&out);
        if printed.contains("metrics") {
            assert!(
                printed.contains(
                    "fid: not computed: set-level: computed over the whole cohort by medsynth merge"
                ),
                "{printed}"
            );
        }
    }
    common::assert_success(&medsynth(root, &["merge", "runs/fid"]));
    let set_level = |run_dir: &Path| -> Vec<(String, String, f64)> {
        let rows = medsynth::pipeline::read_metrics(&run_dir.join("metrics.parquet")).unwrap();
        let mut out: Vec<(String, String, f64)> = rows
            .into_iter()
            .filter(|r| r.metric == "fid" || r.metric == "kid")
            .map(|r| (r.method, r.metric, r.value))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    };
    let a = set_level(&whole.path().join("runs/fid"));
    let b = set_level(&root.join("runs/fid"));
    // The model and both baselines, FID and KID each.
    assert_eq!(a.len(), 6, "{a:?}");
    assert!(
        a.iter()
            .all(|(_, m, v)| v.is_finite() && (m == "kid" || *v >= 0.0)),
        "{a:?}"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1), (&y.0, &y.1));
        assert!(
            (x.2 - y.2).abs() <= 1e-9 * x.2.abs().max(1.0),
            "{x:?} against {y:?}"
        );
    }
}
