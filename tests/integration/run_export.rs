//! The nnU-Net v2 export after synthesis: a subject whose T2 is missing gets the synthesized
//! one as its channel, every case has every channel on one grid (checked by nibabel against
//! the layout rules), `dataset.json` names the synthetic channel, and provenance lists every
//! exported file with its digest and marks the synthetic one.

use crate::common;

use std::path::Path;

use serde_json::Value;

const PIPELINE: &str = r#"
[pipeline]
name = "export"
seed = 3

[input]
format = "nifti"
root = "data"
subject_glob = "sub-*"
modalities = { t1 = "{subject}/t1.nii.gz", flair = "{subject}/flair.nii.gz", t2 = "{subject}/t2.nii.gz" }
label = "{subject}/seg.nii.gz"

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.5, val = 0.25, test = 0.25 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "flair"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { schedule = "cosine", timesteps = 50 }

[train]
epochs = 1
batch_size = 8
checkpoint_every = 1000

[synthesize]
split = "all"
sampler = { kind = "ddim", steps = 3 }

[output]
formats = ["nifti", "nnunet"]
nnunet = { id = 501, name = "Tiny" }
"#;

fn check(dir: &Path) -> Value {
    serde_json::from_str(&common::run_python("nnunet_layout.py", &[dir])).unwrap()
}

#[test]
fn the_nnunet_export_fills_a_missing_channel_with_the_synthetic_one() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let o = common::medsynth(&[
        "phantom",
        "--subjects",
        "4",
        "--shape",
        "40,44,36",
        "--spacing",
        "5",
        "--seed",
        "2",
        "--tumour-fraction",
        "1",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    std::fs::remove_file(data.join("sub-002/t2.nii.gz")).unwrap();
    let file = root.path().join("pipeline.toml");
    std::fs::write(&file, PIPELINE).unwrap();
    let o = common::run_pipeline(root.path(), &file);
    common::assert_success(&o);
    let run_dir = root.path().join("runs/export");
    let dataset = run_dir.join("export/nnunet/Dataset501_Tiny");
    assert!(common::stdout(&o).contains("Dataset501_Tiny"));

    let r = check(&dataset);
    assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    assert_eq!(
        r["channel_names"],
        serde_json::json!({"0": "flair", "1": "t1", "2": "t2"})
    );
    let cases = r["training"].as_array().unwrap().len() + r["test"].as_array().unwrap().len();
    assert_eq!(cases, 4, "{r}");
    assert_eq!(
        r["synthetic"],
        serde_json::json!({"sub-002": ["t2"]}),
        "{r}"
    );
    medsynth::pipeline::check_layout(&dataset).unwrap();

    // Provenance: every exported file with its digest; the synthetic channel is marked and
    // traced to the synthesized volume, its seed and checkpoint.
    let p: Value =
        serde_json::from_str(&common::run_python("run_reference.py", &[&run_dir])).unwrap();
    for a in p["artifacts"].as_array().unwrap() {
        assert!(
            a["exists"].as_bool().unwrap() && a["sha_ok"].as_bool().unwrap(),
            "{a}"
        );
    }
    let table = medsynth::provenance::read(&run_dir.join("provenance.parquet")).unwrap();
    let exported: Vec<_> = table
        .iter()
        .filter(|r| r.artifact.starts_with("export/nnunet/Dataset501_Tiny/"))
        .collect();
    let images = exported
        .iter()
        .filter(|r| r.kind.starts_with("nnunet-image"))
        .count();
    assert_eq!(images, 3 * cases);
    let synthetic: Vec<_> = exported
        .iter()
        .filter(|r| r.kind == "nnunet-image-synthetic")
        .collect();
    assert_eq!(synthetic.len(), 1, "{exported:?}");
    let s = synthetic[0];
    assert!(
        s.artifact.ends_with("/sub-002_0002.nii.gz"),
        "{}",
        s.artifact
    );
    assert_eq!(s.sources, "synth/variant-0/sub-002/t2.nii.gz");
    assert_eq!(s.checkpoint_sha256.len(), 64);
    assert!(exported.iter().any(|r| r.kind == "nnunet-dataset"));

    // A broken copy fails the layout check, naming what is wrong.
    std::fs::remove_file(
        dataset
            .join(
                if r["training"]
                    .as_array()
                    .unwrap()
                    .contains(&"sub-001".into())
                {
                    "imagesTr"
                } else {
                    "imagesTs"
                },
            )
            .join("sub-001_0001.nii.gz"),
    )
    .unwrap();
    let problems = medsynth::pipeline::check_layout(&dataset).unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("sub-001")),
        "{problems:?}"
    );
    assert_ne!(check(&dataset)["problems"], serde_json::json!([]));
}

/// The clinical case: a cohort without labels, one subject lacking its T2. The export is for
/// inference: every subject in imagesTs/ with every channel (the missing T2 synthesized),
/// no training case, and dataset.json saying so; nnU-Net's layout rules hold.
#[test]
fn an_unlabelled_cohort_exports_for_nnunet_inference() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let o = common::medsynth(&[
        "phantom",
        "--subjects",
        "4",
        "--shape",
        "40,44,36",
        "--spacing",
        "5",
        "--seed",
        "4",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    std::fs::remove_file(data.join("sub-003/t2.nii.gz")).unwrap();
    let file = root.path().join("pipeline.toml");
    let text = PIPELINE
        .replace("label = \"{subject}/seg.nii.gz\"\n", "")
        .replace("name = \"export\"", "name = \"inference\"");
    assert!(!text.contains("seg.nii.gz"));
    std::fs::write(&file, text).unwrap();
    let o = common::run_pipeline(root.path(), &file);
    common::assert_success(&o);
    let dataset = root
        .path()
        .join("runs/inference/export/nnunet/Dataset501_Tiny");
    let r = check(&dataset);
    assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    assert_eq!(r["training"], serde_json::json!([]), "{r}");
    assert_eq!(
        r["test"],
        serde_json::json!(["sub-001", "sub-002", "sub-003", "sub-004"]),
        "{r}"
    );
    assert_eq!(
        r["synthetic"],
        serde_json::json!({"sub-003": ["t2"]}),
        "{r}"
    );
    medsynth::pipeline::check_layout(&dataset).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dataset.join("dataset.json")).unwrap())
            .unwrap();
    assert_eq!(json["numTraining"], 0);
    assert_eq!(json["medsynth_inference_only"], true);
    assert_eq!(json["labels"], serde_json::json!({"background": 0}));
    for case in ["sub-001", "sub-002", "sub-003", "sub-004"] {
        for k in 0..3 {
            assert!(
                dataset
                    .join(format!("imagesTs/{case}_{k:04}.nii.gz"))
                    .is_file(),
                "{case} channel {k}"
            );
        }
    }
}
