//! The command line: help with examples, completions, and `run` refusing what it cannot do.

use crate::common;

use common::{medsynth, stderr, stdout};

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "validate",
        "schema",
        "phantom",
        "run",
        "merge",
        "slurm",
        "inspect",
        "convert",
        "devices",
        "completions",
    ] {
        let out = medsynth(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        let help = stdout(&out);
        assert!(
            help.contains("Example"),
            "{cmd} --help has no example:\n{help}"
        );
        assert!(
            help.contains(&format!("medsynth {cmd}")),
            "{cmd} --help example does not use {cmd}"
        );
    }
}

#[test]
fn completions_are_generated() {
    let out = medsynth(&["completions", "bash"]);
    assert!(out.status.success());
    let script = stdout(&out);
    assert!(script.contains("_medsynth") && script.contains("phantom"));
}

#[test]
fn run_rejects_an_invalid_file_with_exit_1() {
    let out = medsynth(&["run", "fixtures/invalid/06-split-sum.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("preprocess.split"));
}

#[test]
fn bad_phantom_arguments_are_refused() {
    for (args, needle) in [
        (vec!["--shape", "64,64"], "expected three sizes"),
        (vec!["--shape", "64,8,64"], "8 voxels is out of range"),
        (vec!["--spacing=-1"], "out of range"),
        (vec!["--tumour-fraction", "1.5"], "expected 0 to 1"),
        (vec!["--spacing", "1,2"], "expected one or three"),
        (
            vec!["--orientation", "RAR"],
            "\"RAR\" is not an orientation code",
        ),
        (vec!["--tilt", "10,50,0"], "50 degrees is out of range"),
        (vec!["--tilt", "10"], "expected three angles"),
    ] {
        let mut all = vec!["phantom", "--out", "/nonexistent/never-written"];
        all.extend(args);
        let out = medsynth(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(stderr(&out).contains(needle), "{all:?}: {}", stderr(&out));
    }
}

#[test]
fn inspect_and_convert_between_nifti_and_dicom() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).to_str().unwrap().to_owned();
    let out = medsynth(&[
        "-q",
        "phantom",
        "--subjects",
        "1",
        "--shape",
        "32,36,20",
        "--spacing",
        "5",
        "--format",
        "dicom",
        "--out",
        &p("ph"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A folder of four series: inspect lists them all; convert asks which one.
    let out = medsynth(&["inspect", "--json", &p("ph/sub-001")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert_eq!(all[0]["orientation"], "RAS");
    assert_eq!(all[0]["shape"], serde_json::json!([32, 36, 20]));
    let out = medsynth(&["-q", "convert", &p("ph/sub-001"), &p("x.nii.gz")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds 4 series; choose one with --series UID"),
        "{}",
        stderr(&out)
    );
    // One series: DICOM -> NIfTI -> DICOM -> NIfTI keeps the voxels.
    let out = medsynth(&["-q", "convert", &p("ph/sub-001/t2"), &p("t2.nii.gz")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = medsynth(&["-q", "convert", &p("t2.nii.gz"), &p("t2-dicom")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = medsynth(&["-q", "convert", &p("t2-dicom"), &p("t2-again.nii")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = medsynth::volume::nifti::read(&d.join("t2.nii.gz")).unwrap();
    let b = medsynth::volume::nifti::read(&d.join("t2-again.nii")).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(a.geometry, b.geometry);
    let text = stdout(&medsynth(&["inspect", &p("t2.nii.gz")]));
    assert!(
        text.contains("format:      nifti1 (int16)")
            && text.contains("orientation: RAS")
            && text.contains("spacing:     5.0000 x 5.0000 x 5.0000 mm"),
        "{text}"
    );
    // Errors name the file.
    let out = medsynth(&["inspect", &p("missing.nii.gz")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.nii.gz"), "{}", stderr(&out));
}

/// Phantoms stored as real data is (another axis order, oblique, anisotropic): inspect shows
/// the storage order, and warns, naming both, when a file's sform and qform disagree.
#[test]
fn inspect_shows_the_storage_order_and_warns_when_sform_and_qform_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).to_str().unwrap().to_owned();
    let out = medsynth(&[
        "-q",
        "phantom",
        "--subjects",
        "1",
        "--shape",
        "32,36,20",
        "--spacing",
        "4,4,6",
        "--orientation",
        "PIR",
        "--tilt",
        "20,0,-10",
        "--out",
        &p("ph"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = medsynth(&["inspect", "--json", &p("ph/sub-001/t1.nii.gz")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[0]["orientation"], "PIR");
    // Stored P, I, R: the A, S and R axes of the 32 x 36 x 20 acquisition grid.
    assert_eq!(v[0]["shape"], serde_json::json!([36, 20, 32]));
    let spacing: Vec<f64> = serde_json::from_value(v[0]["spacing_mm"].clone()).unwrap();
    for (got, want) in spacing.iter().zip([4.0, 6.0, 4.0]) {
        assert!((got - want).abs() < 1e-5, "{spacing:?}");
    }
    assert_eq!(v[0]["notes"], serde_json::json!([]), "written files agree");
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));

    // Move the sform 5 mm to the right and leave the qform: a file one tool edited.
    let out = medsynth(&["-q", "convert", &p("ph/sub-001/t1.nii.gz"), &p("t1.nii")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bytes = std::fs::read(d.join("t1.nii")).unwrap();
    let at = 280 + 3 * 4; // srow_x[3], little-endian float32
    let x = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + 5.0;
    bytes[at..at + 4].copy_from_slice(&x.to_le_bytes());
    std::fs::write(d.join("t1.nii"), bytes).unwrap();
    let out = medsynth(&["inspect", &p("t1.nii")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "warning:     the sform (PIR) and the qform (PIR) disagree by up to 5.000 mm"
        ),
        "{text}"
    );
    assert!(
        stderr(&out).contains("disagree"),
        "logged too: {}",
        stderr(&out)
    );
}

#[test]
fn eval_scores_a_volume_and_refuses_mismatched_grids() {
    let t1 = "fixtures/nifti/sub-001/t1.nii.gz";
    let flair = "fixtures/nifti/sub-001/flair.nii.gz";
    let seg = "fixtures/nifti/sub-001/seg.nii.gz";
    // A volume against itself: SSIM 1 and no error, in every BraSyn region it has.
    let out = medsynth(&[
        "eval",
        "--real",
        t1,
        "--fake",
        t1,
        "--mask",
        seg,
        "--protocol",
        "brasyn",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let ssim: Vec<f64> = rows
        .iter()
        .filter(|r| r["metric"] == "ssim")
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert!(
        !ssim.is_empty() && ssim.iter().all(|v| (v - 1.0).abs() < 1e-9),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r["region"] == "healthy"));
    let mae = rows.iter().find(|r| r["metric"] == "mae").unwrap();
    assert_eq!(mae["value"].as_f64().unwrap(), 0.0);
    // Another contrast scores below 1.
    let out = medsynth(&["eval", "--real", t1, "--fake", flair, "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(rows[0]["value"].as_f64().unwrap() < 0.95);
    // A volume of another shape is refused with both names.
    let dir = tempfile::tempdir().unwrap();
    let mut v = medsynth::volume::read_volumes(&common::repo().join(t1))
        .unwrap()
        .remove(0);
    v.data = v.data.slice(ndarray::s![..35, .., .., ..]).to_owned();
    v.geometry.shape[0] = 35;
    let cropped = dir.path().join("cropped.nii.gz");
    medsynth::volume::write_nifti(&cropped, &v, "test").unwrap();
    let other = cropped.to_str().unwrap();
    let out = medsynth(&["eval", "--real", t1, "--fake", other]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cropped.nii.gz") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn shard_flags_are_checked() {
    for (args, code) in [
        (vec!["run", "pipelines/demo.toml", "--shard", "3/3"], 2),
        (vec!["run", "pipelines/demo.toml", "--shard", "x"], 2),
        (
            vec![
                "run",
                "pipelines/demo.toml",
                "--shard",
                "0/3",
                "--stage",
                "train",
            ],
            1,
        ),
        (vec!["run", "pipelines/demo.toml", "--stage", "apply"], 1),
        (vec!["slurm", "pipelines/demo.toml", "--shards", "0"], 1),
    ] {
        let out = medsynth(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("shard") || stderr(&out).contains("K/N"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// The Kubernetes manifest in the README: an Indexed Job whose completion index is the shard
/// K, of as many shards as completions.
#[test]
fn the_readme_kubernetes_manifest_is_an_indexed_job_of_shards() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let block = readme
        .split("<!-- kubernetes-indexed-job -->")
        .nth(1)
        .and_then(|rest| rest.split("```yaml").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README has the manifest after its marker");
    let field = |key: &str| -> String {
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} in the manifest"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("apiVersion"), "batch/v1");
    assert_eq!(field("kind"), "Job");
    assert_eq!(field("completionMode"), "Indexed");
    assert_eq!(field("restartPolicy"), "Never");
    let n = field("completions");
    assert!(n.parse::<usize>().unwrap() > 0);
    let command = block
        .lines()
        .find(|l| l.contains("exec medsynth"))
        .expect("a medsynth command");
    assert!(
        command.contains(&format!("--shard \"${{JOB_COMPLETION_INDEX}}/{n}\"")),
        "the shard is not JOB_COMPLETION_INDEX/{n}: {command}"
    );
    // The flags are the ones medsynth takes.
    assert!(command.contains("--stage prepare") && command.contains(" run --root "));
    for line in block.lines() {
        assert!(!line.contains('\t'), "a tab in the YAML: {line:?}");
    }
}
