//! `medsynth validate`: the shipped pipelines pass, and every kind of mistake in
//! fixtures/invalid gets its located message.

use crate::common;

use common::{medsynth, repo, stderr, stdout};

fn pipeline_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| format!("pipelines/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_pipeline_is_valid() {
    let files = pipeline_files();
    // One example per task: demo, translation, missing-modality, label-to-image,
    // unconditional generation, DICOM-to-NIfTI preprocessing.
    assert!(files.len() >= 6, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = medsynth(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in &files {
        assert!(
            stdout(&out).contains(&format!("{f}: ok")),
            "{f} not reported ok"
        );
    }
}

#[test]
fn shipped_pipelines_cover_every_task() {
    use medsynth::spec::{InputFormat, Task, load};
    let mut tasks = Vec::new();
    let mut formats = Vec::new();
    for f in pipeline_files() {
        let file = load(&repo().join(&f)).unwrap();
        formats.push(file.input.format);
        if let Some(m) = file.model {
            tasks.push(m.task);
        } else {
            assert!(file.train.is_none() && file.synthesize.is_none());
        }
    }
    for t in [
        Task::Translation,
        Task::MissingModality,
        Task::Generation,
        Task::LabelToImage,
    ] {
        assert!(tasks.contains(&t), "no pipeline for {t:?}");
    }
    for f in [
        InputFormat::Nifti,
        InputFormat::Dicom,
        InputFormat::Phantom,
        InputFormat::Dicomweb,
        InputFormat::Bids,
    ] {
        assert!(formats.contains(&f), "no pipeline reads {f:?}");
    }
}

/// Each file in fixtures/invalid starts with `# expect: <message>`; validating it must fail
/// with exit code 1 and print exactly that diagnostic.
#[test]
fn every_kind_of_mistake_gets_its_message() {
    let dir = repo().join("fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "need at least ten kinds of mistakes, have {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in files {
        let rel = format!(
            "fixtures/invalid/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{rel} lacks its '# expect: ' line"))
            .replace("{file}", &rel);
        let out = medsynth(&["validate", &rel]);
        let err = stderr(&out);
        if out.status.code() != Some(1) || !err.lines().any(|l| l == format!("error: {expect}")) {
            failures.push(format!(
                "{rel}: exit {:?}\n  expected: error: {expect}\n  got:      {}",
                out.status.code(),
                err.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_missing_file_is_an_error_not_a_validation_failure() {
    let out = medsynth(&["validate", "pipelines/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read pipeline file pipelines/does-not-exist.toml"));
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let text = r#"
[pipeline]
name = "two problems"

[input]
format = "phantom"

[preprocess]
split = { train = 0.5, val = 0.1, test = 0.1 }
"#;
    let err = medsynth::spec::parse(text, "x.toml".as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.toml:3:8: pipeline.name: \"two problems\" is not a valid run name"),
        "{err}"
    );
    assert!(
        err.contains("x.toml:9:9: preprocess.split: train + val + test = 0.7"),
        "{err}"
    );
}
