//! Subjects of a BIDS dataset: `sub-<label>/[ses-<label>/]anat/` images matched to modalities
//! by entity patterns, labels from `derivatives/<pipeline>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Name, Pattern};
use crate::names::glob_match;
use crate::preprocess::{ModalitySource, SubjectInputs};
use crate::spec::{InputSection, Prefer};

/// The folders directly under `dir` whose names start with `prefix`, sorted.
fn folders(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    out.sort();
    Ok(out)
}

/// The NIfTI images in `anat` (absent: none), with their parsed names.
fn images(anat: &Path) -> Result<Vec<(Name, PathBuf)>, String> {
    if !anat.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(anat).map_err(|e| format!("cannot read {}: {e}", anat.display()))?;
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some(name) = Name::parse(&file)
            && matches!(name.extension.as_str(), ".nii" | ".nii.gz")
        {
            out.push((name, e.path()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Voxels of a NIfTI image, from its header.
fn voxels(path: &Path) -> usize {
    crate::volume::nifti::read_header(path)
        .map(|h| {
            let (shape, frames) = h.grid();
            shape.iter().product::<usize>() * frames
        })
        .unwrap_or(0)
}

/// One of several images a pattern matches, by `prefer`: the highest `run`, or the most voxels.
fn choose(
    id: &str,
    key: &str,
    hits: Vec<&(Name, PathBuf)>,
    prefer: Prefer,
) -> Result<Option<PathBuf>, String> {
    let run = |n: &Name| {
        n.get("run")
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(match (hits.len(), prefer) {
        (0, _) => None,
        (1, _) => Some(hits[0].1.clone()),
        (_, Prefer::Latest) => hits.iter().max_by_key(|h| run(&h.0)).map(|h| h.1.clone()),
        (_, Prefer::Largest) => hits
            .iter()
            .max_by_key(|h| voxels(&h.1))
            .map(|h| h.1.clone()),
        (n, Prefer::Error) => {
            return Err(format!(
                "subject {id}: {key} matches {n} files ({}); make the pattern narrower (e.g. name the run: run-1_T1w) or set input.prefer (\"latest\" takes the highest run)",
                hits.iter()
                    .map(|h| h.1.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    })
}

/// The BIDS subjects under `root`: each `sub-*` folder matching `input.subject_glob`, or each of
/// its `ses-*` folders when it has sessions (named `sub-X_ses-Y`). Each modality takes the
/// image in `anat/` its pattern (`input.modalities`) matches; the label, the image its pattern
/// (`input.label`) matches in `derivatives/*/` at the same place.
pub fn bids_subjects(root: &Path, input: &InputSection) -> Result<Vec<SubjectInputs>, String> {
    if !root.join("dataset_description.json").is_file() {
        return Err(format!(
            "{} has no dataset_description.json; expected the root of a BIDS dataset",
            root.display()
        ));
    }
    let parse = |key: String, text: &str| Pattern::parse(text).map_err(|e| format!("{key}: {e}"));
    let patterns: Vec<(String, Pattern)> = input
        .modalities
        .iter()
        .map(|(m, t)| parse(format!("input.modalities.{m}"), t).map(|p| (m.clone(), p)))
        .collect::<Result<_, _>>()?;
    let label = input
        .label
        .as_deref()
        .map(|t| parse("input.label".into(), t))
        .transpose()?;
    let derivatives = if root.join("derivatives").is_dir() {
        folders(&root.join("derivatives"), "")?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (sub, sub_dir) in folders(root, "sub-")? {
        if !glob_match(&input.subject_glob, &sub) {
            continue;
        }
        let sessions = folders(&sub_dir, "ses-")?;
        let places: Vec<(String, PathBuf)> = if sessions.is_empty() {
            vec![(sub.clone(), PathBuf::from(&sub))]
        } else {
            sessions
                .iter()
                .map(|(ses, _)| (format!("{sub}_{ses}"), Path::new(&sub).join(ses)))
                .collect()
        };
        for (id, place) in places {
            let found = images(&root.join(&place).join("anat"))?;
            let mut modalities = BTreeMap::new();
            let mut missing = Vec::new();
            for (m, pattern) in &patterns {
                let hits: Vec<&(Name, PathBuf)> =
                    found.iter().filter(|(n, _)| pattern.matches(n)).collect();
                match choose(&id, &format!("input.modalities.{m}"), hits, input.prefer)? {
                    Some(path) => {
                        modalities.insert(m.clone(), ModalitySource::File(path));
                    }
                    None => missing.push(m.clone()),
                }
            }
            let label = match &label {
                None => None,
                Some(pattern) => {
                    let mut all = Vec::new();
                    for (_, d) in &derivatives {
                        all.extend(images(&d.join(&place).join("anat"))?);
                    }
                    let hits: Vec<&(Name, PathBuf)> =
                        all.iter().filter(|(n, _)| pattern.matches(n)).collect();
                    choose(&id, "input.label", hits, input.prefer)?
                }
            };
            out.push(SubjectInputs {
                id,
                modalities,
                missing,
                label,
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no sub-* folder under {} matches input.subject_glob {:?}",
            root.display(),
            input.subject_glob
        ));
    }
    Ok(out)
}
