//! A hospital export as a pipeline meets it: a flat tree written by pydicom's FileSet (a
//! DICOMDIR and PT*/ST*/SE*/IM* files) with three patients, a second later study, a
//! localizer and a derived series, and names, IDs, birth dates, institution, accession
//! numbers and free text in every file. Grouped by patient, every subject is named by its
//! keyed pseudonym, `prefer = "latest"` takes the later T1, the map to real IDs is written
//! only outside the run folder, and no identifying string is found anywhere in the run
//! folder (parquet, NIfTI, DICOM, report, logs) or in what the run printed.

use crate::common;

use std::path::Path;

use serde_json::Value;

const PIPELINE: &str = r#"
[pipeline]
name = "flat"
seed = 5

[input]
format = "dicom"
root = "export"
subjects = "patient"
prefer = "latest"
series = { t1 = { modality = "MR", description = "*phantom t1" }, t2 = { modality = "MR", description = "*phantom t2" } }
pseudonym_key_file = "secret/key.txt"
pseudonym_map = "secret/map.csv"

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.34, val = 0.33, test = 0.33 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1"]
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

[evaluate]
metrics = ["ssim", "psnr"]

[output]
formats = ["nifti", "dicom", "nnunet"]
nnunet = { id = 502, name = "Flat" }
"#;

#[test]
fn a_flat_export_grouped_by_patient_runs_under_pseudonyms_and_leaks_nothing() {
    let root = tempfile::tempdir().unwrap();
    let phantom = root.path().join("phantom");
    common::assert_success(&common::medsynth(&[
        "phantom",
        "--subjects",
        "3",
        "--shape",
        "40,44,36",
        "--spacing",
        "5",
        "--format",
        "dicom",
        "--orientation",
        "LPS",
        "--out",
        phantom.to_str().unwrap(),
    ]));
    let export = root.path().join("export");
    let made: Value = serde_json::from_str(&common::run_python(
        "make_flat_export.py",
        &[&phantom, &export],
    ))
    .unwrap();
    std::fs::remove_dir_all(&phantom).unwrap();
    assert!(export.join("DICOMDIR").is_file());
    std::fs::create_dir_all(root.path().join("secret")).unwrap();
    std::fs::write(
        root.path().join("secret/key.txt"),
        "a test key of the flat export, 32b\n",
    )
    .unwrap();
    let file = root.path().join("flat.toml");
    std::fs::write(&file, PIPELINE).unwrap();
    let o = common::run_pipeline(root.path(), &file);
    common::assert_success(&o);
    let run_dir = root.path().join("runs/flat");

    // Subjects are pseudonyms; the map (outside the run) links them to the real IDs.
    let map = std::fs::read_to_string(root.path().join("secret/map.csv")).unwrap();
    let lines: Vec<&str> = map.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{map}");
    let mut subjects = Vec::new();
    for line in &lines {
        let (real, id) = line.rsplit_once(',').unwrap();
        assert!(real.starts_with("\"MRN"), "{line}");
        assert!(id.starts_with("sub-") && id.len() == 20, "{line}");
        assert!(run_dir.join("synth/variant-0").join(id).is_dir(), "{id}");
        subjects.push(id.to_owned());
    }
    // Read through the DICOMDIR; the later of patient 1's two T1 series was used (its keyed
    // UID is in provenance); the localizer and the derived T2 matched no pattern.
    let stderr = common::stderr(&o);
    assert!(
        stderr.contains("reading the files a DICOMDIR names"),
        "{stderr}"
    );
    let keys = medsynth::pseudonym::Pseudonymizer::load(Some(&root.path().join("secret/key.txt")))
        .unwrap();
    let latest = keys.uid(made["patients"]["sub-001"]["latest_t1"].as_str().unwrap());
    let table = medsynth::provenance::read(&run_dir.join("provenance.parquet")).unwrap();
    assert!(
        table.iter().any(|r| r.source_series_uids.contains(&latest)),
        "the later T1 {latest} is not a source"
    );
    for r in &table {
        for uid in r.source_series_uids.split(';').filter(|u| !u.is_empty()) {
            assert!(uid.starts_with("2.25."), "{uid} is not a keyed UID");
        }
    }
    // Without a rule, two matching T1 series are refused, named by their keyed UIDs.
    std::fs::write(
        &file,
        PIPELINE
            .replace("prefer = \"latest\"", "prefer = \"error\"")
            .replace("name = \"flat\"", "name = \"flat-error\""),
    )
    .unwrap();
    let refused = common::run_pipeline(root.path(), &file);
    assert!(!refused.status.success());
    let text = common::stderr(&refused);
    assert!(
        text.contains("input.series.t1 matches 2 series") && text.contains("input.prefer"),
        "{text}"
    );

    // No identifying string anywhere in the run folder or in what the run printed.
    let phi: Vec<String> = made["phi"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(phi.len() >= 15, "{phi:?}");
    let phi_file = root.path().join("secret/phi.json");
    std::fs::write(&phi_file, serde_json::to_string(&phi).unwrap()).unwrap();
    let found: Value =
        serde_json::from_str(&common::run_python("phi_search.py", &[&run_dir, &phi_file])).unwrap();
    assert!(found["searched"].as_u64().unwrap() > 50, "{found}");
    assert_eq!(found["hits"], serde_json::json!([]), "{found}");
    let printed = format!("{}{stderr}", common::stdout(&o));
    for s in &phi {
        assert!(
            !printed.to_lowercase().contains(&s.to_lowercase()),
            "{s} printed"
        );
    }
    // The search finds what is there: the input export is full of it.
    let control: Value =
        serde_json::from_str(&common::run_python("phi_search.py", &[&export, &phi_file])).unwrap();
    assert!(control["hits"].as_array().unwrap().len() > 100, "{control}");

    // The synthetic series carry the pseudonym and pass dciodvfy; the inference export holds
    // every subject.
    // Each files into its source's study and frame of reference, under their keyed UIDs.
    let real: std::collections::BTreeMap<String, String> = lines
        .iter()
        .map(|l| {
            let (r, id) = l.rsplit_once(',').unwrap();
            (id.to_owned(), r.trim_matches('"').to_owned())
        })
        .collect();
    for id in &subjects {
        let files = common::files_in(&run_dir.join("synth/variant-0").join(id).join("t2"));
        let obj = ::dicom::object::open_file(&files[0]).unwrap();
        let text = |tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_owned()
        };
        use ::dicom::dictionary_std::tags;
        assert_eq!(&text(tags::PATIENT_ID), id);
        let patient = made["patients"]
            .as_object()
            .unwrap()
            .values()
            .find(|p| p["patient_id"] == real[id].as_str())
            .unwrap();
        assert_eq!(
            text(tags::STUDY_INSTANCE_UID),
            keys.uid(patient["study"].as_str().unwrap())
        );
        assert_eq!(
            text(tags::FRAME_OF_REFERENCE_UID),
            keys.uid(patient["frame_of_reference"].as_str().unwrap())
        );
        let errors = common::dciodvfy_errors(&files[..1]);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
    let dataset = run_dir.join("export/nnunet/Dataset502_Flat");
    medsynth::pipeline::check_layout(&dataset).unwrap();
    assert!(Path::new(&dataset.join("dataset.json")).is_file());
}
