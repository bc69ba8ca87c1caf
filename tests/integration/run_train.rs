//! `medsynth run` through training and synthesis on generated phantoms: checkpoints, the
//! training log and the synthesized slices (a slice store per variant) are written and listed
//! in provenance with their digests (checked by pyarrow); a re-run resumes instead of training
//! or sampling again and gives the same files; variants differ by their recorded seeds.

use crate::common;

use std::path::Path;

use medsynth::dataset::SliceSet;
use serde_json::Value;

/// The pipeline file of this test.
fn pipeline() -> String {
    common::Pipeline::tiny("tiny")
        .set("pipeline.seed", "5")
        .set("model.inputs", r#"["t1", "flair"]"#)
        .set("model.attention", r#"{ kind = "tmsa", resolutions = [16], heads = 2, window = 4 }"#)
        .set("model.diffusion", r#"{ schedule = "cosine", timesteps = 100 }"#)
        .set("train.batch_size", "8")
        .set("output", r#"{ formats = ["nifti", "dicom", "png"], attention_maps = true }"#)
        .set("synthesize", r#"{ split = "test", sampler = { kind = "ddim", steps = 4 }, guidance = { sag = 0.5, cfg = 1.5 }, variants = 2, batch_size = 8 }"#)
        .set("evaluate", r#"{ metrics = ["ssim", "psnr", "mae", "fid"], protocol = "brasyn" }"#)
        .text()
}

fn digests(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn training_and_synthesis_write_checkpoints_and_synthetic_slices_and_resume() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("pipeline.toml");
    std::fs::write(&file, pipeline()).unwrap();
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let run_dir = root.path().join("runs/tiny");
    let stdout = common::stdout(&out);
    assert!(
        stdout.contains("checkpoint") && stdout.contains("synthesized"),
        "{stdout}"
    );

    // The checkpoint and the log.
    let checkpoints: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    for part in ["model.bpk", "ema.bpk", "optimizer.bpk", "state.json"] {
        assert!(checkpoints[0].join(part).is_file(), "{part}");
    }
    let log = medsynth::train::read_log(&run_dir.join("train_log.parquet")).unwrap();
    assert!(!log.is_empty() && log.iter().all(|r| r.loss.is_finite()));

    // The synthesized slices: one store per variant, the test split's rows, only the target.
    let store = std::fs::read_dir(run_dir.join("slices"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("manifest.parquet").is_file())
        .unwrap();
    let test = SliceSet::load(&store, Some("test")).unwrap();
    let v0 = SliceSet::load(&run_dir.join("synth/slices/variant-0"), None).unwrap();
    let v1 = SliceSet::load(&run_dir.join("synth/slices/variant-1"), None).unwrap();
    assert_eq!(v0.channels, ["t2"]);
    assert_eq!(v0.len(), test.len());
    for (a, b) in v0.rows.iter().zip(&test.rows) {
        assert_eq!(
            (&a.subject, a.slice_index, &a.record),
            (&b.subject, b.slice_index, &b.record)
        );
    }
    // DDIM ends on the clipped x̂0, so values lie in the normalization range.
    let (d0, d1) = (v0.to_array().unwrap(), v1.to_array().unwrap());
    assert!(d0.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
    assert_ne!(d0, d1, "variants use different seeds");

    // Provenance lists every file with its digest (checked by pyarrow + hashlib).
    let r: Value =
        serde_json::from_str(&common::run_python("run_reference.py", &[&run_dir])).unwrap();
    let artifacts = r["artifacts"].as_array().unwrap();
    for a in artifacts {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    let kinds: Vec<&str> = artifacts
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for k in [
        "checkpoint",
        "train-log",
        "synthetic-slices",
        "synthetic-manifest",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let table = medsynth::provenance::read(&run_dir.join("provenance.parquet")).unwrap();
    let synthetic: Vec<_> = table
        .iter()
        .filter(|r| r.kind == "synthetic-slices")
        .collect();
    assert_eq!(
        synthetic.len(),
        2 * test
            .rows
            .iter()
            .map(|r| &r.subject)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    for row in &synthetic {
        assert_eq!(row.sampler, "ddim steps=4 eta=0");
        assert!(row.guidance.contains("sag=0.5") && row.guidance.contains("cfg=1.5"));
        assert_eq!(row.checkpoint_sha256.len(), 64);
        assert_ne!(row.seed, 5, "each subject-variant records its own seed");
    }

    // Each test subject's synthetic T2 lies on its source's grid: nibabel reads exactly the
    // source affine and shape; the DICOM series beside it is listed file by file.
    for subject in test
        .rows
        .iter()
        .map(|r| r.subject.as_str())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let fake = run_dir.join(format!("synth/variant-0/{subject}/t2.nii.gz"));
        let real = run_dir.join(format!("phantom/{subject}/t2.nii.gz"));
        // Each variant carries the subject's label, on the same grid.
        for v in 0..2 {
            let label = run_dir.join(format!("synth/variant-{v}/{subject}/label.nii.gz"));
            let seg = run_dir.join(format!("phantom/{subject}/seg.nii.gz"));
            let g: Value =
                serde_json::from_str(&common::run_python("same_grid.py", &[&label, &seg])).unwrap();
            assert!(
                g["affine_equal"].as_bool().unwrap() && g["shape_a"] == g["shape_b"],
                "{g}"
            );
        }
        let g: Value =
            serde_json::from_str(&common::run_python("same_grid.py", &[&fake, &real])).unwrap();
        assert_eq!(g["shape_a"], g["shape_b"], "{g}");
        assert!(
            g["affine_equal"].as_bool().unwrap() && g["finite"].as_bool().unwrap(),
            "{g}"
        );
        let series = artifacts
            .iter()
            .filter(|a| {
                a["artifact"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("synth/variant-0/{subject}/t2/"))
            })
            .count();
        assert_eq!(
            series,
            g["shape_a"][2].as_u64().unwrap() as usize,
            "one DICOM file per slice"
        );
    }

    // metrics.parquet: the model and both baselines, every metric, for each test subject.
    let path = run_dir.join("metrics.parquet");
    let df = medsynth::dataset::read_parquet(&path).unwrap();
    let methods = medsynth::dataset::text_column(&df, &path, "method").unwrap();
    let metrics = medsynth::dataset::text_column(&df, &path, "metric").unwrap();
    let regions = medsynth::dataset::text_column(&df, &path, "region").unwrap();
    for m in ["diffusion", "baseline-histogram", "baseline-regression"] {
        for metric in ["ssim", "psnr", "mae"] {
            assert!(
                methods
                    .iter()
                    .zip(&metrics)
                    .any(|(a, b)| a == m && b == metric),
                "{m} {metric}"
            );
        }
    }
    assert!(regions.iter().any(|r| r == "healthy") && regions.iter().all(|r| !r.is_empty()));
    assert!(kinds.contains(&"metrics"));
    assert!(stdout.contains("mean ± sd"), "{stdout}");
    // Without Inception weights FID is reported as not computed, never as a number.
    assert!(
        stdout.contains("fid: not computed: no Inception weights"),
        "{stdout}"
    );
    assert!(!metrics.iter().any(|m| m == "fid"));

    // The report: markdown with its pictures beside it, and one HTML file with them embedded.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(stdout.contains("report.html"), "{stdout}");
    let linked: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("![")?.split("](").nth(1)?.strip_suffix(')'))
        .collect();
    for want in ["training_curves.png", "samples_", "attention_"] {
        assert!(
            linked.iter().any(|l| l.contains(want)),
            "{want} not in {linked:?}"
        );
    }
    assert_eq!(html.matches("data:image/png;base64,").count(), linked.len());
    // Synthesis wrote the attention maps the report draws: three slices per subject.
    let maps: Vec<std::path::PathBuf> = std::fs::read_dir(run_dir.join("synth/attention"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!maps.is_empty());
    for path in &maps {
        let (t, channels) = medsynth::dataset::read_shard(path).unwrap();
        assert_eq!(t.shape()[..2], [3, 1], "{}", path.display());
        assert_eq!(channels, ["attention"]);
        assert!(t.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    for section in [
        "Training",
        "Metrics",
        "Samples",
        "Attention",
        "baseline-regression",
    ] {
        assert!(md.contains(section) && html.contains(section), "{section}");
    }
    for l in &linked {
        let bytes = std::fs::read(run_dir.join(l)).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let pixels = &buf[..info.buffer_size()];
        assert!(info.width > 64 && info.height > 64, "{l}");
        assert!(pixels.iter().any(|&b| b != pixels[0]), "{l} is blank");
    }
    assert!(kinds.contains(&"report") && kinds.contains(&"report-picture"));
    assert!(
        artifacts
            .iter()
            .any(|a| a["artifact"].as_str().unwrap().ends_with("/t2.png")),
        "the png format writes a mosaic per volume"
    );

    // A re-run trains and samples nothing new: the same checkpoint and the same slices.
    let before = digests(&run_dir.join("synth/slices/variant-0"));
    let ckpt = std::fs::read(checkpoints[0].join("ema.bpk")).unwrap();
    common::assert_success(&common::run_pipeline(root.path(), &file));
    assert_eq!(digests(&run_dir.join("synth/slices/variant-0")), before);
    assert_eq!(std::fs::read(checkpoints[0].join("ema.bpk")).unwrap(), ckpt);

    // Removing a shard makes the re-run sample exactly that subject again, identically.
    let (name, bytes) = before[0].clone();
    std::fs::remove_file(run_dir.join("synth/slices/variant-0").join(&name)).unwrap();
    common::assert_success(&common::run_pipeline(root.path(), &file));
    assert_eq!(
        std::fs::read(run_dir.join("synth/slices/variant-0").join(&name)).unwrap(),
        bytes,
        "one seed drives the result"
    );
}
