//! What a batch job sees of a run: with stderr going to a file (not a terminal), long stages
//! log progress lines (stage, done/total, rate, ETA, the loss while training) and no escape
//! codes; `--log-format json` makes every line a JSON object; `--summary-json` writes the
//! printed summary in machine-readable form.

use crate::common;

use std::process::Command;

use serde_json::Value;

/// The pipeline file of this test.
fn pipeline() -> String {
    common::Pipeline::tiny("logs")
        .set("pipeline.seed", "3")
        .set(
            "input.phantom",
            "{ subjects = 3, shape = [40, 44, 36], spacing_mm = 5.0 }",
        )
        .set(
            "preprocess.split",
            "{ train = 0.34, val = 0.33, test = 0.33 }",
        )
        .set(
            "synthesize",
            r#"{ split = "test", sampler = { kind = "ddim", steps = 2 } }"#,
        )
        .set("evaluate", r#"{ metrics = ["ssim", "psnr"] }"#)
        .set("output", r#"{ formats = ["nifti"] }"#)
        .text()
}

fn run(root: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let file = root.join("logs.toml");
    std::fs::write(&file, pipeline()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(extra)
        .args(["run", "--root"])
        .arg(root)
        .arg(&file)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        // A line at every update, so a short run shows them.
        .env("MEDSYNTH_PROGRESS_SECS", "0")
        .output()
        .unwrap()
}

#[test]
fn a_batch_log_shows_progress_with_an_eta_and_no_escape_codes() {
    let root = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[]);
    common::assert_success(&out);
    let log = common::stderr(&out);
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    for stage in ["phantom", "preprocessing", "train", "synthesize"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("progress") && l.contains(&format!("stage={stage} ")))
            .collect();
        assert!(!lines.is_empty(), "no progress lines for {stage}:\n{log}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("eta=") && l.contains("total=")),
            "{lines:?}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("stage=train") && l.contains("loss")),
        "training progress carries the loss:\n{log}"
    );
}

#[test]
fn json_logs_and_the_summary_file_are_machine_readable() {
    let root = tempfile::tempdir().unwrap();
    let summary = root.path().join("out/summary.json");
    let file = root.path().join("logs.toml");
    std::fs::write(&file, pipeline()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(["--log-format", "json", "run", "--root"])
        .arg(root.path())
        .arg(&file)
        .arg("--summary-json")
        .arg(&summary)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .env("MEDSYNTH_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    common::assert_success(&out);
    let log = common::stderr(&out);
    let mut progress = 0;
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("progress"))
        {
            assert!(v["fields"]["eta"].is_string(), "{line}");
            progress += 1;
        }
    }
    assert!(progress > 0, "{log}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let subjects: u64 = s["splits"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["subjects"].as_u64().unwrap())
        .sum();
    assert_eq!(subjects, 3);
    assert!(s["checkpoint"].is_string() && s["provenance"].is_string());
    let metrics = s["evaluation"]["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["method"] == "diffusion" && m["metric"] == "ssim" && m["mean"].is_f64())
    );
    // The printed summary names the same run folder.
    assert!(common::stdout(&out).contains(s["run_dir"].as_str().unwrap()));
}
