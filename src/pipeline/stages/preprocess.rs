//! The preprocess stage: every usable subject through [`prepare`], cut into slices, written
//! to the content-addressed slice store (one safetensors shard and one row file per subject,
//! then `manifest.parquet` last). A store whose manifest exists is complete and is reused; a
//! store left half-written by an interrupted run is resumed subject by subject.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array4, Axis};
use rayon::prelude::*;

use crate::dataset::{ManifestRow, write_manifest, write_shard};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::{Action, Skip, Subjects};
use crate::pipeline::handoff::{Store, subjects_of};
use crate::pipeline::shard;
use crate::pipeline::stage::Stage;
use crate::preprocess::{
    LABEL, Prepared, SubjectInputs, assign_splits, cache_key, cut_slices, prepare, read_split_list,
    voxel_axis,
};
use crate::progress::Progress;
use crate::provenance::{now_rfc3339, sha256_file};
use crate::spec::{SliceAxis, SplitName, WriteFormat};
use crate::volume::{AtomicFile, Volume};

/// Where a subject's manifest rows are kept in a store.
fn rows_file(store: &Path, id: &str) -> PathBuf {
    store.join("subjects").join(format!("{id}.json"))
}

/// The store's channel names: each modality with its context planes (`t1@-1`, `t1`,
/// `t1@+1`), then `label` when subjects come with one.
pub fn channel_names(modalities: &[String], context: usize, label: bool) -> Vec<String> {
    let mut out: Vec<String> = modalities
        .iter()
        .flat_map(|m| {
            (-(context as i64)..=context as i64).map(move |d| match d {
                0 => m.clone(),
                d => format!("{m}@{d:+}"),
            })
        })
        .collect();
    if label {
        out.push(LABEL.to_owned());
    }
    out
}

fn axis_name(axis: SliceAxis) -> &'static str {
    match axis {
        SliceAxis::Axial => "axial",
        SliceAxis::Coronal => "coronal",
        SliceAxis::Sagittal => "sagittal",
    }
}

/// What one subject produced.
struct Done {
    rows: Vec<ManifestRow>,
    shard: PathBuf,
    sources: Vec<PathBuf>,
    /// The DICOM series read (their UIDs; keyed ones when subjects are pseudonymized).
    series_uids: Vec<String>,
    exported: Vec<PathBuf>,
}

/// One input's identity for the store key: (subject, modality, SHA-256).
type Input = (String, String, String);

/// A subject and what its work gave: its results, or why it was skipped.
type Outcome = (String, Result<Done, String>);

/// Settings every subject's work shares.
struct Job<'a> {
    run: &'a Run,
    dir: &'a Path,
    modalities: &'a [String],
    channels: &'a [String],
    has_label: bool,
    /// Where preprocessed volumes are written (runs without a model), and in which formats.
    export: Option<(PathBuf, Vec<WriteFormat>)>,
}

/// Refuses what preprocessing cannot use: colour images, 4-D series, and geometry the reader
/// had to assume (unless `input.assume_geometry`), naming the modality, source and series.
fn usable_volume(name: &str, v: &Volume, assume_geometry: bool) -> Result<(), String> {
    let series = v
        .source
        .series_uid
        .as_deref()
        .map_or_else(String::new, |uid| format!(" (series {uid})"));
    if v.meta.rgb {
        return Err(format!(
            "{name}: {}{series} is a colour image; pipelines take greyscale volumes (medsynth convert writes it as RGB NIfTI)",
            v.source.path.display()
        ));
    }
    if v.frames() > 1 {
        return Err(format!(
            "{name}: {}{series} holds {} volumes (several planes at each position: diffusion, dynamic or multi-echo); pipelines take one 3-D volume per modality, so split the series first (medsynth convert writes it as 4-D NIfTI)",
            v.source.path.display(),
            v.frames()
        ));
    }
    if !v.meta.assumed_geometry.is_empty() && !assume_geometry {
        return Err(format!(
            "{name}: {}{series} lacks real geometry ({}); resampling needs it, so it is refused unless input.assume_geometry = true",
            v.source.path.display(),
            v.meta.assumed_geometry.join("; ")
        ));
    }
    Ok(())
}

