//! Finding subjects from the `[input]` section: the folders under `root` that match
//! `subject_glob`, and in each, the file for every modality (NIfTI path templates) or the
//! series that matches each modality's header patterns (DICOM). A subject records which
//! modalities are present and which are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::PreprocessError;
use crate::names::glob_match;
use crate::pseudonym::Pseudonymizer;
use crate::spec::{InputSection, Prefer, SeriesMatch, SubjectGrouping};
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

/// Pairs of (real PatientID or StudyInstanceUID, subject pseudonym).
pub type PseudonymMap = Vec<(String, String)>;

/// The series of one subject that a modality's pattern matches, one chosen by `prefer`.
fn choose<'a>(
    id: &str,
    name: &str,
    hits: Vec<&'a Series>,
    prefer: Prefer,
) -> Result<Option<&'a Series>, PreprocessError> {
    let voxels = |s: &Series| {
        s.slices
            .iter()
            .map(|h| h.rows * h.cols * h.frames)
            .sum::<usize>()
    };
    let latest = |s: &Series| {
        let h = &s.slices[0];
        (h.series_date_time.clone(), h.series_number)
    };
    Ok(match (hits.len(), prefer) {
        (0, _) => None,
        (1, _) => Some(hits[0]),
        (_, Prefer::Latest) => hits.into_iter().max_by_key(|s| latest(s)),
        (_, Prefer::Largest) => hits.into_iter().max_by_key(|s| voxels(s)),
        (n, Prefer::Error) => {
            return Err(PreprocessError::Apply {
                step: "input",
                what: format!(
                    "subject {id}: input.series.{name} matches {n} series ({}); make the pattern narrower or set input.prefer",
                    hits.iter()
                        .map(|s| s.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    })
}

/// One subject's inputs from its series.
fn dicom_subject(
    id: String,
    series: &[Series],
    patterns: &BTreeMap<String, SeriesMatch>,
    prefer: Prefer,
) -> Result<SubjectInputs, PreprocessError> {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, pattern) in patterns {
        let hits: Vec<&Series> = series
            .iter()
            .filter(|s| series_matches(pattern, s))
            .collect();
        match choose(&id, name, hits, prefer)? {
            Some(s) => {
                found.insert(name.clone(), ModalitySource::Series(Box::new(s.clone())));
            }
            None => missing.push(name.clone()),
        }
    }
    Ok(SubjectInputs {
        id,
        modalities: found,
        missing,
        label: None,
    })
}

/// DICOM subjects. Grouped by folder: each folder under `root` matching `subject_glob` is
/// scanned and named by its name. Grouped by patient or study: the whole tree under `root` is
/// scanned once (through its DICOMDIR if it has one) and each PatientID or StudyInstanceUID
/// is one subject, named by its keyed pseudonym; its series' UIDs are replaced by keyed ones
/// too. In every subject each modality takes the series its pattern matches, by `prefer`
/// when several do. Returns the subjects and, when grouped by header, the map from real
/// value to subject id (for `input.pseudonym_map` only).
pub fn dicom_subjects(
    root: &Path,
    input: &InputSection,
    pseudonyms: Option<&Pseudonymizer>,
) -> Result<(Vec<SubjectInputs>, PseudonymMap), PreprocessError> {
    let fail = |what: String| PreprocessError::Apply {
        step: "input",
        what,
    };
    if input.subjects == SubjectGrouping::Folder {
        let mut out = Vec::new();
        for (id, folder) in subject_folders(root, &input.subject_glob)? {
            let scan = dicom::scan(&folder).map_err(|e| fail(format!("subject {id}: {e}")))?;
            out.push(dicom_subject(
                id,
                &scan.series,
                &input.series,
                input.prefer,
            )?);
        }
        return Ok((out, Vec::new()));
    }
    let scan = dicom::scan(root).map_err(|e| fail(e.to_string()))?;
    grouped(scan.series, &root.display().to_string(), input, pseudonyms)
}

/// DICOM subjects grouped by patient or study (as [`dicom_subjects`] groups them) from the
/// series in `folders` (e.g. the series retrieved from a DICOMweb server), scanned one by one.
pub fn dicom_subjects_in(
    folders: &[PathBuf],
    input: &InputSection,
    pseudonyms: Option<&Pseudonymizer>,
    what: &str,
) -> Result<(Vec<SubjectInputs>, PseudonymMap), PreprocessError> {
    let mut series = Vec::new();
    for folder in folders {
        let scan = dicom::scan(folder).map_err(|e| PreprocessError::Apply {
            step: "input",
            what: e.to_string(),
        })?;
        series.extend(scan.series);
    }
    grouped(series, what, input, pseudonyms)
}

/// Subjects from `series` grouped by PatientID or StudyInstanceUID and named by pseudonym;
/// `what` names where the series came from, for the error when there are none.
fn grouped(
    series: Vec<Series>,
    what: &str,
    input: &InputSection,
    pseudonyms: Option<&Pseudonymizer>,
) -> Result<(Vec<SubjectInputs>, PseudonymMap), PreprocessError> {
    let fail = |what: String| PreprocessError::Apply {
        step: "input",
        what,
    };
    let pseudonyms = pseudonyms.ok_or_else(|| {
        fail("subjects grouped by DICOM header need a pseudonymization key".to_owned())
    })?;
    let mut groups: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    let mut unkeyed = 0usize;
    for mut s in series {
        let first = &s.slices[0];
        let key = match input.subjects {
            SubjectGrouping::Patient => first.patient_id.as_ref().map(|p| p.expose().to_owned()),
            _ => first.study_uid.clone(),
        };
        let Some(key) = key else {
            unkeyed += 1;
            continue;
        };
        // UIDs are identifying too (PS3.15 Annex E): keyed ones stand for the series', study's
        // and frame of reference's, so derived series written later file beside their source.
        s.uid = pseudonyms.uid(&s.uid);
        for h in &mut s.slices {
            h.study_uid = h.study_uid.as_deref().map(|u| pseudonyms.uid(u));
            h.frame_of_reference_uid = h
                .frame_of_reference_uid
                .as_deref()
                .map(|u| pseudonyms.uid(u));
        }
        s.label = if s.part > 1 {
            format!("{} (part {})", s.uid, s.part)
        } else {
            s.uid.clone()
        };
        groups.entry(key).or_default().push(s);
    }
    if unkeyed > 0 {
        tracing::warn!(
            series = unkeyed,
            "series without {} left out",
            if input.subjects == SubjectGrouping::Patient {
                "PatientID"
            } else {
                "StudyInstanceUID"
            }
        );
    }
    let mut out = Vec::new();
    let mut map = Vec::new();
    for (key, series) in groups {
        let id = pseudonyms.subject(&key);
        out.push(dicom_subject(
            id.clone(),
            &series,
            &input.series,
            input.prefer,
        )?);
        map.push((key, id));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    if out.is_empty() {
        return Err(fail(format!("no DICOM image series in {what}")));
    }
    Ok((out, map))
}
