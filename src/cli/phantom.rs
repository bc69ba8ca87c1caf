//! `medsynth phantom`: writes procedural multi-contrast head phantoms.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::phantom::{self, PhantomConfig, PhantomFormat};
use medsynth::volume::AxisOrder;

/// Write procedural 3-D head phantoms: T1, T1ce, T2, FLAIR and a BraTS label per subject.
///
/// Each subject has its own anatomy (scalp, skull, CSF, a folded cortical ribbon, white
/// matter, deep grey nuclei, ventricles) and, for a fraction of subjects, a tumour with
/// necrotic core, enhancing rim and oedema (labels 1, 2, 3). Contrasts come from tissue
/// relaxation times at 3 T through the spin-echo and inversion-recovery signal equations,
/// with a smooth bias field and Rician noise. The same seed always gives the same bytes.
///
/// Files: DIR/sub-001/{t1,t1ce,t2,flair,seg}.nii.gz (int16 images, uint8 labels, affine
/// centred on the origin: RAS unless --orientation and --tilt store it otherwise), or with
/// --format dicom one MR series folder per contrast.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth phantom --subjects 4 --out data/phantom\n  medsynth phantom --subjects 20 --shape 128,128,96 --spacing 1.5 --seed 7 --tumour-fraction 1 --out data/tumours\n  medsynth phantom --subjects 4 --shape 96,112,32 --spacing 2,2,6 --orientation LAS --tilt 20,0,15 --out data/oblique"
)]
pub struct PhantomArgs {
    /// Number of subjects.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subjects: u32,
    /// Grid size X,Y,Z in voxels (each 16 to 1024).
    #[arg(long, default_value = "96,112,96", value_parser = parse_shape, value_name = "X,Y,Z")]
    pub shape: [usize; 3],
    /// Voxel size in millimetres: one number, or X,Y,Z (e.g. 0.9,0.9,4), each above 0 and at
    /// most 20.
    #[arg(long, default_value = "2", value_parser = parse_spacing, value_name = "MM[,MM,MM]")]
    pub spacing: [f64; 3],
    /// How the files store the voxel axes, as an orientation code: RAS, LAS (as FSL writes),
    /// LPS, PIR, ... --shape and --spacing stay along R, A, S.
    #[arg(long, default_value = "RAS", value_parser = parse_orientation, value_name = "CODE")]
    pub orientation: AxisOrder,
    /// Oblique grid: rotation about the world x, y and z axes in degrees (each within ±40).
    #[arg(long, default_value = "0,0,0", value_parser = parse_tilt, value_name = "X,Y,Z")]
    pub tilt: [f64; 3],
    /// Seed of the cohort.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of subjects with a tumour, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction, value_name = "F")]
    pub tumour_fraction: f64,
    /// Also write the tissue class map (tissues.nii.gz: 1 scalp, 2 skull, 3 CSF, 4 GM, 5 WM,
    /// 6 ventricles, 7 necrosis, 8 oedema, 9 enhancing).
    #[arg(long)]
    pub tissues: bool,
    /// Image format: nifti (DIR/sub-001/t1.nii.gz) or dicom (DIR/sub-001/t1/IM0001.dcm, one
    /// MR series per contrast; labels stay NIfTI).
    #[arg(long, value_enum, default_value = "nifti")]
    pub format: ImageFormat,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImageFormat {
    Nifti,
    Dicom,
}

fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [x, y, z] = parts.as_slice() else {
        return Err(format!(
            "{s:?} is not X,Y,Z: expected three sizes separated by commas"
        ));
    };
    let one = |v: &str| -> Result<usize, String> {
        let n: usize = v
            .parse()
            .map_err(|_| format!("{v:?} is not a whole number of voxels"))?;
        if (16..=1024).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} voxels is out of range, expected 16 to 1024"))
        }
    };
    Ok([one(x)?, one(y)?, one(z)?])
}

/// One number, or three separated by commas, each checked by `one`.
fn one_or_three(s: &str, one: impl Fn(&str) -> Result<f64, String>) -> Result<[f64; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [v] => Ok([one(v)?; 3]),
        [x, y, z] => Ok([one(x)?, one(y)?, one(z)?]),
        _ => Err(format!(
            "{s:?} has {} values, expected one or three separated by commas",
            parts.len()
        )),
    }
}

fn parse_spacing(s: &str) -> Result<[f64; 3], String> {
    one_or_three(s, |s| {
        let v: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of millimetres"))?;
        if v.is_finite() && v > 0.0 && v <= 20.0 {
            Ok(v)
        } else {
            Err(format!(
                "{v} mm is out of range, expected more than 0 and at most 20"
            ))
        }
    })
}

fn parse_tilt(s: &str) -> Result<[f64; 3], String> {
    let angle = |s: &str| -> Result<f64, String> {
        let v: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of degrees"))?;
        if v.is_finite() && v.abs() <= 40.0 {
            Ok(v)
        } else {
            Err(format!("{v} degrees is out of range, expected -40 to 40"))
        }
    };
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [x, y, z] = parts.as_slice() else {
        return Err(format!(
            "{s:?} is not X,Y,Z: expected three angles separated by commas"
        ));
    };
    Ok([angle(x)?, angle(y)?, angle(z)?])
}

fn parse_orientation(s: &str) -> Result<AxisOrder, String> {
    AxisOrder::from_ras(s)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range, expected 0 to 1"))
    }
}

pub fn run(args: PhantomArgs) -> anyhow::Result<ExitCode> {
    let cfg = PhantomConfig {
        shape: args.shape,
        spacing_mm: args.spacing,
        seed: args.seed,
        tumour_fraction: args.tumour_fraction,
        storage: args.orientation,
        tilt_deg: args.tilt,
    };
    tracing::info!(subjects = args.subjects, shape = ?cfg.shape, spacing_mm = ?cfg.spacing_mm, storage = ?cfg.storage, tilt_deg = ?cfg.tilt_deg, seed = cfg.seed, out = %args.out.display(), "writing phantom subjects");
    let written = phantom::write_cohort(
        &cfg,
        args.subjects as usize,
        &args.out,
        match args.format {
            ImageFormat::Nifti => PhantomFormat::Nifti,
            ImageFormat::Dicom => PhantomFormat::Dicom,
        },
        args.tissues,
    )
    .with_context(|| format!("cannot write phantom subjects to {}", args.out.display()))?;
    tracing::info!(files = written.len(), "done");
    Ok(ExitCode::SUCCESS)
}
