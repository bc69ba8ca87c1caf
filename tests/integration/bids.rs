//! BIDS in and out. A BIDS dataset made of phantoms (oblique, anisotropic, stored LAS) with
//! sessions, `ce` and `acq` entities, two runs of one T1w and labels under `derivatives/`
//! passes the BIDS validator; a pipeline reads it through entity patterns and writes its
//! synthesized images as a BIDS derivatives dataset, which passes the validator too, whose
//! images are the run's volumes on the sources' grid, and whose sidecars name their sources
//! and carry the provenance digest.

use crate::common;

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

const PIPELINE: &str = r#"
[pipeline]
name = "bids"
seed = 3

[input]
format = "bids"
root = "dataset"
modalities = { t1 = "T1w", t1ce = "ce-gd_T1w", t2 = "acq-tse_T2w", flair = "FLAIR" }
label = "desc-tumor_dseg"
prefer = "latest"

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.5, val = 0, test = 0.5 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "t1ce", "flair"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { timesteps = 50 }

[train]
epochs = 1
batch_size = 4
checkpoint_every = 1000

[synthesize]
split = "all"
sampler = { kind = "ddim", steps = 2 }

[output]
formats = ["bids"]
"#;

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn json(path: &Path, value: Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// The BIDS dataset: phantom 1 as sub-01 (with a second, `acq-fast` T2w the pattern must not
/// take), phantoms 2 and 3 as sessions pre and post of sub-02, phantom 4 as sub-03 whose
/// run-2 T1w is its own and whose run-1 T1w is phantom 1's.
fn dataset(phantom: &Path, root: &Path) {
    let places = [
        ("sub-001", "sub-01", None),
        ("sub-002", "sub-02", Some("pre")),
        ("sub-003", "sub-02", Some("post")),
        ("sub-004", "sub-03", None),
    ];
    for (from, sub, ses) in places {
        let (folder, prefix) = match ses {
            Some(s) => (format!("{sub}/ses-{s}"), format!("{sub}_ses-{s}")),
            None => (sub.to_owned(), sub.to_owned()),
        };
        let src = phantom.join(from);
        let anat = root.join(&folder).join("anat");
        let t1 = if sub == "sub-03" { "run-2_T1w" } else { "T1w" };
        for (m, name) in [
            ("t1", t1),
            ("t1ce", "ce-gd_T1w"),
            ("t2", "acq-tse_T2w"),
            ("flair", "FLAIR"),
        ] {
            copy(
                &src.join(format!("{m}.nii.gz")),
                &anat.join(format!("{prefix}_{name}.nii.gz")),
            );
        }
        copy(
            &src.join("seg.nii.gz"),
            &root
                .join("derivatives/manual")
                .join(&folder)
                .join("anat")
                .join(format!("{prefix}_desc-tumor_dseg.nii.gz")),
        );
    }
    copy(
        &phantom.join("sub-001/flair.nii.gz"),
        &root.join("sub-01/anat/sub-01_acq-fast_T2w.nii.gz"),
    );
    copy(
        &phantom.join("sub-001/t1.nii.gz"),
        &root.join("sub-03/anat/sub-03_run-1_T1w.nii.gz"),
    );
    json(
        &root.join("dataset_description.json"),
        serde_json::json!({
            "Name": "medsynth BIDS test", "BIDSVersion": "1.10.0", "DatasetType": "raw",
            "Authors": ["medsynth tests"],
        }),
    );
    std::fs::write(
        root.join("README.md"),
        "# medsynth BIDS test\n\nProcedural head phantoms laid out as BIDS.\n",
    )
    .unwrap();
    json(
        &root.join("derivatives/manual/dataset_description.json"),
        serde_json::json!({
            "Name": "tumour labels", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "medsynth phantom"}],
        }),
    );
}

/// The validator's errors and warnings on `dir`.
fn validate(dir: &Path) -> Value {
    serde_json::from_str(&common::run_python("bids_validate.py", &[dir])).unwrap()
}

fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_bids_dataset_is_read_by_entities_and_its_synthetic_images_come_back_as_valid_derivatives() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let phantom = root.join("phantom");
    common::assert_success(&common::medsynth(&[
        "phantom",
        "--subjects",
        "4",
        "--shape",
        "40,44,36",
        "--spacing",
        "4.5,4,6",
        "--orientation",
        "LAS",
        "--tilt=-10,6,0",
        "--out",
        phantom.to_str().unwrap(),
    ]));
    let input = root.join("dataset");
    dataset(&phantom, &input);
    let checked = validate(&input);
    assert_eq!(checked["errors"], serde_json::json!([]), "{checked}");
    assert!(checked["files"].as_u64().unwrap() >= 20, "{checked}");

    let file = root.join("bids.toml");
    std::fs::write(&file, PIPELINE).unwrap();
    let o = common::run_pipeline(root, &file);
    common::assert_success(&o);
    let run = root.join("runs/bids");

    // One subject per subject and session.
    let mut subjects: Vec<String> = std::fs::read_dir(run.join("synth/variant-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["sub-01", "sub-02_ses-post", "sub-02_ses-pre", "sub-03"]
    );
    // prefer = "latest" took sub-03's run-2 T1w; sub-01's acq-fast T2w matched nothing.
    let table = medsynth::provenance::read(&run.join("provenance.parquet")).unwrap();
    let sources: String = table.iter().map(|r| format!("{};", r.sources)).collect();
    assert!(sources.contains("sub-03_run-2_T1w.nii.gz"), "{sources}");
    assert!(
        !sources.contains("run-1_T1w") && !sources.contains("acq-fast"),
        "{sources}"
    );

    // The derivatives: the run's volumes under BIDS names, on the sources' grid.
    let out = run.join("export/bids");
    let description: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("dataset_description.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(description["DatasetType"], "derivative");
    assert_eq!(description["GeneratedBy"][0]["Name"], "medsynth");
    for (subject, folder, prefix) in [
        ("sub-01", "sub-01", "sub-01"),
        ("sub-02_ses-pre", "sub-02/ses-pre", "sub-02_ses-pre"),
        ("sub-02_ses-post", "sub-02/ses-post", "sub-02_ses-post"),
        ("sub-03", "sub-03", "sub-03"),
    ] {
        let anat = out.join(folder).join("anat");
        let image = anat.join(format!("{prefix}_acq-tse_desc-synth_T2w.nii.gz"));
        let synthesized = run.join("synth/variant-0").join(subject).join("t2.nii.gz");
        assert_eq!(sha(&image), sha(&synthesized), "{subject}");
        let source = input
            .join(folder)
            .join("anat")
            .join(format!("{prefix}_acq-tse_T2w.nii.gz"));
        let (a, b) = (
            medsynth::volume::nifti::read_header(&image).unwrap(),
            medsynth::volume::nifti::read_header(&source).unwrap(),
        );
        assert_eq!(a.grid(), b.grid(), "{subject}");
        let (fa, fb) = (a.best_affine().0, b.best_affine().0);
        for r in 0..3 {
            for c in 0..4 {
                assert!(
                    (fa.0[r][c] - fb.0[r][c]).abs() < 1e-4,
                    "{subject}: {fa:?} vs {fb:?}"
                );
            }
        }
        let sidecar: Value = serde_json::from_str(
            &std::fs::read_to_string(anat.join(format!("{prefix}_acq-tse_desc-synth_T2w.json")))
                .unwrap(),
        )
        .unwrap();
        let t1 = if subject == "sub-03" {
            "run-2_T1w"
        } else {
            "T1w"
        };
        let expected: Vec<String> = [t1, "ce-gd_T1w", "FLAIR"]
            .iter()
            .map(|n| format!("bids:raw:{folder}/anat/{prefix}_{n}.nii.gz"))
            .collect();
        assert_eq!(sidecar["Sources"], serde_json::json!(expected), "{subject}");
        assert_eq!(
            sidecar["MedsynthProvenance"]["sha256"],
            sha(&image),
            "{subject}"
        );
        let row = table
            .iter()
            .find(|r| r.artifact == format!("synth/variant-0/{subject}/t2.nii.gz"))
            .unwrap();
        assert_eq!(sidecar["MedsynthProvenance"]["sha256"], row.sha256.as_str());
        assert_eq!(
            sidecar["MedsynthProvenance"]["checkpoint_sha256"],
            row.checkpoint_sha256.as_str()
        );
    }
    let checked = validate(&out);
    assert_eq!(checked["errors"], serde_json::json!([]), "{checked}");
    // The validator does fail a derivative without what BIDS requires of it.
    let broken = root.join("broken");
    copy(
        &out.join("dataset_description.json"),
        &broken.join("dataset_description.json"),
    );
    copy(
        &out.join("sub-01/anat/sub-01_acq-tse_desc-synth_T2w.nii.gz"),
        &broken.join("sub-01/anat/sub-01_acq-tse_desc-synth_T2w.nii.gz"),
    );
    let refused = validate(&broken);
    assert!(
        refused["errors"]
            .to_string()
            .contains("SIDECAR_KEY_REQUIRED"),
        "{refused}"
    );
}
