//! `medsynth merge`: combines a sharded run's shards into one run folder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use medsynth::pipeline;

/// Merge the shards of a run into what a single-process run writes.
///
/// Reads RUN_DIR/shards/K-of-N (every shard must have finished) and writes into RUN_DIR the
/// slice store's manifest, every shard's per-subject files, the synthetic manifests,
/// metrics.parquet (with FID and KID over the whole cohort), the nnU-Net export, the report
/// and provenance.parquet. Running it again gives the same result.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  medsynth merge runs/demo")]
pub struct MergeArgs {
    /// The run folder whose shards/ to merge.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let outcome = pipeline::merge(&args.run_dir)?;
    super::run::finish(&outcome, args.summary_json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