impl Job<'_> {
    fn shard(&self, id: &str) -> PathBuf {
        self.dir.join("shards").join(format!("{id}.safetensors"))
    }

    fn rows_file(&self, id: &str) -> PathBuf {
        rows_file(self.dir, id)
    }

    fn exports(&self, id: &str, names: impl Iterator<Item = String>) -> Vec<PathBuf> {
        let Some((dir, formats)) = &self.export else {
            return Vec::new();
        };
        names
            .flat_map(|m| {
                formats.iter().filter_map(move |f| match f {
                    WriteFormat::Nifti => Some(dir.join(id).join(format!("{m}.nii.gz"))),
                    WriteFormat::Dicom if m != LABEL => Some(dir.join(id).join(&m)),
                    _ => None,
                })
            })
            .collect()
    }

    /// The subject's results from an earlier run, if all of them are there and were made from
    /// inputs with these digests.
    fn resume(&self, subject: &SubjectInputs, digests: &[String]) -> Option<Done> {
        let text = std::fs::read_to_string(self.rows_file(&subject.id)).ok()?;
        let rows: Vec<ManifestRow> = serde_json::from_str(&text).ok()?;
        let mut recorded: Vec<&str> = rows.first()?.source_sha256.split(',').collect();
        let mut fresh: Vec<&str> = digests.iter().map(String::as_str).collect();
        recorded.sort_unstable();
        fresh.sort_unstable();
        if recorded != fresh {
            tracing::info!(subject = %subject.id, "inputs changed since the store was built; preprocessing again");
            return None;
        }
        let shard = self.shard(&subject.id);
        let exported = self.exports(&subject.id, volume_names(subject).into_iter());
        (shard.is_file() && exported.iter().all(|p| p.exists())).then(|| Done {
            rows,
            shard,
            sources: sources(subject),
            series_uids: series_uids(subject),
            exported,
        })
    }

    fn work(&self, subject: &SubjectInputs, split: SplitName) -> Result<Done, String> {
        let file = &self.run.plan.file;
        let section = &file.preprocess;
        let mut volumes = BTreeMap::new();
        for (name, source) in &subject.modalities {
            let v = source.read().map_err(|e| format!("{name}: {e}"))?;
            usable_volume(name, &v, file.input.assume_geometry)?;
            volumes.insert(name.clone(), v);
        }
        let label = match &subject.label {
            Some(path) => {
                Some(crate::volume::nifti::read(path).map_err(|e| format!("label: {e}"))?)
            }
            None => None,
        };
        let digests: Vec<String> = self
            .modalities
            .iter()
            .filter_map(|m| volumes.get(m).map(|v: &Volume| v.source.sha256.clone()))
            .chain(label.iter().map(|l| l.source.sha256.clone()))
            .collect();
        log_orientation(&subject.id, &volumes, &section.orientation);
        let prepared = prepare(
            section,
            volumes,
            label,
            self.modalities,
            section.slices.axis,
        )
        .map_err(|e| e.to_string())?;
        let exported = self.export(subject, &prepared)?;
        let rows = self.write_slices(subject, split, &prepared, &digests)?;
        let rows_file = self.rows_file(&subject.id);
        let text = serde_json::to_vec(&rows).map_err(|e| e.to_string())?;
        AtomicFile::write(&rows_file, &text)
            .map_err(|e| format!("cannot write {}: {e}", rows_file.display()))?;
        Ok(Done {
            rows,
            shard: self.shard(&subject.id),
            sources: sources(subject),
            series_uids: series_uids(subject),
            exported,
        })
    }

    fn write_slices(
        &self,
        subject: &SubjectInputs,
        split: SplitName,
        prepared: &Prepared,
        digests: &[String],
    ) -> Result<Vec<ManifestRow>, String> {
        let section = &self.run.plan.file.preprocess;
        let slicing = &section.slices;
        let grid = prepared.grid;
        let zeros = Volume {
            data: Array4::zeros((grid.shape[0], grid.shape[1], grid.shape[2], 1)),
            geometry: grid,
            source: Default::default(),
            meta: Default::default(),
        };
        let channels: Vec<&Volume> = self
            .modalities
            .iter()
            .map(|m| prepared.modalities.get(m).map(|(v, _)| v).unwrap_or(&zeros))
            .collect();
        let context = slicing.context as usize;
        let slices = cut_slices(
            &channels,
            &prepared.mask,
            slicing.axis,
            slicing.min_foreground,
            context,
        )
        .map_err(|e| e.to_string())?;
        if slices.is_empty() {
            return Err(format!(
                "no {} slice has at least {} foreground (preprocess.slices.min_foreground)",
                axis_name(slicing.axis),
                slicing.min_foreground
            ));
        }
        let labels = if self.has_label {
            let l = prepared.label.as_ref().map(|(v, _)| v).unwrap_or(&zeros);
            Some(
                cut_slices(
                    &[l],
                    &prepared.mask,
                    slicing.axis,
                    slicing.min_foreground,
                    0,
                )
                .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let [_, h, w] = <[usize; 3]>::try_from(slices[0].data.shape()).map_err(|_| "bad slice")?;
        let mut tensor = Array4::<f32>::zeros((slices.len(), self.channels.len(), h, w));
        for (n, sl) in slices.iter().enumerate() {
            let mut row = tensor.index_axis_mut(Axis(0), n);
            row.slice_mut(ndarray::s![..sl.data.shape()[0], .., ..])
                .assign(&sl.data);
            if let Some(labels) = &labels {
                row.index_axis_mut(Axis(0), self.channels.len() - 1)
                    .assign(&labels[n].data.index_axis(Axis(0), 0));
            }
        }
        let shard = self.shard(&subject.id);
        let mut meta = BTreeMap::new();
        meta.insert("subject".to_owned(), subject.id.clone());
        meta.insert("axis".to_owned(), axis_name(slicing.axis).to_owned());
        write_shard(&shard, &tensor, self.channels, &meta).map_err(|e| e.to_string())?;

        let record = serde_json::to_string(&prepared.record()).map_err(|e| e.to_string())?;
        let (real, missing): (Vec<&String>, Vec<&String>) = self
            .modalities
            .iter()
            .partition(|m| prepared.modalities.contains_key(*m));
        let mut real: Vec<String> = real.into_iter().cloned().collect();
        let mut missing: Vec<String> = missing.into_iter().cloned().collect();
        if self.has_label {
            if prepared.label.is_some() {
                real.push(LABEL.to_owned());
            } else {
                missing.push(LABEL.to_owned());
            }
        }
        let cut = voxel_axis(&grid, slicing.axis);
        let world_axis = match slicing.axis {
            SliceAxis::Sagittal => 0,
            SliceAxis::Coronal => 1,
            SliceAxis::Axial => 2,
        };
        let shard_name = format!("shards/{}.safetensors", subject.id);
        Ok(slices
            .iter()
            .enumerate()
            .map(|(n, sl)| {
                let mut centre = grid.shape.map(|s| (s as f64 - 1.0) / 2.0);
                centre[cut] = sl.index as f64;
                ManifestRow {
                    subject: subject.id.clone(),
                    split: split.as_str().to_owned(),
                    axis: axis_name(slicing.axis).to_owned(),
                    slice_index: sl.index as u32,
                    world_position_mm: grid.affine.apply(centre)[world_axis],
                    shard: shard_name.clone(),
                    row: n as u32,
                    channels_real: real.join(","),
                    channels_missing: missing.join(","),
                    source_sha256: digests.join(","),
                    record: record.clone(),
                }
            })
            .collect())
    }

    /// Writes the preprocessed volumes of a run without a model.
    fn export(&self, subject: &SubjectInputs, prepared: &Prepared) -> Result<Vec<PathBuf>, String> {
        let Some((dir, formats)) = &self.export else {
            return Ok(Vec::new());
        };
        let mut written = Vec::new();
        let volumes = prepared
            .modalities
            .iter()
            .map(|(m, (v, _))| (m.as_str(), v))
            .chain(prepared.label.iter().map(|(v, _)| (LABEL, v)));
        for (name, v) in volumes {
            written.extend(crate::pipeline::write::write_formats(
                dir,
                &subject.id,
                name,
                v,
                formats,
                &crate::volume::dicom::WriteOptions {
                    uid_root: self.run.plan.file.output.dicom_uid_root.clone(),
                    derivation: Some("medsynth preprocessing of the source images".to_owned()),
                    ..Default::default()
                },
                "medsynth preprocessed",
            )?);
        }
        Ok(written)
    }
}

/// The volumes a subject has: its modalities, then `label`.
fn volume_names(subject: &SubjectInputs) -> Vec<String> {
    subject
        .modalities
        .keys()
        .cloned()
        .chain(subject.label.as_ref().map(|_| LABEL.to_owned()))
        .collect()
}

fn series_uids(subject: &SubjectInputs) -> Vec<String> {
    subject
        .modalities
        .values()
        .filter_map(|s| match s {
            crate::preprocess::ModalitySource::Series(series) => Some(series.uid.clone()),
            crate::preprocess::ModalitySource::File(_) => None,
        })
        .collect()
}

fn sources(subject: &SubjectInputs) -> Vec<PathBuf> {
    subject
        .modalities
        .values()
        .map(|s| s.path())
        .chain(subject.label.clone())
        .collect()
}

/// Each subject's split: from `preprocess.split.list` when given (subjects it does not list
/// are skipped), else drawn from the seed.
fn splits(
    run: &Run,
    cohort: &[String],
    subjects: &[SubjectInputs],
    skipped: &mut Vec<Skip>,
) -> Result<BTreeMap<String, SplitName>, RunError> {
    let section = &run.plan.file.preprocess.split;
    let Some(list) = &section.list else {
        return Ok(assign_splits(cohort, section, run.plan.file.pipeline.seed));
    };
    let path = run.resolve(list);
    let listed =
        read_split_list(&path).map_err(|e| RunError::failed(Stage::Preprocess, &path, e))?;
    for s in subjects {
        if !listed.contains_key(&s.id) {
            skipped.push(Skip {
                subject: s.id.clone(),
                stage: Stage::Preprocess,
                reason: format!("not listed in preprocess.split.list {}", path.display()),
            });
        }
    }
    Ok(listed)
}

/// Each usable subject's input digests (in modality order, then the label's); a subject
/// whose files cannot be read is added to `skipped`.
fn hash_inputs(subjects: &Subjects, skipped: &mut Vec<Skip>) -> BTreeMap<String, Vec<String>> {
    let bar = progress(subjects.usable.len(), "hashing");
    // Each subject's input digests, or (subject, why not).
    type Digests = Result<(String, Vec<String>), (String, String)>;
    let digests: Vec<Digests> = subjects
        .usable
        .par_iter()
        .map(|s| {
            let mut out = Vec::new();
            for src in s.modalities.values() {
                let sha = src.digest().map_err(|e| {
                    (
                        s.id.clone(),
                        format!("cannot read {}: {e}", src.path().display()),
                    )
                })?;
                out.push(sha);
            }
            if let Some(l) = &s.label {
                let sha = sha256_file(l)
                    .map_err(|e| (s.id.clone(), format!("cannot read {}: {e}", l.display())))?;
                out.push(sha);
            }
            bar.inc(1);
            Ok((s.id.clone(), out))
        })
        .collect();
    bar.finish();
    let mut digest_of = BTreeMap::new();
    for d in digests {
        match d {
            Ok((subject, v)) => {
                digest_of.insert(subject, v);
            }
            Err((subject, reason)) => {
                tracing::warn!(%subject, "skipped: {reason}");
                skipped.push(Skip {
                    subject,
                    stage: Stage::Preprocess,
                    reason,
                });
            }
        }
    }
    digest_of
}

/// The store's key (settings, seed, cohort and split list) and its folder.
fn store_location(run: &Run, subjects: &Subjects) -> Result<(String, PathBuf), RunError> {
    let file = &run.plan.file;
    let section = &file.preprocess;
    let mut inputs: Vec<Input> = subjects
        .cohort
        .iter()
        .map(|id| (id.clone(), "subject".to_owned(), String::new()))
        .collect();
    if let Some(list) = &section.split.list {
        let path = run.resolve(list);
        let sha = sha256_file(&path).map_err(|e| RunError::failed(Stage::Preprocess, &path, e))?;
        inputs.push((String::new(), "split-list".to_owned(), sha));
    }
    let key = cache_key(section, file.pipeline.seed, &inputs);
    let dir = match &section.cache {
        Some(cache) => run.resolve(cache).join(&key),
        None => run.run_dir().join("slices").join(&key),
    };
    Ok((key, dir))
}

/// What a subject's work wrote: its id, shard, sources, their series UIDs and preprocessed
/// volumes.
type Written = (String, PathBuf, Vec<PathBuf>, Vec<String>, Vec<PathBuf>);

/// Provenance rows for every subject's shard and preprocessed volumes.
fn record_written(
    run: &mut Run,
    rows: &[ManifestRow],
    written: Vec<Written>,
    started: &str,
) -> Result<(), RunError> {
    for (subject, shard, srcs, uids, exported) in written {
        let sha: Vec<String> = rows
            .iter()
            .find(|r| r.subject == subject)
            .map(|r| r.source_sha256.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let names: Vec<String> = srcs.iter().map(|p| p.display().to_string()).collect();
        let mut row = run.row(Stage::Preprocess, "slice-shard", &shard, &subject, started)?;
        row.sources = names.join(";");
        row.source_sha256 = sha.join(";");
        row.source_series_uids = uids.join(";");
        run.record(row);
        for f in crate::pipeline::write::files_of(&exported) {
            {
                let mut row =
                    run.row(Stage::Output, "preprocessed-volume", &f, &subject, started)?;
                row.sources = names.join(";");
                row.source_sha256 = sha.join(";");
                row.source_series_uids = uids.join(";");
                run.record(row);
            }
        }
    }
    Ok(())
}

/// Runs the preprocess stage on `subjects`; subjects that fail are added to `skipped`.
///
/// The store's key comes from the settings, the seed and the cohort (every usable subject,
/// and the split list), so every shard of a run computes the same one; each subject's rows
/// record its inputs' digests, and a subject whose inputs changed is preprocessed again.
/// A shard writes its subjects' files but not the manifest, which [`gather`] writes once
/// every shard is done.
pub fn run(run: &mut Run, subjects: &Subjects, skipped: &mut Vec<Skip>) -> Result<Store, RunError> {
    let started = now_rfc3339();
    let file = run.plan.file.clone();
    let section = &file.preprocess;

    let digest_of = hash_inputs(subjects, skipped);
    let (key, dir) = store_location(run, subjects)?;
    let modalities = file.declared_modalities();
    let channels = channel_names(
        &modalities,
        section.slices.context as usize,
        file.has_label(),
    );

    let split_of = splits(run, &subjects.cohort, &subjects.usable, skipped)?;
    let export = file.model.is_none().then(|| {
        let formats: Vec<WriteFormat> = file
            .output
            .formats
            .iter()
            .copied()
            .filter(|f| matches!(f, WriteFormat::Nifti | WriteFormat::Dicom))
            .collect();
        (run.dir().join("preprocessed"), formats)
    });
    let export = export.filter(|(_, f)| !f.is_empty());

    let manifest = dir.join("manifest.parquet");
    let job = Job {
        run,
        dir: &dir,
        modalities: &modalities,
        channels: &channels,
        has_label: file.has_label(),
        export,
    };
    let todo: Vec<(&SubjectInputs, SplitName, &[String])> = subjects
        .usable
        .iter()
        .filter_map(|s| {
            let digests = digest_of.get(&s.id)?;
            split_of.get(&s.id).map(|sp| (s, *sp, digests.as_slice()))
        })
        .collect();
    tracing::info!(store = %dir.display(), subjects = todo.len(), "slice store (key {key})");
    let bar = progress(todo.len(), "preprocessing");
    let done: Vec<(Outcome, bool)> = todo
        .par_iter()
        .map(|(s, split, digests)| {
            let result = match job.resume(s, digests) {
                Some(done) => {
                    tracing::debug!(subject = %s.id, "already preprocessed; reusing it");
                    (Ok(done), false)
                }
                None => (job.work(s, *split), true),
            };
            bar.inc(1);
            ((s.id.clone(), result.0), result.1)
        })
        .collect();
    bar.finish();
    let worked = done.iter().filter(|(_, w)| *w).count();

    let mut rows = Vec::new();
    let mut written = Vec::new();
    for ((subject, result), _) in done {
        match result {
            Ok(d) => {
                rows.extend(d.rows);
                written.push((subject, d.shard, d.sources, d.series_uids, d.exported));
            }
            Err(reason) => {
                tracing::warn!(%subject, "skipped: {reason}");
                skipped.push(Skip {
                    subject,
                    stage: Stage::Preprocess,
                    reason,
                });
            }
        }
    }
    if rows.is_empty() && (run.shard().is_none() || !todo.is_empty()) {
        return Err(RunError::Nothing {
            stage: Stage::Preprocess,
            what: "no subject gave any slice".to_owned(),
        });
    }
    rows.sort_by(|a, b| (&a.subject, a.slice_index).cmp(&(&b.subject, b.slice_index)));
    let reused = worked == 0 && manifest.is_file();
    match run.shard() {
        // A shard that changed the store makes its manifest stale until the next gather.
        Some(_) if worked > 0 && manifest.is_file() => std::fs::remove_file(&manifest)
            .map_err(|e| RunError::failed(Stage::Preprocess, &manifest, e))?,
        Some(_) => {}
        None if reused => {
            tracing::info!(store = %dir.display(), slices = rows.len(), "reusing the slice store built earlier with the same inputs and settings")
        }
        None => write_manifest(&manifest, &rows)
            .map_err(|e| RunError::failed(Stage::Preprocess, &manifest, e))?,
    }

    run.did(
        Stage::Preprocess,
        "slice store",
        if worked == 0 {
            Action::Reused
        } else {
            Action::Ran
        },
    );
    record_written(run, &rows, written, &started)?;
    let only = run
        .shard()
        .map(|_| subjects_of(&rows).into_iter().collect());
    if run.shard().is_none() {
        let row = run.row(Stage::Preprocess, "manifest", &manifest, "", &started)?;
        run.record(row);
    }
    Ok(Store {
        dir,
        key,
        channels,
        rows,
        reused,
        only,
    })
}

/// Gathers the slice stores of a run's shards from their preprocessing records
/// ([`shard::prepared`] checks that every shard has finished): reads each subject's rows and
/// writes the store's manifest (unless a gather already wrote it and no shard changed the
/// store since). Returns the store and the subjects the shards left out.
pub fn gather(run: &mut Run, prepared: &[shard::Prepared]) -> Result<(Store, Vec<Skip>), RunError> {
    let started = now_rfc3339();
    let count = prepared.len();
    let Some(first) = prepared.first() else {
        return Err(RunError::Nothing {
            stage: Stage::Preprocess,
            what: "no shard to gather".into(),
        });
    };
    let dir = first.store.clone();
    let manifest = dir.join("manifest.parquet");
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for p in prepared {
        skipped.extend(p.skipped.iter().map(|s| s.to_skip()));
        for id in &p.subjects {
            let path = rows_file(&dir, id);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| RunError::failed(Stage::Preprocess, &path, e))?;
            let r: Vec<ManifestRow> = serde_json::from_str(&text)
                .map_err(|e| RunError::failed(Stage::Preprocess, &path, e))?;
            rows.extend(r);
        }
    }
    rows.sort_by(|a, b| (&a.subject, a.slice_index).cmp(&(&b.subject, b.slice_index)));
    let reused = manifest.is_file();
    if !reused {
        write_manifest(&manifest, &rows)
            .map_err(|e| RunError::failed(Stage::Preprocess, &manifest, e))?;
    }
    tracing::info!(store = %dir.display(), shards = count, subjects = subjects_of(&rows).len(), slices = rows.len(), "gathered the shards' slice stores");
    let row = run.row(Stage::Preprocess, "manifest", &manifest, "", &started)?;
    run.record(row);
    Ok((
        Store {
            dir,
            key: first.key.clone(),
            channels: first.channels.clone(),
            rows,
            reused,
            only: None,
        },
        skipped,
    ))
}

fn progress(len: usize, what: &str) -> Progress {
    Progress::new(what, "subjects", len as u64)
}

/// Logs once for a subject which orientation its volumes are stored in and whether
/// preprocessing reorients them (non-RAS storage is the common case for real data).
fn log_orientation(subject: &str, volumes: &BTreeMap<String, Volume>, target: &str) {
    let codes: BTreeMap<String, Vec<&str>> =
        volumes.iter().fold(BTreeMap::new(), |mut acc, (name, v)| {
            acc.entry(v.geometry.orientation())
                .or_default()
                .push(name.as_str());
            acc
        });
    let stored = codes
        .iter()
        .map(|(code, names)| format!("{code} ({})", names.join(", ")))
        .collect::<Vec<_>>()
        .join(", ");
    if codes.keys().all(|c| c == target) {
        tracing::info!(%subject, "stored {stored}: already {target}, not reoriented");
    } else {
        tracing::info!(%subject, "stored {stored}: reoriented to {target}");
    }
}
