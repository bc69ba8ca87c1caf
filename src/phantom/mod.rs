//! Procedural multi-contrast head phantoms: anatomy with per-subject variation, optional
//! tumours with BraTS labels, and T1, T1ce, T2 and FLAIR computed from tissue relaxation
//! times by the spin-echo and inversion-recovery signal equations, with a smooth bias field
//! and Rician noise.
//!
//! Subjects are deterministic per `(seed, index)` and independent of each other, so they are
//! generated in parallel and any subset can be regenerated alone.
//!
//! ```no_run
//! use medsynth::phantom::{PhantomConfig, generate};
//! let cfg = PhantomConfig { shape: [64, 64, 64], spacing_mm: [3.0; 3], seed: 7, tumour_fraction: 1.0, ..Default::default() };
//! let subject = generate(&cfg, 0);
//! assert_eq!(subject.images.len(), 4);
//! ```

mod anatomy;
mod mri;
mod tissue;

use std::path::{Path, PathBuf};

use ndarray::Array3;
use ndarray::parallel::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub use anatomy::Anatomy;
pub use mri::{Contrast, Sequence};
pub use tissue::{Relaxation, Tissue};

use crate::progress::Progress;
use crate::volume::dicom::{WriteOptions, write_series};
use crate::volume::{Affine, AxisOrder, Geometry, Metadata, Source, Volume, nifti, standard};

/// How phantom subjects are generated.
///
/// The head is rendered on an acquisition grid of `shape` voxels of `spacing_mm` along R, A
/// and S, centred on the world origin. It is then stored as real data is: voxel axes in the
/// order `storage` says (e.g. LAS, as FSL writes, or LPS), and with `tilt_deg` the whole grid
/// rotated about the origin (an oblique acquisition). Storage and tilt change only the file's
/// axis order and affine, never which tissue lies at a voxel of the acquisition grid.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomConfig {
    /// Acquisition grid size `[R, A, S]` in voxels.
    pub shape: [usize; 3],
    /// Voxel size along R, A and S in mm (anisotropic allowed).
    pub spacing_mm: [f64; 3],
    /// Seed of the whole cohort.
    pub seed: u64,
    /// Fraction of subjects with a tumour, in [0, 1].
    pub tumour_fraction: f64,
    /// How the RAS acquisition grid's axes are stored ([`AxisOrder::from_ras`]).
    pub storage: AxisOrder,
    /// Rotation of the grid about the world x, y and z axes in degrees, applied in that order.
    pub tilt_deg: [f64; 3],
}

impl Default for PhantomConfig {
    fn default() -> Self {
        Self {
            shape: [96, 112, 96],
            spacing_mm: [2.0; 3],
            seed: 0,
            tumour_fraction: 0.5,
            storage: AxisOrder::IDENTITY,
            tilt_deg: [0.0; 3],
        }
    }
}

impl PhantomConfig {
    /// The acquisition grid's affine: RAS, centred on the origin.
    fn acquisition(&self) -> Affine {
        Affine::centred(self.shape, self.spacing_mm)
    }

    /// The voxel-to-world affine every subject is written with: the acquisition grid in
    /// `storage` order, rotated by `tilt_deg`.
    pub fn affine(&self) -> Affine {
        let stored = self.storage.affine(&self.acquisition(), self.shape);
        rotation(self.tilt_deg).then(&stored)
    }

    /// The shape every subject is written with: `shape` in `storage` order.
    pub fn stored_shape(&self) -> [usize; 3] {
        self.storage.shape(self.shape)
    }

    /// Whether subject `index` has a tumour. Stratified: any run of n consecutive subjects
    /// holds round(n · fraction) ± 1 tumours, and the answer for one subject does not depend
    /// on how many subjects are generated.
    pub fn has_tumour(&self, index: usize) -> bool {
        let f = self.tumour_fraction.clamp(0.0, 1.0);
        let u: f64 = ChaCha8Rng::seed_from_u64(mix(self.seed, u64::MAX)).random();
        ((index as f64 + 1.0) * f + u).floor() > (index as f64 * f + u).floor()
    }
}

/// One generated subject.
#[derive(Debug, Clone)]
pub struct PhantomSubject {
    /// `sub-001`, `sub-002`, ...
    pub id: String,
    /// Voxel-to-world affine (RAS+ mm).
    pub affine: Affine,
    /// Tissue class per voxel ([`Tissue`] discriminants).
    pub tissues: Array3<u8>,
    /// BraTS labels: 1 necrosis, 2 oedema, 3 enhancing tumour.
    pub label: Array3<u8>,
    /// The four contrasts in scanner units (signal × 1000, rounded), in [`Contrast::ALL`] order.
    pub images: Vec<(Contrast, Array3<f32>)>,
}

/// The rotation about the world x, then y, then z axis by `deg` degrees, as an affine.
fn rotation(deg: [f64; 3]) -> Affine {
    let [x, y, z] = deg.map(f64::to_radians);
    let about = |axis: usize, angle: f64| {
        let (s, c) = angle.sin_cos();
        let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
        let mut m = [[0.0; 4]; 4];
        m[axis][axis] = 1.0;
        m[3][3] = 1.0;
        m[a][a] = c;
        m[a][b] = -s;
        m[b][a] = s;
        m[b][b] = c;
        Affine(m)
    };
    about(2, z).then(&about(1, y)).then(&about(0, x))
}

