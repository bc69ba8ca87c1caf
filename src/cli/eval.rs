//! `medsynth eval`: metrics between a real and a synthetic volume.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use medsynth::metrics::protocol::score;
use medsynth::spec::{Metric, Protocol};
use medsynth::volume::{self, Volume};

/// Compare a synthetic volume with the real one: SSIM (3-D, Gaussian window 11, σ 1.5, as
/// scikit-image), MS-SSIM (as pytorch-msssim), PSNR, MAE and MSE. With a mask (a label map),
/// the BraSyn protocol scores the tumour (label > 0) and healthy regions too.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth eval --real sub-001/t1ce.nii.gz --fake runs/demo/synth/variant-0/sub-001/t1ce.nii.gz\n  medsynth eval --real t1ce.nii.gz --fake fake.nii.gz --mask seg.nii.gz --protocol brasyn --json"
)]
pub struct EvalArgs {
    /// The real volume (NIfTI file or DICOM folder).
    #[arg(long, value_name = "PATH")]
    pub real: PathBuf,
    /// The synthetic volume, on the same grid.
    #[arg(long, value_name = "PATH")]
    pub fake: PathBuf,
    /// A label map on the same grid; non-zero voxels are the tumour region.
    #[arg(long, value_name = "PATH")]
    pub mask: Option<PathBuf>,
    /// `volume` (intensities as they are) or `brasyn` (percentile clip to [0, 1]).
    #[arg(long, value_enum, default_value_t = EvalProtocol::Volume)]
    pub protocol: EvalProtocol,
    /// Data range for SSIM and PSNR under `volume`; default: the real volume's max - min.
    #[arg(long, value_name = "R")]
    pub data_range: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EvalProtocol {
    Volume,
    Brasyn,
}

fn read_one(path: &Path) -> anyhow::Result<Volume> {
    let mut volumes =
        volume::read_volumes(path).with_context(|| format!("cannot read {}", path.display()))?;
    if volumes.len() != 1 {
        bail!(
            "{}: holds {} volumes; give one NIfTI file or one DICOM series",
            path.display(),
            volumes.len()
        );
    }
    Ok(volumes.remove(0))
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let real = read_one(&args.real)?;
    let fake = read_one(&args.fake)?;
    if real.geometry.shape != fake.geometry.shape {
        bail!(
            "{}: shape {:?}, but {} has {:?}; resample onto the real grid first",
            args.fake.display(),
            fake.geometry.shape,
            args.real.display(),
            real.geometry.shape
        );
    }
    let mask = args.mask.as_deref().map(read_one).transpose()?;
    if let Some(m) = &mask
        && m.geometry.shape != real.geometry.shape
    {
        bail!(
            "{}: shape {:?}, the volumes have {:?}",
            args.mask.as_deref().unwrap_or(Path::new("")).display(),
            m.geometry.shape,
            real.geometry.shape
        );
    }
    let protocol = match args.protocol {
        EvalProtocol::Volume => Protocol::Volume,
        EvalProtocol::Brasyn => Protocol::Brasyn,
    };
    let metrics = [
        Metric::Ssim,
        Metric::MsSsim,
        Metric::Psnr,
        Metric::Mae,
        Metric::Mse,
    ];
    // MS-SSIM needs in-plane sides over 160 voxels; leave it out for smaller volumes.
    let shape = real.geometry.shape;
    let metrics: Vec<Metric> = metrics
        .into_iter()
        .filter(|m| *m != Metric::MsSsim || shape[0].min(shape[1]) > 160)
        .collect();
    let frame = |v: &Volume| v.frame(0).to_owned().into_dyn();
    let scores = score(
        frame(&real).view(),
        frame(&fake).view(),
        mask.as_ref().map(frame).as_ref().map(|m| m.view()),
        &metrics,
        protocol,
        args.data_range,
    )
    .with_context(|| {
        format!(
            "cannot score {} against {}",
            args.fake.display(),
            args.real.display()
        )
    })?;
    let name = |m: Metric| {
        serde_json::to_value(m)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let text = if args.json {
        let rows: Vec<_> = scores
            .iter()
            .map(|s| serde_json::json!({"metric": name(s.metric), "region": s.region, "value": s.value}))
            .collect();
        format!("{}\n", serde_json::to_string_pretty(&rows)?)
    } else {
        let mut t = format!("{:<8} {:<8} {:>12}\n", "metric", "region", "value");
        for s in &scores {
            t.push_str(&format!(
                "{:<8} {:<8} {:>12.6}\n",
                name(s.metric),
                s.region,
                s.value
            ));
        }
        t
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
