//! `medsynth schema`: prints the JSON Schema of pipeline files.

use std::process::ExitCode;

use clap::Args;

/// Print the JSON Schema of pipeline files (the same as schemas/pipeline.schema.json).
///
/// Editors that understand JSON Schema for TOML (Taplo, Even Better TOML) use it to complete
/// and check pipeline files as you type.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  medsynth schema > schemas/pipeline.schema.json")]
pub struct SchemaArgs {}

pub fn run(_: SchemaArgs) -> anyhow::Result<ExitCode> {
    print!("{}", medsynth::spec::schema_json());
    Ok(ExitCode::SUCCESS)
}
