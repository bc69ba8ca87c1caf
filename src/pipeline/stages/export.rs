//! The nnU-Net v2 export (`output.formats` has `nnunet`): a raw dataset folder
//! `export/nnunet/DatasetNNN_Name/` with `imagesTr/`, `labelsTr/`, `imagesTs/` and
//! `dataset.json`, ready for `nnUNetv2_plan_and_preprocess`.
//!
//! Every usable subject is one case, named by its subject id, with one file per modality
//! (`CASE_0000.nii.gz`, ... in the order of `dataset.json`'s `channel_names`) on the grid of
//! its reference modality. A channel the subject has is its real volume; a channel it lacks
//! is the synthesized one (variant 0) when synthesis produced it, and a case that still lacks
//! a channel is left out with the reason. Subjects of the `test` split and subjects without a
//! label go to `imagesTs/`, the rest to `imagesTr/` with their label in `labelsTr/`. A cohort
//! without labels (the clinical case) gets an inference export: every case in `imagesTs/`,
//! `numTraining` 0, labels only `background`, and `medsynth_inference_only` in
//! `dataset.json`, for `nnUNetv2_predict -i imagesTs`. For
//! `label-to-image` models every synthesized variant of a training subject is one more
//! training case (`CASE_synK`) with the subject's label. `provenance.parquet` names each
//! written file's source, and rows of kind `nnunet-image-synthetic` are the synthetic channels.
//!
//! The folder is written under a temporary name, checked against nnU-Net's layout rules
//! ([`check_layout`]), and only then put in place of an earlier export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Store;
use crate::pipeline::handoff::{NnunetExport, Skip, Subjects};
use crate::pipeline::stage::Stage;
use crate::preprocess::{Interpolation, LABEL, SubjectInputs, resample_onto, same_grid};
use crate::provenance::now_rfc3339;
use crate::spec::{InputFormat, Task};
use crate::volume::{Geometry, Volume, nifti, write_nifti};

/// nnU-Net's file ending for the volumes this export writes.
pub const FILE_ENDING: &str = ".nii.gz";

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Output, path, e.to_string())
}

/// Where one channel of a case comes from.
enum Channel {
    Real(Volume),
    Synthetic { volume: Volume, from: PathBuf },
}

impl Channel {
    fn volume(&self) -> &Volume {
        match self {
            Channel::Real(v) | Channel::Synthetic { volume: v, .. } => v,
        }
    }
}

/// One case to write.
struct Case {
    id: String,
    subject: String,
    training: bool,
    channels: Vec<Channel>,
    label: Option<Volume>,
}

/// The modalities of the dataset, in channel order: the store's channels without context
/// slices and the label.
fn modalities(store: &Store) -> Vec<String> {
    store
        .channels
        .iter()
        .filter(|c| c.as_str() != LABEL && !c.contains('@'))
        .cloned()
        .collect()
}

/// `v` on `grid`: itself when already there, else resampled.
fn on_grid(v: Volume, grid: &Geometry, interpolation: Interpolation) -> Result<Volume, String> {
    if same_grid(&v.geometry, grid) {
        return Ok(v);
    }
    resample_onto(&v, grid, interpolation).map_err(|e| e.to_string())
}

/// The synthesized volume of `subject`'s `modality` in variant `k`, when synthesis wrote it.
fn synthetic_path(run: &Run, k: usize, subject: &str, modality: &str) -> PathBuf {
    run.dir()
        .join("synth")
        .join(format!("variant-{k}"))
        .join(subject)
        .join(format!("{modality}.nii.gz"))
}

/// Label names for `dataset.json`: BraTS names for the phantom, else `label_K`, for every
/// value from 0 to the largest found (nnU-Net v2 wants consecutive integers).
fn label_names(values: &BTreeSet<u32>, phantom: bool) -> Result<Vec<(String, u32)>, String> {
    let max = values.iter().copied().max().unwrap_or(0);
    let brats = ["background", "necrosis", "edema", "enhancing_tumor"];
    if phantom && max < brats.len() as u32 {
        return Ok(brats
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u32))
            .collect());
    }
    if max > 255 {
        return Err(format!(
            "the labels reach {max}; nnU-Net v2 wants consecutive labels 0..N, so relabel them first"
        ));
    }
    Ok((0..=max)
        .map(|v| {
            let name = if v == 0 {
                "background".to_owned()
            } else {
                format!("label_{v}")
            };
            (name, v)
        })
        .collect())
}

