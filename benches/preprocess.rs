//! Preprocessing speed beside numpy/scipy: eight phantom subjects (four contrasts each,
//! 96 x 112 x 96 at 2 mm) read from NIfTI, resampled to 1.5 mm, cropped to the foreground with
//! a 4-voxel margin, padded to 128 x 128 axial slices, percentile-normalized to [-1, 1] and cut
//! into slices with at least 10 % foreground; the same chain in benches/preprocess_reference.py.
//!
//!   cargo bench --bench preprocess     (MEDSYNTH_PYTHON names a Python with benches/requirements.txt)
//!
//! Prints the median wall time of the whole set for medsynth on every core, medsynth on one
//! thread, and the reference (one Python process, as such scripts run), and the ratios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use medsynth::phantom::{PhantomConfig, PhantomFormat, write_cohort};
use medsynth::preprocess::{cut_slices, prepare};
use medsynth::spec::{NormalizeConfig, PreprocessSection, SliceConfig};
use medsynth::volume::{Volume, nifti};
use rayon::prelude::*;

const SUBJECTS: usize = 8;
const REPEATS: usize = 5;
const CONTRASTS: [&str; 4] = ["t1", "t1ce", "t2", "flair"];

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

fn one(folder: &Path, section: &PreprocessSection) -> usize {
    let order: Vec<String> = CONTRASTS.iter().map(|s| s.to_string()).collect();
    let volumes: BTreeMap<String, Volume> = order
        .iter()
        .map(|c| {
            let v = nifti::read(&folder.join(format!("{c}.nii.gz"))).expect("bench file reads");
            (c.clone(), v)
        })
        .collect();
    let p = prepare(section, volumes, None, &order, section.slices.axis).expect("prepares");
    let channels: Vec<&Volume> = order.iter().map(|c| &p.modalities[c].0).collect();
    cut_slices(&channels, &p.mask, section.slices.axis, 0.1, 0)
        .expect("slices")
        .len()
}

fn median(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let n = f();
    let mut runs: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[REPEATS / 2], n)
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = PhantomConfig {
        seed: 2,
        ..PhantomConfig::default()
    };
    eprintln!("making {SUBJECTS} phantom subjects ...");
    write_cohort(&cfg, SUBJECTS, dir.path(), PhantomFormat::Nifti, false)?;
    let folders: Vec<PathBuf> = (0..SUBJECTS)
        .map(|i| dir.path().join(medsynth::phantom::subject_id(i)))
        .collect();
    let s = section();
    let (parallel, slices) = median(|| folders.par_iter().map(|f| one(f, &s)).sum());
    let single_pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (single, _) = median(|| single_pool.install(|| folders.iter().map(|f| one(f, &s)).sum()));

    let python = std::env::var("MEDSYNTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/preprocess_reference.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(dir.path())
        .args(["1.5", "4", "128", "128", &REPEATS.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{python} preprocess_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let reference = refs["seconds"].as_f64().unwrap_or(f64::NAN);

    let threads = rayon::current_num_threads();
    println!(
        "{SUBJECTS} subjects x 4 contrasts, 96x112x96 @ 2 mm -> 1.5 mm, crop, 128x128, percentile, axial slices; median of {REPEATS}"
    );
    println!("{:<40} {:>9} {:>8} {:>8}", "", "seconds", "slices", "ratio");
    println!(
        "{:<40} {:>9.3} {:>8}",
        format!("medsynth ({threads} threads)"),
        parallel,
        slices
    );
    println!(
        "{:<40} {:>9.3} {:>8}",
        "medsynth (1 thread)", single, slices
    );
    println!(
        "{:<40} {:>9.3} {:>8} {:>8.2}",
        "numpy/scipy (1 process) / medsynth",
        reference,
        refs["slices"],
        reference / parallel
    );
    println!(
        "{:<40} {:>9} {:>8} {:>8.2}",
        "numpy/scipy / medsynth (1 thread)",
        "",
        "",
        reference / single
    );
    Ok(())
}
