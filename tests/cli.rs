//! The command line: help with examples, completions, and `run` refusing what it cannot do.

mod common;

use common::{medsynth, stderr, stdout};

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in ["validate", "schema", "phantom", "run", "completions"] {
        let out = medsynth(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        let help = stdout(&out);
        assert!(
            help.contains("Example"),
            "{cmd} --help has no example:\n{help}"
        );
        assert!(
            help.contains(&format!("medsynth {cmd}")),
            "{cmd} --help example does not use {cmd}"
        );
    }
}

#[test]
fn completions_are_generated() {
    let out = medsynth(&["completions", "bash"]);
    assert!(out.status.success());
    let script = stdout(&out);
    assert!(script.contains("_medsynth") && script.contains("phantom"));
}

#[test]
fn run_stops_before_any_work_at_an_unavailable_stage() {
    let root = tempfile::tempdir().unwrap();
    let pipeline = common::repo().join("pipelines/demo.toml");
    let out = medsynth(&[
        "run",
        "--root",
        root.path().to_str().unwrap(),
        pipeline.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stage [preprocess] is not available yet"),
        "{err}"
    );
    assert!(err.contains("nothing was done"), "{err}");
    // Nothing written under the run root.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn run_rejects_an_invalid_file_with_exit_1() {
    let out = medsynth(&["run", "fixtures/invalid/06-split-sum.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("preprocess.split"));
}

#[test]
fn bad_phantom_arguments_are_refused() {
    for (args, needle) in [
        (vec!["--shape", "64,64"], "expected three sizes"),
        (vec!["--shape", "64,8,64"], "8 voxels is out of range"),
        (vec!["--spacing=-1"], "out of range"),
        (vec!["--tumour-fraction", "1.5"], "expected 0 to 1"),
    ] {
        let mut all = vec!["phantom", "--out", "/nonexistent/never-written"];
        all.extend(args);
        let out = medsynth(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(stderr(&out).contains(needle), "{all:?}: {}", stderr(&out));
    }
}