/// The integer values of a label volume; fractional or negative values are an error.
fn label_values(v: &Volume) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for &x in v.data.iter() {
        if !(x >= 0.0 && x.fract() == 0.0 && x <= 65535.0) {
            return Err(format!(
                "holds the value {x}; a label volume must hold non-negative integers"
            ));
        }
        out.insert(x as u32);
    }
    Ok(out)
}

/// What every subject's cases share.
struct CaseSource<'a> {
    run: &'a Run,
    modalities: &'a [String],
    targets: Vec<String>,
    reference: Option<String>,
    label_to_image: bool,
    variants: usize,
}

impl<'a> CaseSource<'a> {
    fn new(run: &'a Run, modalities: &'a [String], variants: usize) -> Self {
        let file = &run.plan.file;
        CaseSource {
            run,
            modalities,
            targets: file
                .model
                .as_ref()
                .map(|m| m.target.iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            reference: file.preprocess.reference.clone(),
            label_to_image: file.model.as_ref().map(|m| m.task) == Some(Task::LabelToImage),
            variants,
        }
    }

    /// The cases of one subject, read from disk (its own and, for label-to-image, one per
    /// synthesized variant), sorted by id; or why it cannot make a full case.
    fn cases(
        &self,
        subject: &SubjectInputs,
        subject_split: &str,
    ) -> Result<Result<Vec<Case>, Skip>, RunError> {
        let (run, modalities) = (self.run, self.modalities);
        // The case grid: the reference modality's, else the first the subject has.
        let grid_source = self
            .reference
            .as_ref()
            .filter(|r| subject.modalities.contains_key(*r))
            .or_else(|| {
                modalities
                    .iter()
                    .find(|m| subject.modalities.contains_key(*m))
            });
        let Some(grid_source) = grid_source else {
            return Ok(Ok(Vec::new()));
        };
        let grid_path = subject.modalities[grid_source].path();
        let grid = subject.modalities[grid_source]
            .read()
            .map_err(|e| failed(&grid_path, e))?
            .geometry;
        let mut channels = Vec::new();
        let mut missing = Vec::new();
        for m in modalities {
            if let Some(source) = subject.modalities.get(m) {
                let path = source.path();
                let v = source.read().map_err(|e| failed(&path, e))?;
                let v = on_grid(v, &grid, Interpolation::Linear).map_err(|e| failed(&path, e))?;
                channels.push(Channel::Real(v));
                continue;
            }
            let path = synthetic_path(run, 0, &subject.id, m);
            if path.is_file() {
                let v = nifti::read(&path).map_err(|e| failed(&path, e))?;
                let v = on_grid(v, &grid, Interpolation::Linear).map_err(|e| failed(&path, e))?;
                channels.push(Channel::Synthetic {
                    volume: v,
                    from: path,
                });
            } else {
                missing.push(m.clone());
            }
        }
        if !missing.is_empty() {
            return Ok(Err(Skip {
                subject: subject.id.clone(),
                stage: Stage::Output,
                reason: format!(
                    "left out of the nnU-Net export: no real or synthesized {}",
                    missing.join(", ")
                ),
            }));
        }
        let label = match &subject.label {
            Some(p) => {
                let v = nifti::read(p).map_err(|e| failed(p, e))?;
                Some(on_grid(v, &grid, Interpolation::Nearest).map_err(|e| failed(p, e))?)
            }
            None => None,
        };
        let training = subject_split != "test" && label.is_some();
        let mut out = Vec::new();
        // Augmentation: each synthesized variant of a labelled training subject.
        if self.label_to_image && training {
            for k in 0..self.variants {
                let mut extra = Vec::new();
                for (m, real) in modalities.iter().zip(&channels) {
                    let path = synthetic_path(run, k, &subject.id, m);
                    if self.targets.contains(m) && path.is_file() {
                        let v = nifti::read(&path).map_err(|e| failed(&path, e))?;
                        let v = on_grid(v, &grid, Interpolation::Linear)
                            .map_err(|e| failed(&path, e))?;
                        extra.push(Channel::Synthetic {
                            volume: v,
                            from: path,
                        });
                    } else {
                        extra.push(Channel::Real(real.volume().clone()));
                    }
                }
                if extra.iter().any(|c| matches!(c, Channel::Synthetic { .. })) {
                    out.push(Case {
                        id: format!("{}_syn{k}", subject.id),
                        subject: subject.id.clone(),
                        training: true,
                        channels: extra,
                        label: label.clone(),
                    });
                }
            }
        }
        out.push(Case {
            id: subject.id.clone(),
            subject: subject.id.clone(),
            training,
            channels,
            label,
        });
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Ok(out))
    }
}

