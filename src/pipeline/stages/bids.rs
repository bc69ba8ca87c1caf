//! The BIDS derivatives export (`output.formats` has `bids`): every synthesized NIfTI volume as
//! `export/bids/sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_<entities>_desc-synth_<suffix>.nii.gz`
//! with a JSON sidecar (Description, Sources as BIDS URIs, SkullStripped, and medsynth's
//! provenance: the file's digest, the checkpoint, sampler, guidance and seed), and
//! `dataset_description.json` with GeneratedBy. Written under a temporary name and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::bids::{Pattern, subject_label};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Subjects;
use crate::pipeline::stage::Stage;
use crate::provenance::now_rfc3339;
use crate::spec::{InputFormat, Task};

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Output, path, e.to_string())
}

/// BIDS's order of entities in a file name (those an anatomical image may carry).
const ORDER: [&str; 13] = [
    "task", "acq", "ce", "trc", "rec", "dir", "run", "echo", "flip", "inv", "mt", "part", "desc",
];

/// `sub-<label>[_ses-<label>]_<entities>_desc-<desc>_<suffix>` for `pattern`.
fn file_stem(sub: &str, ses: Option<&str>, pattern: &Pattern, desc: &str) -> String {
    let mut entities: Vec<(String, String)> = pattern.entities.clone();
    entities.retain(|(k, _)| k != "desc");
    entities.push(("desc".into(), desc.into()));
    entities.sort_by_key(|(k, _)| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len() - 1));
    let mut parts = vec![format!("sub-{sub}")];
    if let Some(s) = ses {
        parts.push(format!("ses-{s}"));
    }
    parts.extend(entities.iter().map(|(k, v)| format!("{k}-{v}")));
    parts.push(pattern.suffix.clone());
    parts.join("_")
}

/// The source dataset's root (as BIDS URIs name it: `bids:<name>:<path>`) and its name.
fn source_root(run: &Run) -> (PathBuf, &'static str) {
    let input = &run.plan.file.input;
    match input.format {
        InputFormat::Phantom => (run.run_dir().join("phantom"), "phantom"),
        InputFormat::Bids => (run.resolve(input.root.as_deref().unwrap_or(".")), "raw"),
        InputFormat::Dicomweb => (run.dicomweb_cache(), "input"),
        _ => (run.resolve(input.root.as_deref().unwrap_or(".")), "input"),
    }
}

/// A `file://` URI of an absolute path.
fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    format!("file://{}", abs.display())
}

