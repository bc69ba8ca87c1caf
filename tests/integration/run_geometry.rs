//! `medsynth run` end to end on cohorts stored as real data is, not as the RAS phantom: one
//! stored LAS (as FSL writes) at 5 mm and resampled to 4 mm, one oblique (tilted about all
//! three axes), anisotropic (4 x 4 x 6 mm) and stored LPS, resampled to 5 mm. Each goes
//! through a diffusion model and a self-attention GAN: training, synthesis, evaluation and
//! every export (NIfTI, DICOM, PNG, nnU-Net). Every NIfTI the run writes for a subject on its
//! original grid (synthesized volumes, the labels beside them, nnU-Net cases) has exactly the
//! subject's source shape and affine as nibabel reads them, and the DICOM series read back on
//! the same grid.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use medsynth::volume::AxisOrder;
use serde_json::Value;

/// The `[input]` phantom line and the `[preprocess]` spacing of each cohort.
const COHORTS: [(&str, &str, &str); 2] = [
    (
        "las",
        r#"phantom = { subjects = 4, shape = [40, 44, 36], spacing_mm = 5.0, orientation = "LAS", tumour_fraction = 1.0 }"#,
        "spacing_mm = [4.0, 4.0, 4.0]",
    ),
    (
        "oblique",
        r#"phantom = { subjects = 4, shape = [48, 56, 32], spacing_mm = [4.0, 4.0, 6.0], orientation = "LPS", tilt_deg = [20.0, -15.0, 25.0], tumour_fraction = 1.0 }"#,
        "spacing_mm = [5.0, 5.0, 5.0]",
    ),
];

/// The `[model]` and `[synthesize]` sections of each model.
const MODELS: [(&str, &str); 2] = [
    (
        "diffusion",
        r#"
[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "flair"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "tmsa", resolutions = [16], heads = 2 }
diffusion = { schedule = "cosine", timesteps = 50 }

[synthesize]
split = "all"
sampler = { kind = "ddim", steps = 2 }
variants = 2
"#,
    ),
    (
        "sagan",
        r#"
[model]
kind = "sagan"
task = "translation"
inputs = ["t1", "flair"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], groups = 4 }
gan = { attention_resolution = 8, n_dis = 1 }

[synthesize]
split = "all"
"#,
    ),
];

const TRAIN: &str = r#"
[train]
epochs = 1
batch_size = 8
checkpoint_every = 1000
"#;

/// What the evaluate section trains: baseline-unet and the segmentation network.
const EVALUATE_TRAINS: &str =
    "baselines = [\"histogram\", \"unet\"]\nsegmentation = { epochs = 1 }\n";

fn pipeline(name: &str, phantom: &str, spacing: &str, model: &str, train: &str, id: u32) -> String {
    format!(
        r#"
[pipeline]
name = "{name}"
seed = 6

[input]
format = "phantom"
{phantom}

[preprocess]
orientation = "RAS"
{spacing}
size = [32, 32]
crop_margin_vox = 1
slices = {{ axis = "axial", min_foreground = 0.2 }}
split = {{ train = 0.5, val = 0.25, test = 0.25 }}
{model}
{train}
[evaluate]
metrics = ["ssim", "psnr", "mae"]
protocol = "brasyn"
{EVALUATE_TRAINS}
[output]
formats = ["nifti", "dicom", "png", "nnunet"]
nnunet = {{ id = {id}, name = "Geometry" }}
report = true
"#
    )
}

/// The evaluation's rows: the foreground region, baseline-unet, every variant of the diffusion
/// model with the posterior mean and diversity, and Dice in the three settings.
fn check_evaluation(name: &str, model: &str, run_dir: &Path) {
    let rows = medsynth::pipeline::read_metrics(&run_dir.join("metrics.parquet")).unwrap();
    let has = |f: &dyn Fn(&medsynth::pipeline::MetricRow) -> bool| rows.iter().any(f);
    assert!(
        has(&|r| r.region == "foreground" && r.metric == "ssim"),
        "{name}"
    );
    assert!(
        has(&|r| r.method == "baseline-unet" && r.region == "foreground"),
        "{name}"
    );
    if model == "diffusion" {
        for variant in ["0", "1", "posterior-mean", "variant-mean"] {
            assert!(
                has(&|r| r.method == model && r.variant == variant),
                "{name}: {variant}"
            );
        }
        let diversity: Vec<f64> = rows
            .iter()
            .filter(|r| r.metric == "diversity")
            .map(|r| r.value)
            .collect();
        // Two variants of a sampler with its own noise per seed differ.
        assert!(
            !diversity.is_empty() && diversity.iter().all(|d| *d > 0.0),
            "{name}: {diversity:?}"
        );
    }
    let dice: Vec<_> = rows.iter().filter(|r| r.metric == "dice").collect();
    for setting in ["real", "synthesized", "missing"] {
        assert!(
            dice.iter().any(|r| r.setting == setting),
            "{name}: no Dice with the {setting} target"
        );
    }
    for region in ["whole-tumour", "tumour-core", "enhancing"] {
        assert!(dice.iter().any(|r| r.region == region), "{name}: {region}");
    }
    assert!(
        dice.iter().all(|r| (0.0..=1.0).contains(&r.value)),
        "{name}"
    );
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains("| paired test |"),
        "{name}: the report does not lead with the table"
    );
}