/// A subject identifier: `sub-001` (three digits at least).
pub fn subject_id(index: usize) -> String {
    format!("sub-{:03}", index + 1)
}

/// SplitMix64 mixing of a seed with a stream number, for independent per-subject RNGs.
fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generates subject `index` of the cohort described by `cfg`.
pub fn generate(cfg: &PhantomConfig, index: usize) -> PhantomSubject {
    let subject_seed = mix(cfg.seed, index as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(subject_seed);
    let affine = cfg.acquisition();
    let fov_mm: [f64; 3] = std::array::from_fn(|a| cfg.shape[a] as f64 * cfg.spacing_mm[a]);
    let anatomy = Anatomy::random(&mut rng, fov_mm, cfg.has_tumour(index));
    let tissues = anatomy.tissues(cfg.shape, &affine);
    let label = tissues.mapv(|t| Tissue::from_u8(t).map_or(0, Tissue::brats_label));

    // Per-subject tissue properties vary a little around the published values (±3 %).
    let mut params = Tissue::ALL.map(Tissue::relaxation);
    let jitter = Normal::new(1.0, 0.03).expect("constant parameters are valid");
    for r in params.iter_mut() {
        r.pd *= jitter.sample(&mut rng);
        r.t1_ms *= jitter.sample(&mut rng);
        r.t2_ms *= jitter.sample(&mut rng);
    }
    let texture = Array3::from_shape_fn(cfg.shape, |(i, j, k)| {
        anatomy.texture(affine.apply([i as f64, j as f64, k as f64]))
    });

    let images: Vec<(Contrast, Array3<f32>)> = Contrast::ALL
        .iter()
        .enumerate()
        .map(|(c, &contrast)| {
            let bias = BiasField::random(&mut rng);
            let signal = params.map(|p| contrast.signal(&p));
            // Noise level: 2 % of the brightest brain tissue, as on a clinical 3 T scan.
            let brain = [
                Tissue::Gm,
                Tissue::Wm,
                Tissue::Csf,
                Tissue::Oedema,
                Tissue::Enhancing,
            ];
            let peak = brain
                .iter()
                .map(|t| signal[*t as usize])
                .fold(0.0, f64::max);
            let sigma = 0.02 * peak;
            let image = render(
                cfg,
                &tissues,
                &texture,
                &signal,
                &bias,
                sigma,
                mix(subject_seed, c as u64 + 1),
            );
            (contrast, image)
        })
        .collect();

    // Stored as the configuration says: the same voxels in another axis order and place.
    let store = |a: &Array3<u8>| standard(cfg.storage.view3(a.view()));
    PhantomSubject {
        id: subject_id(index),
        affine: cfg.affine(),
        tissues: store(&tissues),
        label: store(&label),
        images: images
            .into_iter()
            .map(|(c, image)| (c, standard(cfg.storage.view3(image.view()))))
            .collect(),
    }
}

/// A smooth multiplicative receive-coil bias: exp of a random quadratic in the normalised
/// field-of-view coordinates, about ±15 % across the head.
struct BiasField {
    linear: [f64; 3],
    quadratic: [f64; 6],
}

impl BiasField {
    fn random(rng: &mut impl Rng) -> Self {
        let n = Normal::new(0.0, 0.08).expect("constant parameters are valid");
        Self {
            linear: std::array::from_fn(|_| n.sample(rng)),
            quadratic: std::array::from_fn(|_| n.sample(rng)),
        }
    }

    fn at(&self, u: [f64; 3]) -> f64 {
        let l = self.linear;
        let q = self.quadratic;
        (l[0] * u[0]
            + l[1] * u[1]
            + l[2] * u[2]
            + q[0] * u[0] * u[0]
            + q[1] * u[1] * u[1]
            + q[2] * u[2] * u[2]
            + q[3] * u[0] * u[1]
            + q[4] * u[0] * u[2]
            + q[5] * u[1] * u[2])
            .exp()
    }
}

/// Signal × bias with Rician noise (magnitude of a complex signal with Gaussian noise of
/// `sigma` in both channels), in scanner units (× 1000, rounded to integers).
fn render(
    cfg: &PhantomConfig,
    tissues: &Array3<u8>,
    texture: &Array3<f64>,
    signal: &[f64; 10],
    bias: &BiasField,
    sigma: f64,
    seed: u64,
) -> Array3<f32> {
    let [nx, ny, nz] = cfg.shape;
    let half = [nx, ny, nz].map(|n| (n as f64 - 1.0) / 2.0);
    let mut out = Array3::<f32>::zeros(cfg.shape);
    // One RNG per k-plane keeps the noise identical whatever the thread count.
    out.axis_iter_mut(ndarray::Axis(2))
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut plane)| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, k as u64));
            let noise = Normal::new(0.0, sigma.max(1e-12)).expect("sigma is positive");
            for j in 0..ny {
                for i in 0..nx {
                    let t = tissues[[i, j, k]] as usize;
                    let u = [
                        i as f64 / half[0] - 1.0,
                        j as f64 / half[1] - 1.0,
                        k as f64 / half[2] - 1.0,
                    ];
                    let s = signal[t] * texture[[i, j, k]] * bias.at(u);
                    let re = s + noise.sample(&mut rng);
                    let im = noise.sample(&mut rng);
                    plane[[i, j]] = ((re * re + im * im).sqrt() * 1000.0).round() as f32;
                }
            }
        });
    out
}

