//! Batch scripts that run a pipeline on a Slurm cluster as a chain of jobs: an array job for
//! the per-subject stages of N shards, one job that gathers the shards' slices and trains, an
//! array job for synthesis and evaluation, and a merge job. Each waits for the one before with
//! `--dependency=afterok`; `--kill-on-invalid-dep=yes` cancels the rest of the chain when a job
//! fails, instead of leaving it pending forever.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the scripts run and ask Slurm for.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Number of shards (array tasks per array job).
    pub shards: usize,
    /// The medsynth binary the jobs run (on a path every node sees).
    pub medsynth: PathBuf,
    /// The pipeline file, the run root and the run folder, absolute.
    pub file: PathBuf,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    /// The pipeline's name, for job names.
    pub name: String,
    /// Whether the file trains, and whether it synthesizes (else the chain is prepare, merge).
    pub trains: bool,
    pub synthesizes: bool,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Time limit of every job (`--time`).
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Memory per job (`--mem`), e.g. `8G`.
    pub mem: Option<String>,
    /// Generic resources for the training and apply jobs (`--gres`), e.g. `gpu:1`.
    pub gres: Option<String>,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub file_name: String,
    pub text: String,
}

/// A job of the chain.
struct Job {
    name: &'static str,
    array: bool,
    /// Whether the job gets `--gres` (it runs the model).
    model: bool,
    what: &'static str,
    args: String,
}

fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl SlurmOptions {
    fn jobs(&self) -> Vec<Job> {
        let n = self.shards;
        let mut jobs = vec![Job {
            name: "prepare",
            array: true,
            model: false,
            what: "input and preprocessing of shard K",
            args: format!("--shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --stage prepare"),
        }];
        if self.synthesizes {
            jobs.push(Job {
                name: "train",
                array: false,
                model: true,
                what: if self.trains {
                    "gathers every shard's slices and trains the model"
                } else {
                    "gathers every shard's slices (the file applies a given checkpoint)"
                },
                args: format!("--shards {n} --stage train"),
            });
            jobs.push(Job {
                name: "apply",
                array: true,
                model: true,
                what: "synthesis and evaluation of shard K",
                args: format!("--shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --stage apply"),
            });
        }
        jobs.push(Job {
            name: "merge",
            array: false,
            model: false,
            what: "merges the shards into the run folder",
            args: String::new(),
        });
        jobs
    }

    fn logs(&self) -> PathBuf {
        self.run_dir.join("slurm").join("logs")
    }

    fn script(&self, job: &Job) -> String {
        let mut s = String::from("#!/bin/bash\n");
        let mut opt = |o: String| {
            let _ = writeln!(s, "#SBATCH {o}");
        };
        opt(format!("--job-name=medsynth-{}-{}", self.name, job.name));
        let log = if job.array {
            opt(format!("--array=0-{}", self.shards.saturating_sub(1)));
            format!("{}-%A_%a.log", job.name)
        } else {
            format!("{}-%j.log", job.name)
        };
        opt(format!("--output={}", quote(&self.logs().join(log))));
        if let Some(p) = &self.partition {
            opt(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            opt(format!("--account={a}"));
        }
        if let Some(t) = &self.time {
            opt(format!("--time={t}"));
        }
        if let Some(c) = self.cpus_per_task {
            opt(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            opt(format!("--mem={m}"));
        }
        if let (true, Some(g)) = (job.model, &self.gres) {
            opt(format!("--gres={g}"));
        }
        let _ = writeln!(
            s,
            "# medsynth, pipeline {}: {}.\nset -euo pipefail",
            self.file.display(),
            job.what
        );
        // The job's cores, not the node's: Slurm sets SLURM_CPUS_PER_TASK with --cpus-per-task.
        let threads = "--threads \"${SLURM_CPUS_PER_TASK:-0}\"";
        let command = if job.name == "merge" {
            format!(
                "{} {threads} merge {}",
                quote(&self.medsynth),
                quote(&self.run_dir)
            )
        } else {
            format!(
                "{} {threads} run --root {} {} {}",
                quote(&self.medsynth),
                quote(&self.root),
                quote(&self.file),
                job.args
            )
        };
        let _ = writeln!(s, "exec {command}");
        s
    }

    /// The chain's batch scripts (`prepare.sbatch`, ...) and `submit.sh`, which submits them
    /// in order, each depending on the one before, and prints their job ids.
    pub fn scripts(&self) -> Vec<Script> {
        let jobs = self.jobs();
        let mut out: Vec<Script> = jobs
            .iter()
            .map(|j| Script {
                file_name: format!("{}.sbatch", j.name),
                text: self.script(j),
            })
            .collect();
        let mut submit = String::from(
            "#!/bin/bash\n# Submits the medsynth jobs of this folder as one chain: each starts when the one\n# before has finished without error; a failure cancels the rest.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n",
        );
        let _ = writeln!(submit, "mkdir -p {}", quote(&self.logs()));
        let mut previous: Option<&str> = None;
        for j in &jobs {
            let depend = previous
                .map(|p| format!(" --kill-on-invalid-dep=yes --dependency=afterok:\"${p}\""))
                .unwrap_or_default();
            let _ = writeln!(
                submit,
                "{name}=$(sbatch --parsable{depend} {name}.sbatch | cut -d';' -f1)",
                name = j.name
            );
            previous = Some(j.name);
        }
        let ids: Vec<String> = jobs
            .iter()
            .map(|j| format!("{0}=${{{0}}}", j.name))
            .collect();
        let _ = writeln!(submit, "echo \"submitted {}\"", ids.join(" "));
        out.push(Script {
            file_name: "submit.sh".to_owned(),
            text: submit,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(trains: bool, synthesizes: bool) -> SlurmOptions {
        SlurmOptions {
            shards: 3,
            medsynth: "/opt/medsynth/bin/medsynth".into(),
            file: "/data/study/demo.toml".into(),
            root: "/data/study".into(),
            run_dir: "/data/study/runs/demo".into(),
            name: "demo".into(),
            trains,
            synthesizes,
            partition: Some("gpu".into()),
            account: None,
            time: Some("02:00:00".into()),
            cpus_per_task: Some(8),
            mem: None,
            gres: Some("gpu:1".into()),
        }
    }

    #[test]
    fn a_training_pipeline_is_a_chain_of_four() {
        let scripts = options(true, true).scripts();
        let names: Vec<&str> = scripts.iter().map(|s| s.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prepare.sbatch",
                "train.sbatch",
                "apply.sbatch",
                "merge.sbatch",
                "submit.sh"
            ]
        );
        let prepare = &scripts[0].text;
        assert!(prepare.contains("#SBATCH --array=0-2\n"));
        assert!(prepare.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\" --stage prepare"));
        assert!(!prepare.contains("--gres"), "preprocessing needs no GPU");
        assert!(scripts[1].text.contains("--shards 3 --stage train"));
        assert!(scripts[1].text.contains("#SBATCH --gres=gpu:1\n"));
        assert!(!scripts[1].text.contains("--array"));
        assert!(scripts[3].text.contains("merge /data/study/runs/demo"));
        let submit = &scripts[4].text;
        assert!(submit.contains("train=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:\"$prepare\" train.sbatch"));
        assert!(submit.contains("merge=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:\"$apply\" merge.sbatch"));
    }

    #[test]
    fn a_preprocessing_pipeline_is_prepare_then_merge() {
        let scripts = options(false, false).scripts();
        let names: Vec<&str> = scripts.iter().map(|s| s.file_name.as_str()).collect();
        assert_eq!(names, ["prepare.sbatch", "merge.sbatch", "submit.sh"]);
        assert!(
            scripts[2]
                .text
                .contains("--dependency=afterok:\"$prepare\" merge.sbatch")
        );
    }

    #[test]
    fn paths_with_spaces_are_quoted() {
        let mut o = options(true, true);
        o.file = "/data/my study/demo.toml".into();
        assert!(o.scripts()[0].text.contains("'/data/my study/demo.toml'"));
    }
}
