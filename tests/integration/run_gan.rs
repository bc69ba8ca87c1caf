//! `medsynth run` with `model.kind = "sagan"` on generated phantoms, through every stage the
//! diffusion model goes through: training (checkpoint parts, the log with the discriminator
//! loss and both γ), synthesis back onto each subject's grid (checked by nibabel), metrics,
//! the report (γ curves and attention overlays embedded), the nnU-Net export (checked by
//! nibabel) and provenance (every row's digest checked by pyarrow and hashlib); a re-run
//! resumes instead of training again. Class-conditional generation with the truncation trick
//! records both in provenance and rebuilds volumes.

use crate::common;

use std::path::Path;

use serde_json::Value;

const LABEL_TO_IMAGE: &str = r#"
[pipeline]
name = "gan"
seed = 4

[input]
format = "phantom"
phantom = { subjects = 4, shape = [40, 44, 36], spacing_mm = 5.0, tumour_fraction = 1.0 }

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.5, val = 0.25, test = 0.25 }

[model]
kind = "sagan"
task = "label-to-image"
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], groups = 4 }
gan = { attention_resolution = 8, n_dis = 2, l1_weight = 10.0 }

[train]
epochs = 2
batch_size = 8
checkpoint_every = 1000

[synthesize]
split = "test"
variants = 2

[evaluate]
metrics = ["ssim", "psnr"]
protocol = "brasyn"

[output]
formats = ["nifti", "nnunet"]
nnunet = { id = 502, name = "GanTiny" }
report = true
attention_maps = true
"#;

fn provenance_is_complete(run_dir: &Path) -> Vec<String> {
    let p: Value =
        serde_json::from_str(&common::run_python("run_reference.py", &[run_dir])).unwrap();
    let artifacts = p["artifacts"].as_array().unwrap();
    for a in artifacts {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    artifacts
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_label_to_image_gan_runs_through_every_stage_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("pipeline.toml");
    std::fs::write(&file, LABEL_TO_IMAGE).unwrap();
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let run_dir = root.path().join("runs/gan");
    let stdout = common::stdout(&out);
    assert!(stdout.contains("sagan"), "{stdout}");

    // Checkpoint parts and the log with the GAN columns.
    let checkpoint = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("state.json").is_file())
        .unwrap();
    for part in medsynth::train::gan::PARTS {
        assert!(checkpoint.join(part).is_file(), "{part}");
    }
    let log = medsynth::train::read_log(&run_dir.join("train_log.parquet")).unwrap();
    assert!(!log.is_empty());
    assert!(log.iter().all(|r| r.loss.is_finite()
        && r.d_loss.is_some_and(f64::is_finite)
        && r.gamma_g.is_some()
        && r.gamma_d.is_some()));
    assert!(
        log.iter().any(|r| r.val_loss.is_some()),
        "validation L1 per epoch"
    );

    // Each test subject's variants lie on its grid; the noise image makes them differ.
    let table = medsynth::provenance::read(&run_dir.join("provenance.parquet")).unwrap();
    let volumes: Vec<_> = table
        .iter()
        .filter(|r| r.kind == "synthetic-volume")
        .collect();
    assert!(!volumes.is_empty());
    for row in &volumes {
        assert_eq!(row.sampler, "gan one pass, noise image");
        assert_eq!(row.guidance, "none");
        assert_eq!(row.checkpoint_sha256.len(), 64);
    }
    let subject = volumes[0].artifact.split('/').nth(2).unwrap().to_owned();
    let v0 = run_dir.join(format!("synth/variant-0/{subject}/t2.nii.gz"));
    let v1 = run_dir.join(format!("synth/variant-1/{subject}/t2.nii.gz"));
    let real = run_dir.join(format!("phantom/{subject}/t2.nii.gz"));
    let g: Value =
        serde_json::from_str(&common::run_python("same_grid.py", &[&v0, &real])).unwrap();
    assert!(
        g["affine_equal"].as_bool().unwrap()
            && g["shape_a"] == g["shape_b"]
            && g["finite"].as_bool().unwrap(),
        "{g}"
    );
    assert_ne!(std::fs::read(&v0).unwrap(), std::fs::read(&v1).unwrap());

    // Metrics name the model by its kind (the baselines need input modalities, which
    // label-to-image has none of).
    let path = run_dir.join("metrics.parquet");
    let df = medsynth::dataset::read_parquet(&path).unwrap();
    let methods = medsynth::dataset::text_column(&df, &path, "method").unwrap();
    assert!(methods.iter().all(|x| x == "sagan") && !methods.is_empty());

    // The report: γ curves and attention overlays, embedded and decodable.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("attention gate γ"), "{md}");
    assert!(md.contains("report/attention_"), "{md}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.matches("data:image/png;base64,").count() >= 3);

    // nnU-Net: label-to-image variants become extra training cases; nibabel finds the layout
    // sound.
    let dataset = run_dir.join("export/nnunet/Dataset502_GanTiny");
    let r: Value =
        serde_json::from_str(&common::run_python("nnunet_layout.py", &[&dataset])).unwrap();
    assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    medsynth::pipeline::check_layout(&dataset).unwrap();

    let kinds = provenance_is_complete(&run_dir);
    for k in [
        "checkpoint",
        "train-log",
        "synthetic-volume",
        "report",
        "metrics",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }

    // A second run on the same data, seed and split shows this run's model beside its own
    // (`evaluate.compare`); one naming a folder without metrics stops with a clear error.
    let second = LABEL_TO_IMAGE
        .replace("name = \"gan\"", "name = \"gan2\"")
        .replace("epochs = 2", "epochs = 1")
        .replace(
            "protocol = \"brasyn\"",
            "protocol = \"brasyn\"\ncompare = [\"runs/gan\"]",
        );
    let file2 = root.path().join("second.toml");
    std::fs::write(&file2, &second).unwrap();
    let out2 = common::run_pipeline(root.path(), &file2);
    common::assert_success(&out2);
    assert!(
        common::stdout(&out2).contains("sagan [gan]"),
        "{}",
        common::stdout(&out2)
    );
    let md2 = std::fs::read_to_string(root.path().join("runs/gan2/report.md")).unwrap();
    assert!(md2.contains("`sagan [gan]`"), "{md2}");
    let own =
        medsynth::dataset::read_parquet(&root.path().join("runs/gan2/metrics.parquet")).unwrap();
    assert_eq!(
        own.height(),
        df.height(),
        "metrics.parquet keeps only the run's own rows"
    );
    let missing = root.path().join("missing.toml");
    std::fs::write(
        &missing,
        second
            .replace("name = \"gan2\"", "name = \"gan3\"")
            .replace("runs/gan\"]", "runs/nowhere\"]"),
    )
    .unwrap();
    let out3 = common::run_pipeline(root.path(), &missing);
    assert!(!out3.status.success());
    assert!(
        common::stderr(&out3).contains("\"runs/nowhere\", which has no metrics.parquet"),
        "{}",
        common::stderr(&out3)
    );

    // A re-run resumes: nothing is trained or synthesized again.
    let before = std::fs::read(&v0).unwrap();
    let log_before = std::fs::read(run_dir.join("train_log.parquet")).unwrap();
    let again = common::run_pipeline(root.path(), &file);
    common::assert_success(&again);
    assert_eq!(std::fs::read(&v0).unwrap(), before);
    assert_eq!(
        std::fs::read(run_dir.join("train_log.parquet")).unwrap(),
        log_before
    );
}

const GENERATION: &str = r#"
[pipeline]
name = "gen"
seed = 6

[input]
format = "phantom"
phantom = { subjects = 3, shape = [40, 44, 36], spacing_mm = 5.0 }

[preprocess]
size = [16, 16]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.67, val = 0.0, test = 0.33 }

