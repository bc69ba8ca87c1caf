//! One writer per run folder: a second `medsynth run` on a folder another run is writing
//! refuses at once and names the holder; a lock left by a killed run is taken over with a
//! warning.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline(epochs: u32) -> String {
    common::Pipeline::tiny("locked")
        .set(
            "input.phantom",
            "{ subjects = 3, shape = [40, 44, 36], spacing_mm = 5.0 }",
        )
        .set(
            "preprocess.split",
            "{ train = 0.67, val = 0.33, test = 0.0 }",
        )
        .set("model.attention", r#"{ kind = "none" }"#)
        .set("train.checkpoint_every", "100000")
        .set("train.epochs", &epochs.to_string())
        .text()
}

fn medsynth(root: &std::path::Path, file: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medsynth"));
    c.args(["run", "--root"])
        .arg(root)
        .arg(file)
        .env_remove("MEDSYNTH_LOG");
    c
}

#[test]
fn a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over() {
    let root = tempfile::tempdir().unwrap();
    let long = root.path().join("long.toml");
    std::fs::write(&long, pipeline(100_000)).unwrap();
    let lock = root.path().join("runs/locked/.medsynth.lock");

    // The first run trains for a long time; wait until it holds the folder.
    let mut first = medsynth(root.path(), &long)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !lock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no lock appeared"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The second, on the same folder, refuses at once and names the first.
    let t = Instant::now();
    let second = medsynth(root.path(), &long).output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", common::stderr(&second));
    let err = common::stderr(&second);
    assert!(
        err.contains("another medsynth run is writing here")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(first.try_wait().unwrap().is_none(), "the first run goes on");

    // Killed, the first leaves its lock behind; the next run takes it over and finishes.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lock.exists());
    let short = root.path().join("short.toml");
    std::fs::write(&short, pipeline(1)).unwrap();
    let third = medsynth(root.path(), &short).output().unwrap();
    common::assert_success(&third);
    assert!(
        common::stderr(&third).contains("stale"),
        "{}",
        common::stderr(&third)
    );
    assert!(!lock.exists(), "a finished run releases its folder");
}