/// Why phantom subjects could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error("cannot create output folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    WriteNifti(#[from] nifti::NiftiError),
    #[error(transparent)]
    WriteDicom(#[from] crate::volume::dicom::DicomError),
}

/// How phantom images are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PhantomFormat {
    /// `<id>/<contrast>.nii.gz`.
    #[default]
    Nifti,
    /// `<id>/<contrast>/IM0001.dcm ...`, one MR series per contrast (labels stay NIfTI).
    Dicom,
}

impl PhantomSubject {
    /// One contrast as a [`Volume`] (modality MR).
    pub fn volume(&self, contrast: Contrast) -> Option<Volume> {
        let (_, image) = self.images.iter().find(|(c, _)| *c == contrast)?;
        Some(Volume {
            data: image.clone().insert_axis(ndarray::Axis(3)),
            geometry: Geometry {
                shape: [image.shape()[0], image.shape()[1], image.shape()[2]],
                affine: self.affine,
            },
            source: Source::default(),
            meta: Metadata {
                format: "phantom".to_owned(),
                stored_type: "int16".to_owned(),
                modality: Some("MR".to_owned()),
                series_description: Some(format!("medsynth phantom {}", contrast.name())),
                ..Metadata::default()
            },
        })
    }
}

/// Writes one subject's `{t1,t1ce,t2,flair}` (NIfTI files or DICOM series folders),
/// `seg.nii.gz` (and `tissues.nii.gz` if asked) into `dir/<id>/`, each file atomically.
/// Returns the written paths.
pub fn write_subject(
    subject: &PhantomSubject,
    dir: &Path,
    format: PhantomFormat,
    with_tissues: bool,
) -> Result<Vec<PathBuf>, PhantomError> {
    let folder = dir.join(&subject.id);
    std::fs::create_dir_all(&folder).map_err(|source| PhantomError::CreateDir {
        path: folder.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for (contrast, image) in &subject.images {
        if format == PhantomFormat::Dicom {
            let volume = subject
                .volume(*contrast)
                .expect("every contrast is generated");
            let options = WriteOptions {
                description: format!("medsynth phantom {}", contrast.name()),
                subject: Some(subject.id.clone()),
                ..WriteOptions::default()
            };
            written.extend(write_series(
                &volume,
                &folder.join(contrast.name()),
                &options,
            )?);
            continue;
        }
        let path = folder.join(format!("{}.nii.gz", contrast.name()));
        let data = image.mapv(|v| v.clamp(0.0, i16::MAX as f32) as i16);
        nifti::write(
            &path,
            data.view(),
            &subject.affine,
            &format!("medsynth phantom {}", contrast.name()),
        )?;
        written.push(path);
    }
    let seg = folder.join("seg.nii.gz");
    nifti::write(
        &seg,
        subject.label.view(),
        &subject.affine,
        "medsynth phantom BraTS labels",
    )?;
    written.push(seg);
    if with_tissues {
        let path = folder.join("tissues.nii.gz");
        nifti::write(
            &path,
            subject.tissues.view(),
            &subject.affine,
            "medsynth phantom tissue classes",
        )?;
        written.push(path);
    }
    Ok(written)
}

/// Generates and writes subjects `0..count` in parallel, with a progress bar.
pub fn write_cohort(
    cfg: &PhantomConfig,
    count: usize,
    dir: &Path,
    format: PhantomFormat,
    with_tissues: bool,
) -> Result<Vec<PathBuf>, PhantomError> {
    let indices: Vec<usize> = (0..count).collect();
    write_subjects(cfg, &indices, dir, format, with_tissues)
}

/// Writes the cohort's subjects with these indices (a shard's part of it); each subject is
/// the same as in the whole cohort.
pub fn write_subjects(
    cfg: &PhantomConfig,
    indices: &[usize],
    dir: &Path,
    format: PhantomFormat,
    with_tissues: bool,
) -> Result<Vec<PathBuf>, PhantomError> {
    let bar = Progress::new("phantom", "subjects", indices.len() as u64);
    let results: Vec<Result<Vec<PathBuf>, PhantomError>> = indices
        .par_iter()
        .map(|&index| {
            let subject = generate(cfg, index);
            let written = write_subject(&subject, dir, format, with_tissues);
            tracing::debug!(subject = %subject.id, "phantom subject written");
            bar.inc(1);
            written
        })
        .collect();
    bar.finish();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}