/// Writes the derivatives of `run` and returns their folder.
pub fn run(run: &mut Run, subjects: &Subjects) -> Result<PathBuf, RunError> {
    let started = now_rfc3339();
    let file = run.plan.file.clone();
    let parent = run.dir().join("export");
    let dir = parent.join("bids");
    let tmp = parent.join(".bids.partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| failed(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| failed(&tmp, e))?;
    let (root, link) = source_root(run);
    let model = file.model.as_ref();
    // The sources of each subject's synthesized images: the inputs the model conditions on
    // (or the label it draws from), as BIDS URIs into the source dataset.
    let sources: BTreeMap<&str, Vec<String>> = subjects
        .usable
        .iter()
        .map(|s| {
            let mut paths: Vec<PathBuf> = Vec::new();
            if let Some(m) = model {
                if m.task.uses_inputs() {
                    paths.extend(
                        m.inputs
                            .iter()
                            .filter_map(|i| s.modalities.get(i))
                            .map(|src| src.path()),
                    );
                }
                if m.task == Task::LabelToImage {
                    paths.extend(s.label.clone());
                }
            }
            let uris = paths
                .iter()
                .map(|p| match p.strip_prefix(&root) {
                    Ok(rel) => format!("bids:{link}:{}", rel.to_string_lossy().replace('\\', "/")),
                    Err(_) => file_uri(p),
                })
                .collect();
            (s.id.as_str(), uris)
        })
        .collect();
    let skull_stripped = file.output.bids.as_ref().is_some_and(|b| b.skull_stripped);
    let rows: Vec<crate::provenance::ProvenanceRow> = run
        .provenance()
        .iter()
        .filter(|r| r.kind == "synthetic-volume" && r.artifact.ends_with(".nii.gz"))
        .cloned()
        .collect();
    let mut written: Vec<(PathBuf, String, String)> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for row in &rows {
        // synth/variant-K/<subject>/<modality>.nii.gz
        let path = Path::new(&row.artifact);
        let parts: Vec<String> = path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let [_, variant, subject, name] = parts.as_slice() else {
            continue;
        };
        let Some(k) = variant.strip_prefix("variant-") else {
            continue;
        };
        let modality = name.trim_end_matches(".nii.gz");
        let suffix = file.bids_suffix(modality).ok_or_else(|| {
            failed(
                &tmp,
                format!("no BIDS suffix for {modality}; set output.bids.suffixes.{modality}"),
            )
        })?;
        let pattern = Pattern::parse(&suffix).map_err(|e| failed(&tmp, e))?;
        let (sub, ses) = subject_label(subject).ok_or_else(|| {
            failed(
                &tmp,
                format!("subject {subject:?} has no letters or digits to make a BIDS label of"),
            )
        })?;
        // Variant 0 is desc-synth, the others desc-synth<K>.
        let desc = if k == "0" {
            "synth".to_owned()
        } else {
            format!("synth{k}")
        };
        let stem = file_stem(&sub, ses.as_deref(), &pattern, &desc);
        if let Some(other) = names.insert(stem.clone(), subject.clone())
            && &other != subject
        {
            return Err(failed(
                &tmp,
                format!(
                    "subjects {other:?} and {subject:?} both become {stem}; BIDS labels keep only letters and digits"
                ),
            ));
        }
        let mut folder = tmp.join(format!("sub-{sub}"));
        if let Some(s) = &ses {
            folder = folder.join(format!("ses-{s}"));
        }
        let folder = folder.join("anat");
        std::fs::create_dir_all(&folder).map_err(|e| failed(&folder, e))?;
        let image = folder.join(format!("{stem}.nii.gz"));
        let from = run.dir().join(path);
        std::fs::copy(&from, &image).map_err(|e| failed(&from, e))?;
        let sidecar = json!({
            "Description": format!(
                "{modality} synthesized by medsynth {} ({}, variant {k}) from pipeline {:?}",
                crate::VERSION,
                model
                    .map(|m| format!(
                        "{} {}",
                        serde_json::to_value(m.kind).unwrap_or_default().as_str().unwrap_or_default(),
                        serde_json::to_value(m.task).unwrap_or_default().as_str().unwrap_or_default()
                    ))
                    .unwrap_or_default(),
                file.pipeline.name
            ),
            "Sources": sources.get(subject.as_str()).cloned().unwrap_or_default(),
            "SkullStripped": skull_stripped,
            "MedsynthProvenance": {
                "sha256": row.sha256,
                "checkpoint_sha256": row.checkpoint_sha256,
                "config_hash": row.config_hash,
                "sampler": serde_json::from_str::<Value>(&row.sampler).unwrap_or(Value::String(row.sampler.clone())),
                "guidance": serde_json::from_str::<Value>(&row.guidance).unwrap_or(Value::String(row.guidance.clone())),
                "seed": row.seed.to_string(),
                "variant": k,
                "artifact": row.artifact,
            },
        });
        let json_path = folder.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(&sidecar).map_err(|e| failed(&json_path, e))?;
        std::fs::write(&json_path, text).map_err(|e| failed(&json_path, e))?;
        let rel = |p: &Path| p.strip_prefix(&tmp).unwrap_or(p).to_owned();
        written.push((rel(&image), subject.clone(), row.artifact.clone()));
        written.push((rel(&json_path), subject.clone(), row.artifact.clone()));
    }
    if written.is_empty() {
        return Err(RunError::Nothing {
            stage: Stage::Output,
            what: "output.formats has \"bids\" but the run synthesized no NIfTI volume".into(),
        });
    }
    let description = json!({
        "Name": format!("medsynth {} synthesized images", file.pipeline.name),
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "medsynth",
            "Version": crate::VERSION,
            "Description": format!("pipeline {:?}, seed {}", file.pipeline.name, file.pipeline.seed),
        }],
        "DatasetLinks": { link: file_uri(&root) },
    });
    let path = tmp.join("dataset_description.json");
    let text = serde_json::to_string_pretty(&description).map_err(|e| failed(&path, e))?;
    std::fs::write(&path, text).map_err(|e| failed(&path, e))?;
    let readme = tmp.join("README.md");
    std::fs::write(
        &readme,
        format!(
            "# medsynth {} synthesized images\n\nSynthetic images (desc-synth, desc-synth1, ... per sampled variant) written by medsynth {} from pipeline {:?}. They are not acquired data. Each image's sidecar names its sources and its provenance (the run's provenance.parquet holds the rest).\n",
            file.pipeline.name,
            crate::VERSION,
            file.pipeline.name
        ),
    )
    .map_err(|e| failed(&readme, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| failed(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| failed(&dir, e))?;
    let prefix = run.artifact_name(&dir);
    run.forget(|a| a.starts_with(&prefix));
    for (rel, subject, source) in written {
        let mut row = run.row(
            Stage::Output,
            "bids-derivative",
            &dir.join(&rel),
            &subject,
            &started,
        )?;
        row.sources = source;
        run.record(row);
    }
    for name in ["dataset_description.json", "README.md"] {
        let row = run.row(Stage::Output, "bids-dataset", &dir.join(name), "", &started)?;
        run.record(row);
    }
    tracing::info!(folder = %dir.display(), images = rows.len(), "BIDS derivatives written");
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_follow_the_entity_order() {
        let p = Pattern::parse("run-2_ce-gd_acq-fast_T1w").unwrap();
        assert_eq!(
            file_stem("01", Some("pre"), &p, "synth"),
            "sub-01_ses-pre_acq-fast_ce-gd_run-2_desc-synth_T1w"
        );
        assert_eq!(
            file_stem("000", None, &Pattern::parse("T2w").unwrap(), "synth1"),
            "sub-000_desc-synth1_T2w"
        );
    }
}
