//! Reading speed beside the tools users would pick instead: a 256 x 256 x 160 int16 `.nii.gz`
//! against nibabel, and a 160-file DICOM series against pydicom + numpy stacking.
//!
//!   cargo bench --bench io            (MEDSYNTH_PYTHON names a Python with nibabel, pydicom)
//!
//! Prints median wall times and the ratios (reference time / medsynth time; above 1 means
//! medsynth is faster). Data is made here: a phantom T1 written by medsynth.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use medsynth::phantom::{Contrast, PhantomConfig, generate};
use medsynth::volume::dicom::{self, WriteOptions};
use medsynth::volume::nifti;

const REPEATS: usize = 7;

fn median_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let mut runs: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[REPEATS / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = PhantomConfig {
        shape: [256, 256, 160],
        spacing_mm: [1.0; 3],
        seed: 1,
        tumour_fraction: 1.0,
        ..PhantomConfig::default()
    };
    eprintln!("making a 256 x 256 x 160 phantom ...");
    let subject = generate(&cfg, 0);
    let volume = subject.volume(Contrast::T1).expect("T1 is generated");
    let nii = dir.path().join("t1.nii.gz");
    let data = volume.frame(0).mapv(|v| v as i16);
    nifti::write(&nii, data.view(), &volume.geometry.affine, "bench")?;
    let series = dir.path().join("series");
    dicom::write_series(&volume, &series, &WriteOptions::default())?;

    let nifti_s = median_seconds(|| {
        nifti::read(&nii).expect("the bench file reads");
    });
    let dicom_s = median_seconds(|| {
        let scan = dicom::scan(&series).expect("the bench series scans");
        dicom::read_series(&scan.series[0]).expect("the bench series reads");
    });

    let python = std::env::var("MEDSYNTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/io_reference.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&nii)
        .arg(&series)
        .arg(REPEATS.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{python} io_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let r = |k: &str| refs[k].as_f64().unwrap_or(f64::NAN);

    let threads = rayon::current_num_threads();
    println!("reading on {threads} threads, median of {REPEATS} runs");
    println!("{:<44} {:>10} {:>10}", "", "seconds", "ratio");
    println!(
        "{:<44} {:>10.4}",
        "medsynth nifti::read (.nii.gz -> f32)", nifti_s
    );
    println!(
        "{:<44} {:>10.4} {:>10.2}",
        "nibabel get_fdata (-> f64)",
        r("nibabel_fdata"),
        r("nibabel_fdata") / nifti_s
    );
    println!(
        "{:<44} {:>10.4} {:>10.2}",
        "nibabel dataobj (-> stored int16)",
        r("nibabel_raw"),
        r("nibabel_raw") / nifti_s
    );
    println!(
        "{:<44} {:>10.4}",
        "medsynth DICOM scan + read_series (160 files)", dicom_s
    );
    println!(
        "{:<44} {:>10.4} {:>10.2}",
        "pydicom read + sort + stack",
        r("pydicom_stack"),
        r("pydicom_stack") / dicom_s
    );
    Ok(())
}
