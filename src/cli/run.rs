//! `medsynth run`: runs a pipeline file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::pipeline;
use medsynth::spec::{self, SpecError};

/// Run a pipeline file: every stage it has sections for, in order.
///
/// All relative paths in the file (input root, run folder, caches, checkpoints) are resolved
/// against the run root. Every stage is checked before any work starts; a stage this build
/// cannot do stops the run with exit code 2 and nothing written.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth run pipelines/demo.toml\n  medsynth run --root /data/study pipelines/missing-modality.toml"
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
    let file = match spec::load(&args.file) {
        Ok(f) => f,
        Err(SpecError::Invalid(diagnostics)) => {
            for d in diagnostics {
                eprintln!("error: {d}");
            }
            return Ok(ExitCode::from(super::EXIT_INVALID));
        }
        Err(e) => return Err(e).context("cannot load the pipeline"),
    };
    size_pool(file.pipeline.threads);
    let plan = pipeline::plan(file, &args.file, &args.root)?;
    tracing::info!(run = %plan.run_dir.display(), stages = ?plan.stages, "planned");
    let outcome = pipeline::execute(plan, &args.root)?;
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&outcome.summary_json())?;
        medsynth::volume::AtomicFile::write(path, text.as_bytes())
            .with_context(|| format!("cannot write the summary to {}", path.display()))?;
    }
    super::print_stdout(&format!("{outcome}\n"))?;
    Ok(ExitCode::SUCCESS)
}
