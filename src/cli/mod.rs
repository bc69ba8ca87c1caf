//! Subcommands, one file each: an `Args` struct whose doc comments are the help, and `run`.

mod completions;
mod convert;
mod devices;
mod eval;
mod inspect;
mod merge;
mod phantom;
mod run;
mod schema;
mod slurm;
mod sweep;
mod validate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Exit code for a pipeline file or argument that failed validation.
pub const EXIT_INVALID: u8 = 1;

/// medsynth: declarative pipelines for medical imaging research data.
///
/// Reads DICOM series and NIfTI volumes, preprocesses them invertibly, trains or applies
/// attention-guided generators (diffusion models and self-attention GANs), and writes
/// augmented datasets, metrics, reports and provenance. Everything a run does is in one TOML
/// pipeline file.
#[derive(Debug, Parser)]
#[command(name = "medsynth", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  medsynth phantom --subjects 4 --out data/phantom\n  medsynth validate pipelines/*.toml\n  medsynth run pipelines/demo.toml\n\nExit codes: 0 success, 1 validation failed, 2 other error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v debug, -vv trace). MEDSYNTH_LOG overrides, e.g.
    /// MEDSYNTH_LOG=medsynth=debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Worker threads for CPU work, burn's CPU backend included (0: one per core, or
    /// pipeline.threads for `run`; this flag overrides it).
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// How log lines on stderr are written: `text`, or `json` (one object per line, for
    /// cluster log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The form of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::ValidateArgs),
    Schema(schema::SchemaArgs),
    Phantom(phantom::PhantomArgs),
    Run(run::RunArgs),
    Merge(merge::MergeArgs),
    Slurm(slurm::SlurmArgs),
    Sweep(sweep::SweepArgs),
    Inspect(inspect::InspectArgs),
    Convert(convert::ConvertArgs),
    Eval(eval::EvalArgs),
    Devices(devices::DevicesArgs),
    Completions(completions::CompletionsArgs),
}

/// Sends `tracing` output to stderr at the level the flags ask for; colours only when
/// stderr is a terminal, so a batch job's log file holds plain text.
pub fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // wgpu reports every graphics API it probes and cannot open (EGL on a machine with
    // Vulkan only, say) as an error; what matters reaches medsynth's own messages.
    let default = format!("{default},wgpu_hal=off,wgpu_core=warn,naga=warn");
    let filter =
        EnvFilter::try_from_env("MEDSYNTH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match global.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
}

/// Sizes rayon's global pool.
pub fn init_threads(global: &GlobalArgs) -> anyhow::Result<()> {
    if global.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(global.threads)
            .build_global()
            .map_err(|e| anyhow::anyhow!("cannot start {} worker threads: {e}", global.threads))?;
    }
    Ok(())
}

/// Runs a subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate(a) => validate::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Phantom(a) => phantom::run(a),
        Command::Run(a) => run::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Slurm(a) => slurm::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Completions(a) => completions::run(a),
    }
}

/// Loads a pipeline file for `run` and `slurm`: `None` when it fails validation (every
/// diagnostic printed as `error: file:line:column: key: message`), an error when it cannot
/// be read.
pub fn load_pipeline(
    path: &std::path::Path,
) -> anyhow::Result<Option<medsynth::spec::PipelineFile>> {
    use anyhow::Context;
    match medsynth::spec::load(path) {
        Ok(f) => Ok(Some(f)),
        Err(medsynth::spec::SpecError::Invalid(diagnostics)) => {
            for d in diagnostics {
                eprintln!("error: {d}");
            }
            Ok(None)
        }
        Err(e) => Err(e).context("cannot load the pipeline"),
    }
}

/// Writes to stdout; a closed pipe (`medsynth inspect x | head`) is a normal end, not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
