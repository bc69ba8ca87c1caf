//! medsynth's side of the benchmark suite's short comparisons (benches/run drives it; the
//! reference side is benches/suite_reference.py, the same tasks on the same files):
//!
//!   suite prepare DIR     make the inputs: a 256 x 256 x 160 int16 .nii.gz, the same volume as
//!                         a 160-file DICOM series, a preprocessing cohort, images for SSIM and
//!                         features for the Fréchet distance (raw little-endian f32)
//!   suite TASK DIR        run TASK once untimed (caches warm), then once timed; print JSON
//!                         {"seconds": ...}
//!
//! TASK: nifti-read, dicom-read, preprocess, ssim-2d, ssim-3d, frechet. Peak memory is taken
//! by the driver from the worker process, so each task runs in a process of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use medsynth::metrics::fid::{Gaussian, frechet_distance};
use medsynth::metrics::ssim;
use medsynth::phantom::{Contrast, PhantomConfig, PhantomFormat, generate, write_cohort};
use medsynth::preprocess::{cut_slices, prepare};
use medsynth::spec::{NormalizeConfig, PreprocessSection, SliceConfig};
use medsynth::volume::dicom::{self, WriteOptions};
use medsynth::volume::{Volume, nifti};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Subjects of the preprocessing cohort; four contrasts each.
const SUBJECTS: usize = 4;
const CONTRASTS: [&str; 4] = ["t1", "t1ce", "t2", "flair"];
/// SSIM inputs: a 2-D slice and a 3-D volume.
const SSIM_2D: [usize; 2] = [256, 256];
const SSIM_3D: [usize; 3] = [128, 128, 128];
/// Fréchet distance inputs: features of Inception's pool layer for this many images per side.
const FEATURES: [usize; 2] = [1000, 2048];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; the driver passes TASK DIR.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [task, dir] = args[..] else {
        println!("benches/suite.rs is driven by benches/run (usage: suite TASK DIR)");
        return Ok(());
    };
    let dir = Path::new(dir);
    if task == "prepare" {
        return prepare_inputs(dir);
    }
    let mut run = task_fn(task, dir)?;
    run()?;
    let start = Instant::now();
    run()?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"task": task, "seconds": seconds, "threads": rayon::current_num_threads()})
    );
    Ok(())
}

type Task = Box<dyn FnMut() -> anyhow::Result<()>>;

/// The task's work, with its inputs already loaded where loading is not what is measured.
fn task_fn(task: &str, dir: &Path) -> anyhow::Result<Task> {
    let dir = dir.to_path_buf();
    Ok(match task {
        "nifti-read" => Box::new(move || {
            nifti::read(&dir.join("t1.nii.gz"))?;
            Ok(())
        }),
        "dicom-read" => Box::new(move || {
            let scan = dicom::scan(&dir.join("series"))?;
            let series = scan.series.first().context("no series")?;
            dicom::read_series(series)?;
            Ok(())
        }),
        "preprocess" => Box::new(move || {
            let section = section();
            let folders: Vec<PathBuf> = (0..SUBJECTS)
                .map(|i| dir.join("cohort").join(medsynth::phantom::subject_id(i)))
                .collect();
            let slices: usize = folders
                .par_iter()
                .map(|f| preprocess_one(f, &section))
                .collect::<anyhow::Result<Vec<usize>>>()?
                .into_iter()
                .sum();
            anyhow::ensure!(slices > 0, "no slices");
            Ok(())
        }),
        "ssim-2d" | "ssim-3d" => {
            let shape: Vec<usize> = if task == "ssim-2d" {
                SSIM_2D.to_vec()
            } else {
                SSIM_3D.to_vec()
            };
            let a = read_raw(&dir.join(format!("{task}-a.f32")), &shape)?;
            let b = read_raw(&dir.join(format!("{task}-b.f32")), &shape)?;
            Box::new(move || {
                ssim(a.view(), b.view(), 2.0)?;
                Ok(())
            })
        }
        "frechet" => {
            let a = read_raw(&dir.join("features-a.f32"), &FEATURES)?;
            let b = read_raw(&dir.join("features-b.f32"), &FEATURES)?;
            let to_2d = |x: &ArrayD<f32>| -> anyhow::Result<Array2<f64>> {
                Ok(x.mapv(f64::from).into_dimensionality()?)
            };
            let (a, b) = (to_2d(&a)?, to_2d(&b)?);
            Box::new(move || {
                let d = frechet_distance(&Gaussian::fit(a.view())?, &Gaussian::fit(b.view())?)?;
                anyhow::ensure!(d.is_finite(), "the distance is {d}");
                Ok(())
            })
        }
        other => anyhow::bail!(
            "unknown task {other:?}: expected prepare, nifti-read, dicom-read, preprocess, ssim-2d, ssim-3d or frechet"
        ),
    })
}

