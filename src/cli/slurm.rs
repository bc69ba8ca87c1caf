//! `medsynth slurm`: a pipeline as a chain of Slurm jobs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::pipeline::{self, Stage};
use medsynth::slurm::SlurmOptions;

/// Write (and with --submit, submit) the Slurm batch scripts that run a pipeline in N shards.
///
/// The chain: an array job of N tasks for input and preprocessing (`run --shard K/N --stage
/// prepare`), one job that gathers the shards' slices and trains (`run --shards N --stage
/// train`), an array job for synthesis and evaluation (`--stage apply`) and a merge job
/// (`merge RUN_DIR`), each depending on the one before (afterok). A pipeline without a model is
/// prepare, then merge. The scripts go to RUN_DIR/slurm (or --out), with submit.sh beside them;
/// job logs go to RUN_DIR/slurm/logs. Without --submit they are printed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth slurm pipelines/demo.toml --shards 8 --partition cpu --time 04:00:00\n  medsynth slurm pipelines/demo.toml --shards 8 --gres gpu:1 --submit"
)]
pub struct SlurmArgs {
    /// The pipeline file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Number of shards: tasks per array job.
    #[arg(long, value_name = "N")]
    pub shards: usize,
    /// Run root: relative paths in the file are resolved against it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Slurm partition of every job.
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Slurm account of every job.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// Time limit of every job (Slurm's format, e.g. 04:00:00).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// Cores per job; medsynth uses this many threads.
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory per job (e.g. 16G).
    #[arg(long, value_name = "M")]
    pub mem: Option<String>,
    /// Generic resources of the training and apply jobs (e.g. gpu:1).
    #[arg(long, value_name = "G")]
    pub gres: Option<String>,
    /// The medsynth binary the jobs run, on a path every node sees. Default: this one.
    #[arg(long, value_name = "PATH")]
    pub medsynth: Option<PathBuf>,
    /// Where to write the scripts. Default: RUN_DIR/slurm.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Submit the chain with sbatch (SLURM_CONF and the usual Slurm environment apply).
    #[arg(long)]
    pub submit: bool,
}

pub fn run(args: SlurmArgs) -> anyhow::Result<ExitCode> {
    if args.shards == 0 {
        eprintln!("error: --shards: expected at least 1");
        return Ok(ExitCode::from(super::EXIT_INVALID));
    }
    let Some(file) = super::load_pipeline(&args.file)? else {
        return Ok(ExitCode::from(super::EXIT_INVALID));
    };
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let root = absolute(&args.root)?;
    let plan = pipeline::plan(file, &args.file, &root)?;
    let medsynth = match &args.medsynth {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().context("cannot find the medsynth binary")?,
    };
    let options = SlurmOptions {
        shards: args.shards,
        medsynth,
        file: absolute(&args.file)?,
        root,
        run_dir: plan.run_dir.clone(),
        name: plan.file.pipeline.name.clone(),
        trains: plan.stages.contains(&Stage::Train),
        synthesizes: plan.stages.contains(&Stage::Synthesize),
        partition: args.partition,
        account: args.account,
        time: args.time,
        cpus_per_task: args.cpus_per_task,
        mem: args.mem,
        gres: args.gres,
    };
    let dir = args.out.unwrap_or_else(|| plan.run_dir.join("slurm"));
    let scripts = options.scripts();
    for s in &scripts {
        let path = dir.join(&s.file_name);
        medsynth::volume::AtomicFile::write(&path, s.text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    let submit = dir.join("submit.sh");
    if !args.submit {
        let mut text = String::new();
        for s in &scripts {
            text.push_str(&format!(
                "# ---- {} ----\n{}\n",
                dir.join(&s.file_name).display(),
                s.text
            ));
        }
        text.push_str(&format!("# submit with: {}\n", submit.display()));
        super::print_stdout(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = std::process::Command::new("bash")
        .arg(&submit)
        .output()
        .with_context(|| format!("cannot run {}", submit.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed ({}): {}",
            submit.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    super::print_stdout(&String::from_utf8_lossy(&out.stdout))?;
    Ok(ExitCode::SUCCESS)
}
