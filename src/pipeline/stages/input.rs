//! The input stage: phantom subjects generated into the run folder, series retrieved from a
//! DICOMweb server into the input cache, or subjects discovered under `input.root` (NIfTI,
//! DICOM, BIDS); subjects that lack a required modality or label are set aside with the
//! reason, and the rest go on.

use std::path::{Path, PathBuf};

use crate::phantom::{self, PhantomConfig, PhantomFormat};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::{Skip, Subjects};
use crate::pipeline::stage::Stage;
use crate::preprocess::{SubjectInputs, dicom_subjects, nifti_subjects};
use crate::provenance::now_rfc3339;
use crate::pseudonym::Pseudonymizer;
use crate::spec::SubjectGrouping;
use crate::spec::{InputFormat, PHANTOM_MODALITIES, Task};
use crate::volume::AxisOrder;

/// The modalities a subject must have: `input.required`, else the model's inputs for tasks
/// that need all of them (translation).
fn required(run: &Run) -> Vec<String> {
    let file = &run.plan.file;
    if let Some(r) = &file.input.required {
        return r.clone();
    }
    match &file.model {
        Some(m) if m.task == Task::Translation => m.inputs.clone(),
        _ => Vec::new(),
    }
}

/// Generates the phantom cohort into `<run>/phantom` unless a previous run of the same
/// settings already finished it.
fn phantom_inputs(run: &mut Run) -> Result<(), RunError> {
    let started = now_rfc3339();
    let input = run.plan.file.input.phantom.clone().unwrap_or_default();
    let dir = run.run_dir().join("phantom");
    let storage = AxisOrder::from_ras(&input.orientation).map_err(|e| {
        RunError::failed(
            Stage::Input,
            &dir,
            format!("input.phantom.orientation: {e}"),
        )
    })?;
    let cfg = PhantomConfig {
        shape: input.shape.map(|n| n as usize),
        spacing_mm: input.spacing_mm.per_axis(),
        seed: run.plan.file.pipeline.seed,
        tumour_fraction: input.tumour_fraction,
        storage,
        tilt_deg: input.tilt_deg,
    };
    // A shard generates its own subjects only, and keeps its own marker.
    let marker = dir.join(match run.shard() {
        Some(shard) => format!(".complete-{shard}"),
        None => ".complete".to_owned(),
    });
    let settings = format!("{cfg:?} subjects={}", input.subjects);
    let indices: Vec<usize> = (0..input.subjects as usize)
        .filter(|&i| run.owns(&phantom::subject_id(i)))
        .collect();
    let files: Vec<PathBuf> = if std::fs::read_to_string(&marker).is_ok_and(|s| s == settings) {
        tracing::info!(folder = %dir.display(), "phantom subjects already generated; reusing them");
        indices
            .iter()
            .flat_map(|&i| {
                let folder = dir.join(phantom::subject_id(i));
                PHANTOM_MODALITIES
                    .iter()
                    .map(|m| format!("{m}.nii.gz"))
                    .chain(["seg.nii.gz".to_owned()])
                    .map(move |f| folder.join(f))
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        tracing::info!(subjects = input.subjects, shape = ?cfg.shape, spacing_mm = ?cfg.spacing_mm, orientation = %input.orientation, tilt_deg = ?cfg.tilt_deg, "generating phantom subjects");
        let files = phantom::write_subjects(&cfg, &indices, &dir, PhantomFormat::Nifti, false)
            .map_err(|e| RunError::failed(Stage::Input, &dir, e))?;
        crate::volume::AtomicFile::write(&marker, settings.as_bytes())
            .map_err(|e| RunError::failed(Stage::Input, &marker, e))?;
        files
    };
    for path in files {
        let subject = path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut row = run.row(Stage::Input, "phantom-volume", &path, &subject, &started)?;
        row.sources = format!("medsynth phantom seed {}", cfg.seed);
        run.record(row);
    }
    Ok(())
}

/// Runs the input stage: generates phantom subjects when the file asks for them, then finds
/// the subjects.
pub fn run(run: &mut Run) -> Result<Subjects, RunError> {
    match run.plan.file.input.format {
        InputFormat::Phantom => phantom_inputs(run)?,
        InputFormat::Dicomweb => dicomweb_inputs(run)?,
        _ => {}
    }
    discover(run)
}

/// The list of the cached series folders the last retrieval of this run brought, by name
/// (relative to the cache), one per line.
fn series_list(run: &Run) -> PathBuf {
    run.run_dir().join("dicomweb-series.txt")
}

/// Searches the DICOMweb server and retrieves the series `input.series` may match into the
/// cache; the list of the cohort's series folders is written for [`discover`].
fn dicomweb_inputs(run: &mut Run) -> Result<(), RunError> {
    let started = now_rfc3339();
    let input = run.plan.file.input.clone();
    let Some(server) = &input.dicomweb else {
        return Err(RunError::Nothing {
            stage: Stage::Input,
            what: "input.format is \"dicomweb\" but input.dicomweb is not set".into(),
        });
    };
    let cache = run.dicomweb_cache();
    let got = crate::dicomweb::retrieve_cohort(server, &input.series, &cache)
        .map_err(|e| RunError::failed(Stage::Input, &cache, e))?;
    tracing::info!(server = %server.url, fetched = got.fetched, reused = got.reused, instances = got.instances, cache = %cache.display(), "DICOMweb series in the input cache");
    if got.folders.is_empty() {
        return Err(RunError::Nothing {
            stage: Stage::Input,
            what: format!(
                "the DICOMweb server {} has no series matching input.dicomweb.query and input.series",
                server.url
            ),
        });
    }
    let list = series_list(run);
    let text: String = got
        .folders
        .iter()
        .filter_map(|f| f.file_name())
        .map(|f| format!("{}\n", f.to_string_lossy()))
        .collect();
    crate::volume::AtomicFile::write(&list, text.as_bytes())
        .map_err(|e| RunError::failed(Stage::Input, &list, e))?;
    let mut row = run.row(Stage::Input, "dicomweb-series-list", &list, "", &started)?;
    row.sources = server.url.clone();
    run.record(row);
    Ok(())
}

/// DICOM subjects (see [`dicom_subjects`]) from the series folders `folders` when given
/// (DICOMweb input), else from the tree under `root`; when they are named by pseudonyms and
/// `input.pseudonym_map` is set, the map from real value to pseudonym is written there, as
/// CSV, atomically. Checking put that path outside the run folder.
fn dicom_inputs(
    run: &Run,
    root: &Path,
    folders: Option<&[PathBuf]>,
) -> Result<Vec<SubjectInputs>, String> {
    let input = &run.plan.file.input;
    let pseudonyms = match input.subjects {
        SubjectGrouping::Folder => None,
        _ => Some(Pseudonymizer::load(
            input
                .pseudonym_key_file
                .as_deref()
                .map(|f| run.resolve(f))
                .as_deref(),
        )?),
    };
    let (subjects, map) = match folders {
        Some(folders) => crate::preprocess::dicom_subjects_in(
            folders,
            input,
            pseudonyms.as_ref(),
            &format!("the series retrieved into {}", root.display()),
        ),
        None => dicom_subjects(root, input, pseudonyms.as_ref()),
    }
    .map_err(|e| e.to_string())?;
    if let Some(path) = &input.pseudonym_map {
        let path = run.resolve(path);
        if path.starts_with(run.dir()) {
            return Err(format!(
                "input.pseudonym_map {} lies inside the run folder {}; the map links pseudonyms to real identities, so it must be kept elsewhere",
                path.display(),
                run.dir().display()
            ));
        }
        let mut csv = String::from("source,subject\n");
        for (real, id) in &map {
            csv.push_str(&format!("\"{}\",{id}\n", real.replace('"', "\"\"")));
        }
        crate::volume::AtomicFile::write(&path, csv.as_bytes())
            .map_err(|e| format!("cannot write the pseudonym map {}: {e}", path.display()))?;
        tracing::info!(subjects = map.len(), path = %path.display(), "pseudonym map written");
    }
    Ok(subjects)
}

/// Finds the subjects of the `[input]` section (phantom subjects already generated) and sets
/// aside those that lack what the pipeline needs.
pub fn discover(run: &Run) -> Result<Subjects, RunError> {
    let file = run.plan.file.clone();
    let input = &file.input;
    let found = match input.format {
        InputFormat::Phantom => {
            let dir = run.run_dir().join("phantom");
            let templates = PHANTOM_MODALITIES
                .iter()
                .map(|m| (m.to_string(), format!("{{subject}}/{m}.nii.gz")))
                .collect();
            nifti_subjects(&dir, "sub-*", &templates, Some("{subject}/seg.nii.gz"))
                .map_err(|e| RunError::failed(Stage::Input, &dir, e))?
        }
        InputFormat::Nifti | InputFormat::Dicom => {
            let root = run.resolve(input.root.as_deref().unwrap_or("."));
            let found = if input.format == InputFormat::Nifti {
                nifti_subjects(
                    &root,
                    &input.subject_glob,
                    &input.modalities,
                    input.label.as_deref(),
                )
                .map_err(|e| e.to_string())
            } else {
                dicom_inputs(run, &root, None)
            };
            found.map_err(|e| RunError::failed(Stage::Input, &root, e))?
        }
        InputFormat::Bids => {
            let root = run.resolve(input.root.as_deref().unwrap_or("."));
            crate::bids::bids_subjects(&root, input)
                .map_err(|e| RunError::failed(Stage::Input, &root, e))?
        }
        InputFormat::Dicomweb => {
            let list = series_list(run);
            let text = std::fs::read_to_string(&list).map_err(|e| {
                RunError::failed(
                    Stage::Input,
                    &list,
                    format!(
                        "cannot read the list of retrieved series ({e}); run the input stage first"
                    ),
                )
            })?;
            let cache = run.dicomweb_cache();
            let folders: Vec<PathBuf> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| cache.join(l))
                .collect();
            dicom_inputs(run, &cache, Some(&folders))
                .map_err(|e| RunError::failed(Stage::Input, &cache, e))?
        }
    };
    let required = required(run);
    let needs_label = file
        .model
        .as_ref()
        .is_some_and(|m| m.task == Task::LabelToImage);
    let root = run.resolve(input.root.as_deref().unwrap_or("."));
    let mut out = Subjects {
        pseudonymized: matches!(input.format, InputFormat::Dicom | InputFormat::Dicomweb)
            && input.subjects != SubjectGrouping::Folder,
        ..Subjects::default()
    };
    if input.format == InputFormat::Phantom {
        let n = file
            .input
            .phantom
            .as_ref()
            .map_or(0, |p| p.subjects as usize);
        out.cohort = (0..n).map(phantom::subject_id).collect();
    }
    for subject in found {
        let owned = run.owns(&subject.id);
        if !owned && input.format == InputFormat::Phantom {
            continue;
        }
        let expected = |name: &str| -> String {
            match (input.format, input.modalities.get(name)) {
                (InputFormat::Nifti, Some(t)) => format!(
                    " (expected {})",
                    root.join(t.replace("{subject}", &subject.id)).display()
                ),
                (InputFormat::Bids, Some(p)) => format!(" (no {p} image in anat/)"),
                (_, Some(_)) | (_, None) => match input.series.get(name) {
                    Some(m) => format!(
                        " (no series matched modality {:?}, description {:?})",
                        m.modality.as_deref().unwrap_or("any"),
                        m.description.as_deref().unwrap_or("any")
                    ),
                    None => String::new(),
                },
            }
        };
        let lacking: Vec<String> = required
            .iter()
            .filter(|m| subject.missing.contains(m))
            .map(|m| format!("{m}{}", expected(m)))
            .collect();
        let reason = if !lacking.is_empty() {
            Some(format!("missing required {}", lacking.join(", ")))
        } else if subject.modalities.is_empty() {
            Some("has none of the pipeline's modalities".to_owned())
        } else if needs_label && subject.label.is_none() {
            Some(format!(
                "missing the label{} that label-to-image needs",
                input
                    .label
                    .as_ref()
                    .map(|t| format!(
                        " ({})",
                        root.join(t.replace("{subject}", &subject.id)).display()
                    ))
                    .unwrap_or_default()
            ))
        } else {
            None
        };
        match reason {
            Some(_) if !owned => {}
            None if !owned => out.cohort.push(subject.id),
            Some(reason) => {
                tracing::warn!(subject = %subject.id, "skipped: {reason}");
                out.skipped.push(Skip {
                    subject: subject.id,
                    stage: Stage::Input,
                    reason,
                });
            }
            None => {
                if !subject.missing.is_empty() {
                    tracing::info!(subject = %subject.id, missing = ?subject.missing, "subject has missing modalities");
                }
                if input.format != InputFormat::Phantom {
                    out.cohort.push(subject.id.clone());
                }
                out.usable.push(subject);
            }
        }
    }
    // A shard may own no usable subject; the cohort may not be empty.
    if out.usable.is_empty() && (run.shard().is_none() || out.cohort.is_empty()) {
        return Err(RunError::Nothing {
            stage: Stage::Input,
            what: format!(
                "no usable subject ({} skipped: {})",
                out.skipped.len(),
                out.skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.subject, s.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    out.cohort.sort();
    tracing::info!(
        usable = out.usable.len(),
        skipped = out.skipped.len(),
        cohort = out.cohort.len(),
        "subjects found"
    );
    Ok(out)
}
