//! `medsynth inspect`: what a NIfTI file or a DICOM folder holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::volume::{self, Volume};

/// Describe a NIfTI file or the DICOM series under a path: format, shape, spacing,
/// orientation code (the order the voxel axes are stored in), affine (RAS+ mm), value range
/// and modality, and a warning for what the reader had to work around (a NIfTI whose sform
/// and qform disagree, header fields nibabel repairs). Reads no patient data.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth inspect data/phantom/sub-001/t1.nii.gz\n  medsynth inspect --json data/dicom/study1"
)]
pub struct InspectArgs {
    /// A NIfTI file (.nii, .nii.gz), a DICOM file, or a folder of DICOM files.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print JSON (one object per volume) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn describe(v: &Volume) -> serde_json::Value {
    let g = &v.geometry;
    serde_json::json!({
        "path": v.source.path,
        "format": v.meta.format,
        "stored_type": v.meta.stored_type,
        "shape": g.shape,
        "frames": v.frames(),
        "spacing_mm": g.spacing(),
        "orientation": g.orientation(),
        "affine": g.affine.0,
        "range": v.value_range(),
        "modality": v.meta.modality,
        "series_description": v.meta.series_description,
        "series_uid": v.source.series_uid,
        "sha256": v.source.sha256,
        "notes": v.meta.notes,
    })
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let volumes = volume::read_volumes(&args.path)
        .with_context(|| format!("cannot inspect {}", args.path.display()))?;
    let text = if args.json {
        let all: Vec<_> = volumes.iter().map(describe).collect();
        format!("{}\n", serde_json::to_string_pretty(&all)?)
    } else {
        volumes.iter().map(text).collect::<Vec<_>>().join("\n")
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The text description of one volume.
fn text(v: &Volume) -> String {
    use std::fmt::Write;
    // -0.0 prints as "-0.0000"; adding 0.0 turns it into +0.0.
    let n = |x: f64| x + 0.0;
    let mut out = String::new();
    let g = &v.geometry;
    let s = g.spacing().map(n);
    let _ = writeln!(out, "path:        {}", v.source.path.display());
    if let Some(uid) = &v.source.series_uid {
        let _ = writeln!(out, "series:      {uid}");
    }
    let _ = writeln!(
        out,
        "format:      {} ({})",
        v.meta.format, v.meta.stored_type
    );
    let _ = writeln!(
        out,
        "shape:       {} x {} x {}{}",
        g.shape[0],
        g.shape[1],
        g.shape[2],
        if v.frames() > 1 {
            format!(" x {} frames", v.frames())
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "spacing:     {:.4} x {:.4} x {:.4} mm",
        s[0], s[1], s[2]
    );
    let _ = writeln!(out, "orientation: {}", g.orientation());
    let _ = writeln!(out, "affine:");
    for row in g.affine.0 {
        let _ = writeln!(
            out,
            "  [{:>11.4} {:>11.4} {:>11.4} {:>11.4}]",
            n(row[0]),
            n(row[1]),
            n(row[2]),
            n(row[3])
        );
    }
    match v.value_range() {
        Some((lo, hi)) => writeln!(out, "values:      {lo} to {hi}"),
        None => writeln!(out, "values:      no finite value"),
    }
    .ok();
    for note in &v.meta.notes {
        let _ = writeln!(out, "warning:     {note}");
    }
    if let Some(m) = &v.meta.modality {
        let _ = writeln!(
            out,
            "modality:    {m}{}",
            v.meta
                .series_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    out
}