[model]
kind = "sagan"
task = "generation"
target = "flair"
unet = { base_channels = 8 }
gan = { z_dim = 16, classes = 3, attention_resolution = 8 }

[train]
epochs = 1
batch_size = 8

[synthesize]
split = "test"
variants = 2
truncation = 1.0

[output]
formats = ["nifti"]
"#;

#[test]
fn class_conditional_generation_records_the_truncation_and_rebuilds_volumes() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("pipeline.toml");
    std::fs::write(&file, GENERATION).unwrap();
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let run_dir = root.path().join("runs/gen");
    let table = medsynth::provenance::read(&run_dir.join("provenance.parquet")).unwrap();
    let volumes: Vec<_> = table
        .iter()
        .filter(|r| r.kind == "synthetic-volume")
        .collect();
    assert_eq!(volumes.len(), 2, "one test subject, two variants");
    for row in &volumes {
        assert_eq!(row.sampler, "gan z~N(0,I) truncation=1");
    }
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::fs::read_dir(run_dir.join("checkpoints"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.join("state.json").is_file())
                .unwrap()
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(state["extra"]["gan"]["classes"], 3);
    assert_eq!(state["extra"]["gan"]["arch"], "noise");
    let subject = volumes[0].artifact.split('/').nth(2).unwrap().to_owned();
    let fake = run_dir.join(format!("synth/variant-0/{subject}/flair.nii.gz"));
    let real = run_dir.join(format!("phantom/{subject}/flair.nii.gz"));
    let g: Value =
        serde_json::from_str(&common::run_python("same_grid.py", &[&fake, &real])).unwrap();
    assert!(
        g["affine_equal"].as_bool().unwrap()
            && g["shape_a"] == g["shape_b"]
            && g["finite"].as_bool().unwrap(),
        "{g}"
    );
    provenance_is_complete(&run_dir);
}