/// Dice is computed on the original grid: the stored label slices of every subject, put back
/// the way a prediction is (nearest neighbour through every recorded step), match the
/// subject's label file on these non-RAS and oblique grids: Dice 1 where the round trip is
/// exact (the LAS cohort), above 0.9 where resampling to 5 mm and back moves boundary voxels
/// (the oblique one), and far lower when the map is put back mirrored (so a wrong axis or
/// flip would fail).
fn labels_come_back_onto_their_grid(name: &str, run_dir: &Path) {
    let store = std::fs::read_dir(run_dir.join("slices"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let set = medsynth::dataset::SliceSet::load(&store, None).unwrap();
    let c = set.channel("label").unwrap();
    let mut subjects: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in set.rows.iter().enumerate() {
        subjects.entry(r.subject.clone()).or_default().push(i);
    }
    let exact = name.starts_with("las");
    for (subject, rows) in subjects {
        let data = set.gather(&rows).unwrap();
        let described: Vec<_> = rows.iter().map(|&i| &set.rows[i]).collect();
        let (back, _) =
            medsynth::synth::volumes::to_original_grid(&data, &described, c, "label").unwrap();
        let reference = medsynth::volume::nifti::read(
            &run_dir.join("phantom").join(&subject).join("seg.nii.gz"),
        )
        .unwrap();
        let back = back.frame(0).into_dyn();
        let mut mirrored = back.to_owned();
        mirrored.invert_axis(ndarray::Axis(0));
        let reference = reference.frame(0).into_dyn();
        let dice = |pred: ndarray::ArrayViewD<f32>| {
            medsynth::segmentation::dice(pred, reference.view(), &[1, 2, 3])
                .expect("tumour_fraction 1: every subject has a tumour")
        };
        let (d, wrong) = (dice(back.view()), dice(mirrored.view()));
        eprintln!("{name} {subject}: whole-tumour Dice {d:.4}, mirrored {wrong:.4}");
        assert!(
            d > if exact { 0.999 } else { 0.9 },
            "{name} {subject}: Dice {d}"
        );
        assert!(
            wrong < d - 0.3,
            "{name} {subject}: mirrored {wrong}, as put back {d}"
        );
    }
}

/// Every artifact of `run_dir` written for a subject on its original grid has its source's
/// grid; returns how many were checked.
fn every_volume_on_its_source_grid(run_dir: &Path) -> usize {
    let r: Value =
        serde_json::from_str(&common::run_python("run_reference.py", &[run_dir])).unwrap();
    let volumes = r["volumes"].as_object().unwrap();
    let artifacts = r["artifacts"].as_array().unwrap();
    for a in artifacts {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    // The sources: the phantom's files, per subject.
    let source = |subject: &str, name: &str| -> &Value {
        &volumes[&format!("phantom/{subject}/{name}.nii.gz")]
    };
    let mut checked = 0;
    for a in artifacts {
        let path = a["artifact"].as_str().unwrap();
        let subject = a["subject"].as_str().unwrap();
        let kind = a["kind"].as_str().unwrap();
        let on_source_grid =
            ["synthetic-volume", "synthetic-label"].contains(&kind) || kind.starts_with("nnunet-");
        if !on_source_grid || !path.ends_with(".nii.gz") || subject.is_empty() {
            continue;
        }
        let want = source(subject, if kind.contains("label") { "seg" } else { "t2" });
        let got = &volumes[path];
        assert_eq!(got["shape"], want["shape"], "{path}");
        assert_eq!(got["affine"], want["affine"], "{path}");
        checked += 1;
    }
    checked
}

/// The DICOM series of each synthesized T2 reads back on the source's grid.
fn dicom_on_source_grid(run_dir: &Path) -> usize {
    let mut checked = 0;
    for subject in std::fs::read_dir(run_dir.join("synth/variant-0")).unwrap() {
        let dir = subject.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let series = medsynth::volume::read_volumes(&dir.join("t2")).unwrap();
        let source =
            medsynth::volume::nifti::read(&run_dir.join(format!("phantom/{name}/t2.nii.gz")))
                .unwrap();
        assert_eq!(series.len(), 1, "{name}");
        // A DICOM series has no slice order of its own: readers sort slices along the plane
        // normal (as dcm2niix does), which may reverse the third axis. The same voxels at the
        // same world positions, stored in the source's order:
        let g = &series[0].geometry;
        let order = AxisOrder::towards(&g.affine, &source.geometry.orientation()).unwrap();
        let g = order.geometry(g);
        assert_eq!(g.shape, source.geometry.shape, "{name}");
        let (a, b) = (g.affine.0, source.geometry.affine.0);
        for r in 0..4 {
            for c in 0..4 {
                // DICOM holds positions and directions as decimal strings (6 decimals).
                assert!((a[r][c] - b[r][c]).abs() < 1e-4, "{name}: {a:?} vs {b:?}");
            }
        }
        assert!(dir.join("t2.png").is_file(), "{name}");
        // A PACS and a viewer accept it: no dciodvfy error, and it says how it was made.
        let files = common::files_in(&dir.join("t2"));
        let errors = common::dciodvfy_errors(&files);
        assert!(errors.is_empty(), "{name}: {}", errors.join("\n"));
        let obj = ::dicom::object::open_file(&files[0]).unwrap();
        let derivation = obj
            .element(::dicom::dictionary_std::tags::DERIVATION_DESCRIPTION)
            .unwrap()
            .to_str()
            .unwrap()
            .into_owned();
        assert!(
            derivation.contains("synthetic image")
                && derivation.contains("checkpoint ema.bpk sha256"),
            "{derivation}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn non_ras_and_oblique_cohorts_come_back_on_their_source_grids_through_both_models() {
    let root = tempfile::tempdir().unwrap();
    let mut id = 600;
    let mut seen = BTreeMap::new();
    for (cohort, phantom, spacing) in COHORTS {
        for (model, sections) in MODELS {
            // Trained in the run, then applied from its checkpoint by a run without [train],
            // as a user applies a trained model to new data.
            let trained = format!("{cohort}-{model}");
            for run in ["trained", "applied"] {
                id += 1;
                let (name, sections, train) = if run == "trained" {
                    (trained.clone(), sections.to_owned(), TRAIN)
                } else {
                    let dir = root.path().join("runs").join(&trained).join("checkpoints");
                    let step = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
                    let checkpoint = format!(
                        "runs/{trained}/checkpoints/{}",
                        step.file_name().to_string_lossy()
                    );
                    (
                        format!("{trained}-applied"),
                        sections.replace(
                            "\n[synthesize]",
                            &format!("checkpoint = \"{checkpoint}\"\n\n[synthesize]"),
                        ),
                        "",
                    )
                };
                let file = root.path().join(format!("{name}.toml"));
                let mut text = pipeline(&name, phantom, spacing, &sections, train, id);
                if run == "applied" {
                    // The trained run covers baseline-unet and the segmentation network.
                    text = text.replace(EVALUATE_TRAINS, "");
                }
                std::fs::write(&file, text).unwrap();
                let out = common::run_pipeline(root.path(), &file);
                common::assert_success(&out);
                let run_dir = root.path().join("runs").join(&name);
                let stderr = common::stderr(&out);
                let stored = if cohort == "las" { "LAS" } else { "LPS" };
                assert!(
                    stderr.contains(&format!(
                        "stored {stored} (flair, t1, t1ce, t2): reoriented to RAS"
                    )),
                    "{stderr}"
                );
                let volumes = every_volume_on_its_source_grid(&run_dir);
                let series = dicom_on_source_grid(&run_dir);
                // Four subjects: a T2 and a label each, and the nnU-Net cases.
                assert!(volumes >= 8 + 4, "{name}: {volumes} volumes checked");
                assert_eq!(series, 4, "{name}");
                let path = run_dir.join("metrics.parquet");
                let df = medsynth::dataset::read_parquet(&path).unwrap();
                let methods = medsynth::dataset::text_column(&df, &path, "method").unwrap();
                assert!(methods.iter().any(|m| m == model), "{name}: {methods:?}");
                if run == "trained" {
                    check_evaluation(&name, model, &run_dir);
                }
                labels_come_back_onto_their_grid(&name, &run_dir);
                if model == "diffusion" {
                    let levels = common::runs::background_levels(&run_dir, "t2");
                    eprintln!(
                        "{name}: background (subject, real, synthesized, voxels): {levels:?}"
                    );
                }
                assert!(run_dir.join("report.html").is_file(), "{name}");
                seen.insert(name, volumes);
            }
        }
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
}

/// The synthesized background of a run of the demo, against the real one (inside the crop
/// box, outside the head): within 15 % per subject. Measures `runs/demo`, which the demo
/// command makes first (`cargo run --release -- run pipelines/demo.toml`), or the run folder
/// `MEDSYNTH_RUN` names (the demo on a non-RAS or oblique phantom, for example):
///
///     cargo test --test integration run_geometry::demo_background -- --ignored --nocapture
#[test]
#[ignore = "measures runs/demo, which the README's demo command makes"]
fn demo_background_comes_back_at_the_real_level() {
    let run_dir = std::env::var_os("MEDSYNTH_RUN").map_or_else(
        || common::repo().join("runs/demo"),
        std::path::PathBuf::from,
    );
    let levels = common::runs::background_levels(&run_dir, "t2");
    assert!(!levels.is_empty());
    println!("| subject | real T2 there | synthesized T2 there | voxels |");
    println!("| --- | --- | --- | --- |");
    for (subject, real, fake, n) in &levels {
        println!("| {subject} | {real:.1} | {fake:.1} | {n} |");
    }
    for (subject, real, fake, _) in &levels {
        assert!(
            (fake - real).abs() <= 0.15 * real,
            "{subject}: {fake} vs {real}"
        );
    }
}