/// Writes one case's images (and its label, for training cases) into the dataset folder
/// `tmp`; returns its files as (name in the dataset, kind, subject, source).
fn write_case(
    run: &Run,
    tmp: &Path,
    case: &Case,
    modalities: &[String],
    values: &mut BTreeSet<u32>,
    synthetic: &mut Vec<(String, String)>,
) -> Result<Vec<(String, &'static str, String, String)>, RunError> {
    let mut written = Vec::new();
    let images = if case.training {
        "imagesTr"
    } else {
        "imagesTs"
    };
    for (k, (channel, modality)) in case.channels.iter().zip(modalities).enumerate() {
        let rel = format!("{images}/{}_{k:04}{FILE_ENDING}", case.id);
        let path = tmp.join(&rel);
        let description = match channel {
            Channel::Real(_) => modality.to_string(),
            Channel::Synthetic { .. } => format!("medsynth synthetic {modality}"),
        };
        write_nifti(&path, channel.volume(), &description).map_err(|e| failed(&path, e))?;
        let (kind, source) = match channel {
            Channel::Real(v) => ("nnunet-image", v.source.path.to_string_lossy().into_owned()),
            Channel::Synthetic { from, .. } => {
                synthetic.push((case.id.clone(), modality.clone()));
                ("nnunet-image-synthetic", run.artifact_name(from))
            }
        };
        written.push((rel, kind, case.subject.clone(), source));
    }
    if let (true, Some(label)) = (case.training, &case.label) {
        let found = label_values(label).map_err(|e| failed(&label.source.path, e))?;
        values.extend(found);
        let rel = format!("labelsTr/{}{FILE_ENDING}", case.id);
        let path = tmp.join(&rel);
        let mut l = label.clone();
        l.data.mapv_inplace(f32::round);
        write_nifti(&path, &l, "label").map_err(|e| failed(&path, e))?;
        written.push((
            rel,
            "nnunet-label",
            case.subject.clone(),
            label.source.path.to_string_lossy().into_owned(),
        ));
    }
    Ok(written)
}

