//! The pipeline on a real single-node Slurm cluster (Debian's slurm-wlm and munge, brought up
//! on 127.0.0.1 by tests/slurm/cluster.sh): `medsynth slurm --shards 3 --submit` runs it as an
//! array of 3 prepare tasks, a training job, an array of 3 apply tasks and a merge job, chained
//! by dependencies, and the result equals the same pipeline run in one process.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running cluster; stopped (its daemons killed by PID) when dropped.
struct Cluster {
    service: common::Service,
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new("/usr/sbin/slurmctld").exists() || common::which("slurmctld"),
            "Slurm is not installed: run the suite with tests/run.sh as root, which installs Debian's slurm-wlm and munge"
        );
        Cluster {
            service: common::Service::start("tests/slurm/cluster.sh", "SLURM_CONF", "the cluster"),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.service.value);
        c
    }

    /// Slurm's record of a job: `scontrol show job ID`.
    fn job(&self, id: &str) -> String {
        let out = self
            .command("scontrol")
            .args(["show", "job", id])
            .output()
            .unwrap();
        common::stdout(&out)
    }

    /// Waits until none of `ids` is queued or running.
    fn wait(&self, ids: &[String], limit: Duration) {
        let start = Instant::now();
        loop {
            let out = self
                .command("squeue")
                .args(["-h", "-o", "%A %T"])
                .output()
                .unwrap();
            let queued = common::stdout(&out);
            let ours = queued
                .lines()
                .filter(|l| ids.iter().any(|id| l.split_whitespace().next() == Some(id)))
                .count();
            if ours == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "jobs still queued after {limit:?}:\n{queued}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["slurmctld.log", "slurmd.log"] {
            let path = self.service.dir.path().join("log").join(name);
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("--- {}\n", path.display()));
            for l in tail.into_iter().rev() {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }
}

/// Every job log the chain wrote.
fn job_logs(run_dir: &Path) -> String {
    let dir: PathBuf = run_dir.join("slurm/logs");
    let mut text = String::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        text.push_str(&format!("--- {}\n", e.path().display()));
        let log = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        for l in tail.into_iter().rev() {
            text.push_str(l);
            text.push('\n');
        }
    }
    text
}

#[test]
fn a_pipeline_runs_as_a_chain_of_slurm_jobs_and_equals_one_process() {
    let cluster = Cluster::start();
    let whole = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    for d in [whole.path(), sharded.path()] {
        std::fs::write(d.join("pipeline.toml"), common::runs::pipeline()).unwrap();
    }
    let single = Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(["run", "--root", ".", "pipeline.toml"])
        .current_dir(whole.path())
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .output()
        .unwrap();
    common::assert_success(&single);

    let submitted = cluster
        .command(env!("CARGO_BIN_EXE_medsynth"))
        .args([
            "slurm",
            "pipeline.toml",
            "--shards",
            "3",
            "--partition",
            "debug",
            "--cpus-per-task",
            "1",
            "--time",
            "00:20:00",
            "--submit",
        ])
        .current_dir(sharded.path())
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .output()
        .unwrap();
    common::assert_success(&submitted);
    // "submitted prepare=ID train=ID apply=ID merge=ID"
    let line = common::stdout(&submitted);
    let ids: Vec<(String, String)> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let names: Vec<&str> = ids.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["prepare", "train", "apply", "merge"], "{line}");
    let job_ids: Vec<String> = ids.iter().map(|(_, v)| v.clone()).collect();
    let run_dir = sharded.path().join("runs/shards");
    cluster.wait(&job_ids, Duration::from_secs(900));

    // Every job, every array task, completed.
    for (name, id) in &ids {
        let record = cluster.job(id);
        let states: Vec<&str> = record
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("JobState="))
            .collect();
        let expected = if name == "prepare" || name == "apply" {
            3
        } else {
            1
        };
        assert!(
            states.len() == expected && states.iter().all(|s| *s == "COMPLETED"),
            "{name} job {id}: states {states:?}\n{record}\n{}\n{}",
            job_logs(&run_dir),
            cluster.logs()
        );
    }
    common::runs::assert_same_run(&whole.path().join("runs/shards"), &run_dir);
}
