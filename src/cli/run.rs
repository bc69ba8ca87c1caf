//! `medsynth run`: runs a pipeline file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::pipeline::{self, Mode, Part, Shard};

/// Run a pipeline file: every stage it has sections for, in order.
///
/// All relative paths in the file (input root, run folder, caches, checkpoints) are resolved
/// against the run root. Every stage is checked before any work starts; a stage this build
/// cannot do stops the run with exit code 2 and nothing written.
#[derive(Debug, Args)]
///
/// A run can be split across processes or machines: `--shard K/N` runs the per-subject
/// stages for subject shard K of N (K from 0; subjects are assigned by a stable hash of their
/// id). A file that trains runs in four steps: every shard with `--stage prepare`, one
/// training job with `--shards N --stage train`, every shard with `--stage apply`, then
/// `medsynth merge RUN_DIR`. `medsynth slurm` writes these as Slurm jobs.
#[command(
    after_help = "Examples:\n  medsynth run pipelines/demo.toml\n  medsynth run --root /data/study pipelines/missing-modality.toml\n  medsynth run pipelines/demo.toml --shard 0/3 --stage prepare\n  medsynth run pipelines/demo.toml --shards 3 --stage train\n  medsynth run pipelines/demo.toml --shard 0/3 --stage apply\n  medsynth merge runs/demo"
)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Run root: relative paths in the file are resolved against it. Default: the current folder.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Also write the summary as JSON to this file (for batch jobs and log collectors).
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Run the per-subject stages of subject shard K of N only (K from 0), writing into
    /// RUN_DIR/shards/K-of-N.
    #[arg(long, value_name = "K/N", conflicts_with = "shards")]
    pub shard: Option<Shard>,
    /// The number of shards, for the training job (`--stage train`) of a sharded run.
    #[arg(long, value_name = "N", requires = "stage")]
    pub shards: Option<usize>,
    /// Which part of a sharded run: `prepare` (input, preprocessing), `train` (the training
    /// job, with --shards), `apply` (synthesis and evaluation) or `all` (prepare, then apply
    /// when the model is ready). Default with --shard: all.
    #[arg(long, value_enum, value_name = "PART")]
    pub stage: Option<StagePart>,
}

/// The `--stage` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StagePart {
    Prepare,
    Train,
    Apply,
    All,
}

/// What the shard flags ask this process to do.
fn mode(args: &RunArgs) -> anyhow::Result<Mode> {
    Ok(match (args.shard, args.shards, args.stage) {
        (None, None, None) => Mode::Whole,
        (Some(s), None, None | Some(StagePart::All)) => Mode::Shard(s, Part::All),
        (Some(s), None, Some(StagePart::Prepare)) => Mode::Shard(s, Part::Prepare),
        (Some(s), None, Some(StagePart::Apply)) => Mode::Shard(s, Part::Apply),
        (None, Some(n), Some(StagePart::Train)) if n > 0 => Mode::Train { shards: n },
        (Some(_), _, Some(StagePart::Train)) => {
            anyhow::bail!(
                "--stage train is the one training job of a sharded run: use --shards N, not --shard K/N"
            )
        }
        _ => anyhow::bail!(
            "use --shard K/N [--stage prepare|apply|all] for a shard, or --shards N --stage train for the training job"
        ),
    })
}

/// Sizes the worker pool every CPU stage uses, burn's CPU backend (its GEMM and kernels run
/// on rayon's global pool) included: `pipeline.threads` when set, unless `--threads` already
/// sized it.
fn size_pool(threads: usize) {
    if threads > 0
        && rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .is_err()
    {
        tracing::info!("--threads overrides pipeline.threads = {threads}");
    }
    tracing::info!(
        threads = rayon::current_num_threads(),
        "worker threads, burn's CPU backend included"
    );
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = super::load_pipeline(&args.file)? else {
        return Ok(ExitCode::from(super::EXIT_INVALID));
    };
    let mode = match mode(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::EXIT_INVALID));
        }
    };
    size_pool(file.pipeline.threads);
    let mut plan = pipeline::plan(file, &args.file, &args.root)?;
    plan.mode = mode;
    tracing::info!(run = %plan.run_dir.display(), stages = ?plan.stages, "planned");
    let outcome = pipeline::execute(plan, &args.root)?;
    finish(&outcome, args.summary_json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the summary JSON when asked, and prints the summary.
pub fn finish(
    outcome: &pipeline::Outcome,
    summary_json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = summary_json {
        let text = serde_json::to_string_pretty(&outcome.summary_json())?;
        medsynth::volume::AtomicFile::write(path, text.as_bytes())
            .with_context(|| format!("cannot write the summary to {}", path.display()))?;
    }
    super::print_stdout(&format!("{outcome}\n"))
}