/// Writes the export for `run`.
pub fn run(
    run: &mut Run,
    store: &Store,
    subjects: &Subjects,
    variants: usize,
) -> Result<NnunetExport, RunError> {
    let started = now_rfc3339();
    let file = run.plan.file.clone();
    let Some(cfg) = &file.output.nnunet else {
        return Err(RunError::Nothing {
            stage: Stage::Output,
            what: "output.formats has \"nnunet\" but output.nnunet is not set".into(),
        });
    };
    let name = format!("Dataset{:03}_{}", cfg.id, cfg.name);
    let parent = run.dir().join("export").join("nnunet");
    let dir = parent.join(&name);
    let tmp = parent.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| failed(&tmp, e))?;
    }
    for sub in ["imagesTr", "labelsTr", "imagesTs"] {
        let d = tmp.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| failed(&d, e))?;
    }
    let modalities = modalities(store);
    let mut split: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &store.rows {
        split.insert(r.subject.as_str(), r.split.as_str());
    }
    let mut usable: Vec<&SubjectInputs> = subjects.usable.iter().collect();
    usable.sort_by(|a, b| a.id.cmp(&b.id));
    let source = CaseSource::new(run, &modalities, variants);

    // Write every case, a subject at a time (only its volumes are in memory), collecting
    // provenance as (file name in the dataset, kind, case subject, source).
    let mut written: Vec<(String, &'static str, String, String)> = Vec::new();
    let mut values = BTreeSet::new();
    let mut synthetic = Vec::new();
    let mut skipped = Vec::new();
    let (mut training, mut test) = (0usize, 0usize);
    for subject in usable {
        let Some(&subject_split) = split.get(subject.id.as_str()) else {
            continue; // no slice of it made it into the store
        };
        let cases = match source.cases(subject, subject_split)? {
            Ok(cases) => cases,
            Err(skip) => {
                tracing::warn!(subject = %skip.subject, "{}", skip.reason);
                skipped.push(skip);
                continue;
            }
        };
        for case in &cases {
            if case.training {
                training += 1;
            } else {
                test += 1;
            }
            written.extend(write_case(
                run,
                &tmp,
                case,
                &modalities,
                &mut values,
                &mut synthetic,
            )?);
        }
    }
    // Without labels the export is for inference (nnUNetv2_predict -i imagesTs): every case
    // in imagesTs/, no training case, and dataset.json says so.
    let inference_only = !file.has_label();
    if training == 0 && !inference_only {
        return Err(RunError::Nothing {
            stage: Stage::Output,
            what: format!(
                "the nnU-Net export {} would have no training case (no labelled subject outside the test split)",
                dir.display()
            ),
        });
    }
    let labels = label_names(&values, file.input.format == InputFormat::Phantom)
        .map_err(|e| failed(&tmp, e))?;
    let mut synthetic_by_case: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (c, m) in &synthetic {
        synthetic_by_case.entry(c).or_default().push(m);
    }
    let mut dataset = json!({
        "name": name,
        "description": format!(
            "written by medsynth {} from pipeline {:?}; synthesized channels are listed in medsynth_synthetic and in provenance.parquet",
            crate::VERSION, file.pipeline.name
        ),
        "channel_names": modalities.iter().enumerate().map(|(k, m)| (k.to_string(), Value::from(m.as_str()))).collect::<serde_json::Map<_, _>>(),
        "labels": labels.iter().map(|(n, v)| (n.clone(), Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        "numTraining": training,
        "file_ending": FILE_ENDING,
        "medsynth_synthetic": synthetic_by_case,
    });
    if inference_only {
        dataset["medsynth_inference_only"] = Value::Bool(true);
        dataset["description"] = Value::from(format!(
            "written by medsynth {} from pipeline {:?} for inference (nnUNetv2_predict -i imagesTs): the cohort has no labels, so there is no training case; synthesized channels are listed in medsynth_synthetic and in provenance.parquet",
            crate::VERSION,
            file.pipeline.name
        ));
    }
    let json_path = tmp.join("dataset.json");
    let text = serde_json::to_string_pretty(&dataset).map_err(|e| failed(&json_path, e))?;
    crate::volume::AtomicFile::write(&json_path, text.as_bytes())
        .map_err(|e| failed(&json_path, e))?;
    written.push((
        "dataset.json".into(),
        "nnunet-dataset",
        String::new(),
        String::new(),
    ));

    check_layout(&tmp).map_err(|problems| failed(&tmp, problems.join("; ")))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| failed(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| failed(&dir, e))?;

    let prefix = run.artifact_name(&dir);
    run.forget(|a| a.starts_with(&prefix));
    let rows_of: BTreeMap<String, crate::provenance::ProvenanceRow> = run
        .provenance()
        .iter()
        .map(|r| (r.artifact.clone(), r.clone()))
        .collect();
    for (rel, kind, subject, source) in written {
        let mut row = run.row(Stage::Output, kind, &dir.join(&rel), &subject, &started)?;
        if let Some(synth) = rows_of.get(&source) {
            row.source_sha256 = synth.sha256.clone();
            row.checkpoint_sha256 = synth.checkpoint_sha256.clone();
            row.sampler = synth.sampler.clone();
            row.guidance = synth.guidance.clone();
            row.seed = synth.seed;
        }
        row.sources = source;
        run.record(row);
    }
    run.save_provenance()?;
    Ok(NnunetExport {
        dir,
        training,
        test,
        synthetic,
        skipped,
    })
}

/// Checks an nnU-Net v2 raw dataset folder against the layout rules nnU-Net's
/// `verify_dataset_integrity` applies: `dataset.json` has `channel_names`, `labels` (with
/// `background` = 0 and consecutive values), `numTraining` and `file_ending`; every case in
/// `imagesTr/` and `imagesTs/` has exactly one file per channel (`CASE_XXXX` + file ending);
/// every training case has its label in `labelsTr/` and every label a case; `numTraining`
/// counts the training cases. Returns every problem found.
pub fn check_layout(dir: &Path) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let json_path = dir.join("dataset.json");
    let dataset: Value = match std::fs::read_to_string(&json_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("{}: {e}", json_path.display())]),
    };
    let channels: Vec<String> = match dataset["channel_names"].as_object() {
        Some(map) => {
            let mut keys: Vec<usize> = map.keys().filter_map(|k| k.parse().ok()).collect();
            keys.sort();
            if keys != (0..map.len()).collect::<Vec<_>>() {
                problems.push("dataset.json: channel_names keys are not 0..N".into());
            }
            keys.iter().map(|k| format!("{k:04}")).collect()
        }
        None => {
            problems.push("dataset.json: channel_names is missing".into());
            Vec::new()
        }
    };
    match dataset["labels"].as_object() {
        Some(map) => {
            let mut v: Vec<i64> = map.values().filter_map(Value::as_i64).collect();
            v.sort();
            if map.get("background").and_then(Value::as_i64) != Some(0) {
                problems.push("dataset.json: labels has no background = 0".into());
            }
            if v != (0..v.len() as i64).collect::<Vec<_>>() {
                problems.push(format!(
                    "dataset.json: label values {v:?} are not consecutive from 0"
                ));
            }
        }
        None => problems.push("dataset.json: labels is missing".into()),
    }
    let ending = dataset["file_ending"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if ending.is_empty() {
        problems.push("dataset.json: file_ending is missing".into());
    }
    let files = |sub: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut check_images = |sub: &str| -> BTreeSet<String> {
        let mut cases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files(sub) {
            let Some(stem) = f.strip_suffix(&ending) else {
                problems.push(format!("{sub}/{f}: does not end in {ending}"));
                continue;
            };
            match stem.rsplit_once('_') {
                Some((case, ch)) if ch.len() == 4 && ch.bytes().all(|b| b.is_ascii_digit()) => {
                    cases
                        .entry(case.to_owned())
                        .or_default()
                        .insert(ch.to_owned());
                }
                _ => problems.push(format!("{sub}/{f}: not named CASE_XXXX{ending}")),
            }
        }
        let want: BTreeSet<String> = channels.iter().cloned().collect();
        for (case, have) in &cases {
            if *have != want {
                problems.push(format!(
                    "{sub}/{case}: has channels {:?}, dataset.json names {:?}",
                    have, want
                ));
            }
        }
        cases.into_keys().collect()
    };
    let training = check_images("imagesTr");
    check_images("imagesTs");
    let labels: BTreeSet<String> = files("labelsTr")
        .into_iter()
        .filter_map(|f| f.strip_suffix(&ending).map(str::to_owned))
        .collect();
    for case in training.difference(&labels) {
        problems.push(format!("imagesTr/{case}: no label labelsTr/{case}{ending}"));
    }
    for case in labels.difference(&training) {
        problems.push(format!("labelsTr/{case}{ending}: no images in imagesTr"));
    }
    if dataset["numTraining"].as_u64() != Some(training.len() as u64) {
        problems.push(format!(
            "dataset.json: numTraining is {}, imagesTr holds {} cases",
            dataset["numTraining"],
            training.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
