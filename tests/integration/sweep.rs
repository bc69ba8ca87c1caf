//! `medsynth sweep` end to end: a small ablation (no attention against MHSA, SAG off and on)
//! runs every valid combination as its own run on one shared slice store, trains once per
//! training setting, skips the combination the pipeline check refuses (SAG without
//! attention) and writes one comparison report with every metric, Dice included, and the
//! paired tests.

use crate::common;

use std::process::Command;

/// The pipeline file of this test.
fn pipeline() -> String {
    common::Pipeline::tiny("ablate")
        .set("pipeline.seed", "3")
        .set("input.phantom", "{ subjects = 5, shape = [36, 40, 32], spacing_mm = 5.0, tumour_fraction = 1.0 }")
        .set("preprocess.split", "{ train = 0.6, val = 0.0, test = 0.4 }")
        .set("model.inputs", r#"["t1", "flair"]"#)
        .set("model.diffusion", r#"{ schedule = "cosine", timesteps = 50 }"#)
        .set("train", "{ epochs = 1, batch_size = 8 }")
        .set("synthesize", r#"{ split = "test", sampler = { kind = "ddim", steps = 2 } }"#)
        .set("evaluate", r#"{ metrics = ["ssim", "psnr"], protocol = "brasyn", segmentation = { epochs = 1 } }"#)
        .set("output", "{ formats = [], report = true }")
        .set("sweep", r#"{ "model.attention.kind" = ["none", "mhsa"], "synthesize.guidance.sag" = [0.0, 0.5] }"#)
        .text()
}

fn sweep(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .arg("sweep")
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .output()
        .expect("the medsynth binary runs")
}

#[test]
fn a_sweep_runs_every_valid_setting_on_one_store_and_compares_them() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("ablate.toml");
    std::fs::write(&file, pipeline()).unwrap();
    let out = sweep(root.path(), &[file.to_str().unwrap()]);
    common::assert_success(&out);
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);
    assert!(
        stdout.contains("skipped attention.kind=none guidance.sag=0.5"),
        "{stdout}"
    );
    let runs = root.path().join("runs");
    for slug in ["kind-none_sag-0", "kind-mhsa_sag-0", "kind-mhsa_sag-0.5"] {
        let dir = runs.join(format!("ablate--{slug}"));
        assert!(dir.join("metrics.parquet").is_file(), "{slug}: {stderr}");
    }
    assert!(!runs.join("ablate--kind-none_sag-0.5").exists());
    // One slice store, preprocessed once.
    let stores: Vec<_> = std::fs::read_dir(runs.join("ablate/slice-cache"))
        .unwrap()
        .collect();
    assert_eq!(stores.len(), 1);
    assert_eq!(
        stderr
            .matches("reusing the slice store built earlier")
            .count()
            + 1,
        3,
        "the later runs reuse the store\n{stderr}"
    );
    // SAG on changes only sampling: that run resumed the SAG-off run's training at its end.
    // The segmentation network does not depend on the model, so the second and third runs
    // resume the first run's.
    let resumed = |segmentation: bool| {
        stderr
            .lines()
            .filter(|l| {
                l.contains("resuming training") && l.contains("/segmentation/") == segmentation
            })
            .count()
    };
    assert_eq!(resumed(false), 1, "{stderr}");
    assert_eq!(resumed(true), 2, "{stderr}");
    let report =
        std::fs::read_to_string(runs.join("ablate/sweep/report.md")).expect("the sweep report");
    for part in [
        "## Paired tests",
        "dice whole-tumour",
        "attention.kind=mhsa guidance.sag=0.5",
    ] {
        assert!(report.contains(part), "no {part:?} in\n{report}");
    }
    // The paired tests compare each setting with the first on the same subjects.
    assert!(
        report.contains(
            "| attention.kind=mhsa guidance.sag=0 | attention.kind=none guidance.sag=0 | ssim |"
        ),
        "{report}"
    );
}

#[test]
fn a_sweep_refuses_bad_settings_before_running() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("ablate.toml");
    std::fs::write(&file, pipeline()).unwrap();
    let path = file.to_str().unwrap();
    // No value.
    let out = sweep(root.path(), &[path, "--set", "model.attention.kind"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("expected KEY=VALUE"));
    // A value the file check refuses, in every combination.
    let out = sweep(root.path(), &[path, "--set", "model.attention.kind=global"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::stderr(&out);
    assert!(stderr.contains("model.attention.kind"), "{stderr}");
    assert!(
        stderr.contains("every setting of the sweep is invalid"),
        "{stderr}"
    );
    assert!(!root.path().join("runs").exists(), "nothing runs");
}
