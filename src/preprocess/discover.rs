//! Finding subjects from the `[input]` section: the folders under `root` that match
//! `subject_glob`, and in each, the file for every modality (NIfTI path templates) or the
//! series that matches each modality's header patterns (DICOM). A subject records which
//! modalities are present and which are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::PreprocessError;
use crate::spec::SeriesMatch;
use crate::volume::dicom::{self, Series};

/// Where one modality of a subject comes from.
#[derive(Debug, Clone)]
pub enum ModalitySource {
    /// A NIfTI file.
    File(PathBuf),
    /// A DICOM series.
    Series(Box<Series>),
}

impl ModalitySource {
    /// SHA-256 (hex) of the source as the readers record it: of the file, or for a DICOM
    /// series of its files' sorted digests.
    pub fn digest(&self) -> std::io::Result<String> {
        match self {
            ModalitySource::File(path) => file_digest(path).map(|d| crate::volume::hex(&d)),
            ModalitySource::Series(series) => {
                let mut digests = series
                    .slices
                    .iter()
                    .map(|s| file_digest(&s.path))
                    .collect::<std::io::Result<Vec<_>>>()?;
                digests.sort();
                digests.dedup();
                let mut h = Sha256::new();
                for d in &digests {
                    h.update(d);
                }
                Ok(crate::volume::hex(&h.finalize()))
            }
        }
    }

    /// The file or series folder, for messages and provenance.
    pub fn path(&self) -> PathBuf {
        match self {
            ModalitySource::File(path) => path.clone(),
            ModalitySource::Series(series) => series.folder(),
        }
    }

    /// Reads the volume.
    pub fn read(&self) -> Result<crate::volume::Volume, crate::volume::VolumeError> {
        match self {
            ModalitySource::File(path) => Ok(crate::volume::nifti::read(path)?),
            ModalitySource::Series(series) => Ok(dicom::read_series(series)?),
        }
    }
}

/// SHA-256 of a file's bytes, streamed.
pub fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// One subject's inputs.
#[derive(Debug, Clone)]
pub struct SubjectInputs {
    /// The subject folder's name.
    pub id: String,
    pub modalities: BTreeMap<String, ModalitySource>,
    /// Modalities the input section names that this subject lacks.
    pub missing: Vec<String>,
    pub label: Option<PathBuf>,
}

/// Whether `name` matches a glob with `*`, `?` and `[abc]` / `[a-z]` (case-sensitive).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let set = &p[1..close];
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit && go(&p[close + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// The subject folders under `root` matching `glob`, sorted.
fn subject_folders(root: &Path, glob: &str) -> Result<Vec<(String, PathBuf)>, PreprocessError> {
    let entries = std::fs::read_dir(root).map_err(|e| PreprocessError::Apply {
        step: "input",
        what: format!("cannot read input.root {}: {e}", root.display()),
    })?;
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            glob_match(glob, &name).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(PreprocessError::Apply {
            step: "input",
            what: format!(
                "input.subject_glob {glob:?} matches no folder under {}",
                root.display()
            ),
        });
    }
    Ok(out)
}

/// NIfTI subjects: each modality's template with `{subject}` replaced, relative to `root`.
pub fn nifti_subjects(
    root: &Path,
    glob: &str,
    modalities: &BTreeMap<String, String>,
    label: Option<&str>,
) -> Result<Vec<SubjectInputs>, PreprocessError> {
    let resolve = |template: &str, id: &str| root.join(template.replace("{subject}", id));
    subject_folders(root, glob).map(|folders| {
        folders
            .into_iter()
            .map(|(id, _)| {
                let mut found = BTreeMap::new();
                let mut missing = Vec::new();
                for (name, template) in modalities {
                    let path = resolve(template, &id);
                    if path.is_file() {
                        found.insert(name.clone(), ModalitySource::File(path));
                    } else {
                        missing.push(name.clone());
                    }
                }
                let label = label.map(|t| resolve(t, &id)).filter(|p| p.is_file());
                SubjectInputs {
                    id,
                    modalities: found,
                    missing,
                    label,
                }
            })
            .collect()
    })
}

fn series_matches(m: &SeriesMatch, s: &Series) -> bool {
    let Some(first) = s.slices.first() else {
        return false;
    };
    let modality_ok = m.modality.as_ref().is_none_or(|want| {
        first
            .modality
            .as_deref()
            .is_some_and(|x| x.eq_ignore_ascii_case(want))
    });
    let description_ok = m.description.as_ref().is_none_or(|want| {
        first
            .series_description
            .as_deref()
            .is_some_and(|d| glob_match(&want.to_lowercase(), &d.to_lowercase()))
    });
    modality_ok && description_ok
}

/// DICOM subjects: each subject folder is scanned and every modality takes the series that
/// matches its patterns; two matching series for one modality is an error naming both.
pub fn dicom_subjects(
    root: &Path,
    glob: &str,
    series: &BTreeMap<String, SeriesMatch>,
) -> Result<Vec<SubjectInputs>, PreprocessError> {
    let mut out = Vec::new();
    for (id, folder) in subject_folders(root, glob)? {
        let scan = dicom::scan(&folder).map_err(|e| PreprocessError::Apply {
            step: "input",
            what: format!("subject {id}: {e}"),
        })?;
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, pattern) in series {
            let hits: Vec<&Series> = scan
                .series
                .iter()
                .filter(|s| series_matches(pattern, s))
                .collect();
            match hits.as_slice() {
                [] => missing.push(name.clone()),
                [one] => {
                    found.insert(
                        name.clone(),
                        ModalitySource::Series(Box::new((*one).clone())),
                    );
                }
                many => {
                    return Err(PreprocessError::Apply {
                        step: "input",
                        what: format!(
                            "subject {id}: input.series.{name} matches {} series ({}); make the pattern narrower",
                            many.len(),
                            many.iter()
                                .map(|s| s.label.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
        out.push(SubjectInputs {
            id,
            modalities: found,
            missing,
            label: None,
        });
    }
    Ok(out)
}
