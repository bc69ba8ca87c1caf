//! `medsynth validate`: checks pipeline files without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use medsynth::spec::{self, SpecError};

/// Check pipeline files against the schema and the semantic rules, without running anything.
///
/// Every problem is reported as FILE:LINE:COLUMN: KEY: MESSAGE on stderr; valid files are
/// listed on stdout.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth validate pipelines/demo.toml\n  medsynth validate pipelines/*.toml"
)]
pub struct ValidateArgs {
    /// Pipeline files (TOML).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut invalid = false;
    let mut unreadable = false;
    for file in &args.files {
        match spec::load(file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(SpecError::Invalid(diagnostics)) => {
                invalid = true;
                for d in diagnostics {
                    eprintln!("error: {d}");
                }
            }
            Err(e @ SpecError::Read { .. }) => {
                unreadable = true;
                eprintln!("error: {e}");
                if let Some(cause) = std::error::Error::source(&e) {
                    eprintln!("  caused by: {cause}");
                }
            }
        }
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else if invalid {
        ExitCode::from(super::EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}