/// The preprocessing chain of the comparison (the same in benches/preprocess_reference.py):
/// resample to 1.5 mm, crop to the foreground with a 4-voxel margin, pad to 128 x 128 axial
/// slices, percentile-normalize to [-1, 1], cut slices with at least 10 % foreground.
fn section() -> PreprocessSection {
    PreprocessSection {
        spacing_mm: Some([1.5; 3]),
        crop_margin_vox: 4,
        size: Some([128, 128]),
        normalize: NormalizeConfig::default(),
        slices: SliceConfig {
            min_foreground: 0.1,
            ..SliceConfig::default()
        },
        ..PreprocessSection::default()
    }
}

fn preprocess_one(folder: &Path, section: &PreprocessSection) -> anyhow::Result<usize> {
    let order: Vec<String> = CONTRASTS.iter().map(|s| s.to_string()).collect();
    let mut volumes = BTreeMap::new();
    for c in &order {
        volumes.insert(c.clone(), nifti::read(&folder.join(format!("{c}.nii.gz")))?);
    }
    let p = prepare(section, volumes, None, &order, section.slices.axis)?;
    let channels: Vec<&Volume> = order.iter().map(|c| &p.modalities[c].0).collect();
    Ok(cut_slices(&channels, &p.mask, section.slices.axis, 0.1, 0)?.len())
}

fn prepare_inputs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The reading inputs: a phantom T1 as int16 NIfTI and as a DICOM series.
    let cfg = PhantomConfig {
        shape: [256, 256, 160],
        spacing_mm: [1.0; 3],
        seed: 1,
        tumour_fraction: 1.0,
        ..PhantomConfig::default()
    };
    let subject = generate(&cfg, 0);
    let volume = subject.volume(Contrast::T1).context("T1 is generated")?;
    let data = volume.frame(0).mapv(|v| v as i16);
    nifti::write(
        &dir.join("t1.nii.gz"),
        data.view(),
        &volume.geometry.affine,
        "bench",
    )?;
    let series = dir.join("series");
    if series.exists() {
        std::fs::remove_dir_all(&series)?;
    }
    dicom::write_series(&volume, &series, &WriteOptions::default())?;
    // The preprocessing cohort: 96 x 112 x 96 at 2 mm, four contrasts.
    let cohort = PhantomConfig {
        seed: 2,
        ..PhantomConfig::default()
    };
    write_cohort(
        &cohort,
        SUBJECTS,
        &dir.join("cohort"),
        PhantomFormat::Nifti,
        false,
    )?;
    // SSIM: a phantom slab and a noisy copy in [-1, 1]; Fréchet: correlated features.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (name, shape) in [("ssim-2d", SSIM_2D.to_vec()), ("ssim-3d", SSIM_3D.to_vec())] {
        let n: usize = shape.iter().product();
        let src = volume.frame(0);
        // From the middle of the head, in storage order.
        let skip = src.len() / 2 - n / 2;
        let flat: Vec<f32> = src.iter().copied().skip(skip).take(n).collect();
        let hi = flat.iter().copied().fold(1e-6f32, f32::max);
        let a: Vec<f32> = flat.iter().map(|v| v / hi * 2.0 - 1.0).collect();
        let b: Vec<f32> = a
            .iter()
            .map(|v| {
                let e: f32 = StandardNormal.sample(&mut rng);
                (v + 0.1 * e).clamp(-1.0, 1.0)
            })
            .collect();
        write_raw(&dir.join(format!("{name}-a.f32")), &a)?;
        write_raw(&dir.join(format!("{name}-b.f32")), &b)?;
    }
    let [n, d] = FEATURES;
    for (name, shift) in [("features-a", 0.0f32), ("features-b", 0.3)] {
        let mut x = vec![0f32; n * d];
        for row in x.chunks_mut(d) {
            let common: f32 = StandardNormal.sample(&mut rng);
            for v in row.iter_mut() {
                let e: f32 = StandardNormal.sample(&mut rng);
                *v = (0.5 * common + e + shift).max(0.0);
            }
        }
        write_raw(&dir.join(format!("{name}.f32")), &x)?;
    }
    println!("{}", serde_json::json!({"prepared": dir}));
    Ok(())
}

fn write_raw(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn read_raw(path: &Path, shape: &[usize]) -> anyhow::Result<ArrayD<f32>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(shape), values)?)
}
