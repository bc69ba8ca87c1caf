//! `medsynth convert`: DICOM to NIfTI, NIfTI to DICOM, NIfTI to NIfTI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use medsynth::volume;

/// Convert a volume; the output kind follows OUT's name: a name ending in .nii or .nii.gz is
/// a NIfTI file, anything else a folder for a derived DICOM series (explicit VR little endian,
/// new UIDs, no patient data).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth convert data/dicom/study1 t1.nii.gz\n  medsynth convert t1.nii.gz out/t1-dicom\n  medsynth convert --series 1.2.840.113619.2.1 data/dicom/study1 t1.nii.gz"
)]
pub struct ConvertArgs {
    /// A NIfTI file or a DICOM folder.
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// A .nii/.nii.gz file, or a folder for a DICOM series.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// Which DICOM series to convert when IN holds several (its SeriesInstanceUID).
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mut volumes = volume::read_volumes(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    if let Some(uid) = &args.series {
        volumes.retain(|v| v.source.series_uid.as_deref() == Some(uid.as_str()));
        if volumes.is_empty() {
            bail!(
                "{}: no series with SeriesInstanceUID {uid}",
                args.input.display()
            );
        }
    }
    if volumes.len() > 1 {
        let list: Vec<String> = volumes
            .iter()
            .map(|v| {
                format!(
                    "  {} ({} x {} x {}, {})",
                    v.source.series_uid.as_deref().unwrap_or("?"),
                    v.geometry.shape[0],
                    v.geometry.shape[1],
                    v.geometry.shape[2],
                    v.meta
                        .series_description
                        .as_deref()
                        .unwrap_or("no description")
                )
            })
            .collect();
        bail!(
            "{} holds {} series; choose one with --series UID:\n{}",
            args.input.display(),
            volumes.len(),
            list.join("\n")
        );
    }
    let v = &volumes[0];
    let written = volume::write_volume(&args.output, v)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    tracing::info!(files = written.len(), out = %args.output.display(), "converted");
    Ok(ExitCode::SUCCESS)
}
