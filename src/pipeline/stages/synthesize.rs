//! The `[synthesize]` stage: the trained generator produces the target modalities for every
//! slice of the chosen split, `variants` times with recorded seeds.
//!
//! Each variant is written as a slice store of its own, `synth/slices/variant-K/` (one
//! safetensors shard per subject, channels = the targets, and a `manifest.parquet` whose rows
//! carry the source slices' positions and preprocessing records), so what reads the real
//! store reads the synthetic one.
//!
//! Each shard's header holds the [`Stamp`] of what made it: the checkpoint's digest, the
//! model, sampler and guidance settings, the seed, the variant, the slice store's key and the
//! digest of the subject's slices. A re-run reuses a subject's shard only when that stamp
//! equals what it would be sampled from now (an interrupted run resumes); anything else is
//! sampled again and replaced, with a log line naming what changed. The provenance of every
//! file made from a shard comes from its stamp, never from the current file's settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array4, Axis};
use sha2::Digest;

use crate::dataset::{
    ManifestRow, SliceSet, read_shard, shard_metadata, shard_shape, write_manifest, write_shard,
};
use crate::fingerprint::{Fingerprint, Stamp, Verdict};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Store;
use crate::pipeline::handoff::{Action, Subjects, Synthesized, attention_maps, report_positions};
use crate::pipeline::model::generator;
use crate::pipeline::stage::Stage;
use crate::pipeline::write::{files_of, write_formats};
use crate::preprocess::LABEL;
use crate::progress::Progress;
use crate::provenance::{now_rfc3339, sha256_file};
use crate::spec::{PipelineFile, SplitName, WriteFormat};
use crate::synth::volumes::{Scale, to_original_grid};
use crate::synth::{Generator, slice_seed, subject_seed};

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Synthesize, path, e.to_string())
}

/// Runs the stage with the checkpoint folder `checkpoint`.
///
/// Batches are filled with slices across subjects, up to `synthesize.batch_size`, so a
/// subject's last partial batch does not leave the device half idle; each slice draws its
/// noise from its own seed ([`slice_seed`]), so its sample does not depend on its batch. A
/// subject is written as soon as its last slice is sampled, in store order.
pub fn run(
    run: &mut Run,
    store: &Store,
    checkpoint: &Path,
    inputs: &Subjects,
) -> Result<Synthesized, RunError> {
    let file = run.plan.file.clone();
    let sources = source_uids(
        inputs,
        &file
            .model
            .as_ref()
            .map(|m| m.target.iter().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let section = file.synthesize.clone().unwrap_or_default();
    let split = match section.split {
        SplitName::All => None,
        s => Some(s.as_str()),
    };
    let set = store.load(split).map_err(|e| failed(&store.dir, e))?;
    let generator = generator(&file, &set, checkpoint, &run.device(Stage::Synthesize)?)?;
    let checkpoint_sha = sha256_file(&checkpoint.join("ema.bpk")).unwrap_or_default();
    let targets = generator.targets();
    let batch_size = section.batch_size.max(1) as usize;
    let settings = settings(&file, &checkpoint_sha, &store.key, &targets);

    // Rows of each subject, in store order.
    let mut by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in set.rows.iter().enumerate() {
        by_subject.entry(r.subject.as_str()).or_default().push(i);
    }
    let subjects: Vec<(&str, Vec<usize>)> = by_subject.into_iter().collect();
    let variants_n = section.variants.max(1);
    let total = subjects.len() * variants_n as usize;
    let bar = Progress::new("synthesize", "slices", set.len() as u64 * variants_n as u64);
    tracing::info!(
        subjects = subjects.len(),
        slices = set.len(),
        variants = section.variants,
        batch_size,
        sampler = %generator.sampler(),
        guidance = %generator.guidance(),
        "synthesizing"
    );
    let clock = Instant::now();
    let mut sampled = 0usize;
    let mut variants = Vec::new();
    let mut digests = Vec::new();
    let mut done = 0usize;
    for v in 0..variants_n {
        let dir = run
            .dir()
            .join("synth")
            .join("slices")
            .join(format!("variant-{v}"));
        std::fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
        let writer = VariantWriter {
            file: &file,
            set: &set,
            generator: generator.as_ref(),
            targets: &targets,
            checkpoint_sha: &checkpoint_sha,
            source_uids: sources.clone(),
            dicom: crate::volume::dicom::WriteOptions {
                uid_root: file.output.dicom_uid_root.clone(),
                derivation: Some(derivation(&file, generator.as_ref(), v, &checkpoint_sha)),
                ..Default::default()
            },
            dir: &dir,
            variant: v,
            store: &store.dir,
            checkpoint,
            settings: &settings,
        };
        let (n, digest) = writer.sample(run, &subjects, batch_size, &bar, (&mut done, total))?;
        sampled += n;
        digests.push(digest);
        variants.push(dir);
    }
    bar.finish();
    remove_variants_from(run.dir(), variants_n)?;
    let seconds = clock.elapsed().as_secs_f64();
    let volumes = sampled as f64 / set.len().max(1) as f64 * subjects.len() as f64;
    tracing::info!(
        slices = sampled,
        seconds = format!("{seconds:.1}"),
        slices_per_s = format!("{:.2}", sampled as f64 / seconds.max(1e-9)),
        volumes_per_min = format!("{:.2}", volumes * 60.0 / seconds.max(1e-9)),
        "synthesized"
    );
    Ok(Synthesized {
        variants,
        slices: set.len(),
        digests,
    })
}

/// What every subject-variant's slices are made from, besides the variant and the subject's
/// own slices: the checkpoint's weights, the model and sampling settings (all of
/// `[synthesize]` but the batch size, the variant count and the split, which decide how and
/// which subject-variants are sampled, not what each one is), the seed, the targets and the
/// slice store's key (a hash of the inputs and preprocessing settings). The device is left
/// out, as training leaves it out.
fn settings(
    file: &PipelineFile,
    checkpoint_sha: &str,
    store_key: &str,
    targets: &[String],
) -> serde_json::Value {
    let mut model = serde_json::to_value(&file.model).unwrap_or_default();
    if let Some(m) = model.as_object_mut() {
        m.remove("checkpoint");
    }
    let mut synthesize = serde_json::to_value(&file.synthesize).unwrap_or_default();
    if let Some(s) = synthesize.as_object_mut() {
        for key in ["batch_size", "variants", "split"] {
            s.remove(key);
        }
    }
    serde_json::json!({
        "checkpoint_sha256": checkpoint_sha,
        "model": model,
        "synthesize": synthesize,
        "seed": file.pipeline.seed,
        "store": store_key,
        "targets": targets,
    })
}

/// Removes the variants an earlier run made beyond the `count` this one makes, slices and
/// volumes, so the run folder holds what this file asks for.
fn remove_variants_from(dir: &Path, count: u32) -> Result<(), RunError> {
    for parent in [dir.join("synth").join("slices"), dir.join("synth")] {
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let extra = name
                .strip_prefix("variant-")
                .and_then(|k| k.parse::<u32>().ok())
                .is_some_and(|k| k >= count);
            if extra {
                let path = entry.path();
                tracing::info!(folder = %path.display(), "removing a variant this file no longer asks for");
                std::fs::remove_dir_all(&path).map_err(|e| failed(&path, e))?;
            }
        }
    }
    Ok(())
}

/// Each DICOM subject's source study and frame of reference, so its synthetic series file
/// into that study beside the source and register with it: the keyed UIDs discovery put in
/// place of the real ones for pseudonymized subjects, else UIDs derived from the real ones by
/// a hash (the same source UID always gives the same one; nothing is copied).
fn source_uids(
    subjects: &Subjects,
    targets: &[String],
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mapped = |uid: &str, role: &str| {
        if uid.starts_with("2.25.") && subjects.pseudonymized {
            uid.to_owned()
        } else {
            let hash: [u8; 32] = sha2::Sha256::digest(uid.as_bytes()).into();
            crate::volume::dicom::make_uid(None, &hash, role)
        }
    };
    subjects
        .usable
        .iter()
        .filter_map(|s| {
            let series = |m: &crate::preprocess::ModalitySource| match m {
                crate::preprocess::ModalitySource::Series(series) => Some(series.clone()),
                crate::preprocess::ModalitySource::File(_) => None,
            };
            // The study of the real target when the subject has it, else of an input.
            let series = targets
                .iter()
                .find_map(|t| s.modalities.get(t).and_then(series))
                .or_else(|| s.modalities.values().find_map(series))?;
            let h = series.slices.first()?;
            Some((
                s.id.clone(),
                (
                    h.study_uid.as_deref().map(|u| mapped(u, "study")),
                    h.frame_of_reference_uid
                        .as_deref()
                        .map(|u| mapped(u, "frame-of-reference")),
                ),
            ))
        })
        .collect()
}

/// DerivationDescription of a synthetic series: the model, how it sampled, the variant and
/// the checkpoint it loaded.
fn derivation(file: &PipelineFile, generator: &dyn Generator, variant: u32, sha: &str) -> String {
    let model = file.model.as_ref().map_or_else(String::new, |m| {
        format!(
            "{} model for {}, inputs [{}] -> [{}], ",
            format!("{:?}", m.kind).to_lowercase(),
            format!("{:?}", m.task).to_lowercase(),
            m.inputs.join(", "),
            m.target.iter().collect::<Vec<_>>().join(", ")
        )
    });
    format!(
        "medsynth {} synthetic image: {model}{}, {}, variant {variant}, checkpoint ema.bpk sha256 {sha}",
        crate::VERSION,
        generator.sampler(),
        generator.guidance()
    )
}

/// Writes what one variant produced for each subject: its shard, manifest rows, volumes on
/// the original grid, its label, and their provenance.
struct VariantWriter<'a> {
    file: &'a PipelineFile,
    set: &'a SliceSet,
    generator: &'a dyn Generator,
    targets: &'a [String],
    checkpoint_sha: &'a str,
    /// UID root and derivation of the DICOM series it writes.
    dicom: crate::volume::dicom::WriteOptions,
    /// Per subject, the (mapped) study and frame of reference UIDs of its DICOM source.
    source_uids: BTreeMap<String, (Option<String>, Option<String>)>,
    dir: &'a Path,
    variant: u32,
    /// The slice store and the checkpoint, for messages.
    store: &'a Path,
    checkpoint: &'a Path,
    /// What every subject-variant is made from ([`settings`]).
    settings: &'a serde_json::Value,
}

impl VariantWriter<'_> {
    /// Samples every subject whose shard is not already made from the same fingerprint,
    /// batches filled across subjects, and writes each subject as soon as its last slice is
    /// in; then the variant's manifest. Returns how many slices it sampled and the digest of
    /// its subjects' fingerprints; `done` counts finished subject-variants of `total`.
    fn sample(
        &self,
        run: &mut Run,
        subjects: &[(&str, Vec<usize>)],
        batch_size: usize,
        bar: &Progress,
        (done, total): (&mut usize, usize),
    ) -> Result<(usize, String), RunError> {
        let mut sampled = 0usize;
        let mut manifest = Vec::new();
        let fingerprints: Vec<Fingerprint> = subjects
            .iter()
            .map(|(subject, rows)| self.fingerprint(subject, rows))
            .collect();
        // Subjects whose shard was made from the same fingerprint are read back, not sampled
        // again; the others are sampled and replaced.
        let verdicts: Vec<Verdict> = subjects
            .iter()
            .zip(&fingerprints)
            .map(|((subject, rows), fp)| self.verdict(subject, rows.len(), fp))
            .collect();
        let resumed: Vec<bool> = verdicts
            .iter()
            .map(|v| matches!(v, Verdict::Reuse(_)))
            .collect();
        self.note(run, &verdicts);
        let mut stamps: Vec<Option<Stamp>> = verdicts
            .into_iter()
            .map(|v| match v {
                Verdict::Reuse(stamp) => Some(stamp),
                Verdict::Run { .. } => None,
            })
            .collect();
        self.remove_others(subjects)?;
        let work: Vec<(usize, usize)> = subjects
            .iter()
            .enumerate()
            .filter(|(k, _)| !resumed[*k])
            .flat_map(|(k, (_, rows))| (0..rows.len()).map(move |n| (k, n)))
            .collect();
        // Sampled outputs of the subjects in flight, and how many of their slices are in.
        let mut outs: BTreeMap<usize, (Array4<f32>, usize)> = BTreeMap::new();
        let mut next = 0usize;
        let (_, c, h, w) = self.set.dim();
        let mut finish = |run: &mut Run,
                          upto: usize,
                          outs: &mut BTreeMap<usize, (Array4<f32>, usize)>,
                          manifest: &mut Vec<ManifestRow>|
         -> Result<(), RunError> {
            while next < upto {
                let (subject, rows) = &subjects[next];
                let made = match (outs.remove(&next), stamps[next].take()) {
                    (Some((out, _)), _) => Made::Sampled(out, &fingerprints[next]),
                    (None, Some(stamp)) => Made::Kept(stamp),
                    (None, None) => break,
                };
                self.finish(run, subject, rows, made, manifest)?;
                next += 1;
                *done += 1;
                bar.set_message(format!("{done}/{total} subject-variants", done = *done));
            }
            Ok(())
        };
        for chunk in work.chunks(batch_size) {
            let mut batch = Array4::<f32>::zeros((chunk.len(), c, h, w));
            let mut described = Vec::with_capacity(chunk.len());
            let mut seeds = Vec::with_capacity(chunk.len());
            for (m, &(k, n)) in chunk.iter().enumerate() {
                let (subject, rows) = &subjects[k];
                let i = rows[n];
                batch
                    .index_axis_mut(Axis(0), m)
                    .assign(&self.set.slice(i).map_err(|e| failed(self.store, e))?);
                described.push(&self.set.rows[i]);
                seeds.push(slice_seed(
                    subject_seed(self.file.pipeline.seed, subject, self.variant),
                    &self.set.rows[i],
                ));
            }
            let fake = self
                .generator
                .generate(&batch, &described, &seeds)
                .map_err(|e| failed(self.checkpoint, e))?;
            for (m, &(k, n)) in chunk.iter().enumerate() {
                let len = subjects[k].1.len();
                let (out, filled) = outs
                    .entry(k)
                    .or_insert_with(|| (Array4::zeros((len, self.targets.len(), h, w)), 0));
                out.index_axis_mut(Axis(0), n)
                    .assign(&fake.index_axis(Axis(0), m));
                *filled += 1;
            }
            sampled += chunk.len();
            bar.inc(chunk.len() as u64);
            // Every subject before the first one still waiting for slices is complete.
            let waiting = outs
                .iter()
                .find(|(k, (_, filled))| *filled < subjects[**k].1.len())
                .map(|(k, _)| *k)
                .unwrap_or(subjects.len());
            finish(run, waiting, &mut outs, &mut manifest)?;
        }
        finish(run, subjects.len(), &mut outs, &mut manifest)?;
        let path = self.dir.join("manifest.parquet");
        write_manifest(&path, &manifest).map_err(|e| failed(&path, e))?;
        let row = run.row(
            Stage::Synthesize,
            "synthetic-manifest",
            &path,
            "",
            &now_rfc3339(),
        )?;
        run.record(row);
        run.save_provenance()?;
        let mut all = sha2::Sha256::new();
        for fp in &fingerprints {
            all.update(fp.digest().as_bytes());
        }
        Ok((sampled, crate::volume::hex(&all.finalize())))
    }

    fn shard(&self, subject: &str) -> PathBuf {
        self.dir.join(format!("{subject}.safetensors"))
    }

    /// What the subject's slices of this variant are made from: the run's [`settings`], the
    /// variant and the subject's slices (their rows: positions, source digests and
    /// preprocessing records).
    fn fingerprint(&self, subject: &str, rows: &[usize]) -> Fingerprint {
        let mut slices = sha2::Sha256::new();
        for &i in rows {
            slices.update(serde_json::to_vec(&self.set.rows[i]).unwrap_or_default());
        }
        let mut value = self.settings.clone();
        if let Some(map) = value.as_object_mut() {
            map.insert("variant".into(), self.variant.into());
            map.insert("subject".into(), subject.into());
            map.insert(
                "slices".into(),
                crate::volume::hex(&slices.finalize()).into(),
            );
        }
        Fingerprint::new(value)
    }

    /// Whether an earlier run left the subject's shard whole and made from `fingerprint`,
    /// read from its header only.
    fn verdict(&self, subject: &str, slices: usize, fingerprint: &Fingerprint) -> Verdict {
        let shard = self.shard(subject);
        if !shard.exists() {
            return Verdict::Run { why: None };
        }
        let recorded = shard_metadata(&shard)
            .ok()
            .and_then(|m| m.get(STAMP).and_then(|t| Stamp::from_text(t)));
        let Some(recorded) = recorded else {
            // Unreadable, or written before stamps were recorded: what made it is unknown.
            return Verdict::Run {
                why: Some("its record of what made it is missing".into()),
            };
        };
        let whole = shard_shape(&shard)
            .is_ok_and(|(shape, channels)| shape[0] == slices && channels == self.targets);
        match Stamp::verdict(Some(recorded), fingerprint) {
            Verdict::Reuse(_) if !whole => Verdict::Run {
                why: Some("its shard is not whole".into()),
            },
            verdict => verdict,
        }
    }

    /// Logs and notes what the variant reuses and what it samples (again).
    fn note(&self, run: &mut Run, verdicts: &[Verdict]) {
        let what = format!("variant-{}", self.variant);
        let reused = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Reuse(_)))
            .count();
        let again: Vec<&String> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Run { why: Some(why) } => Some(why),
                _ => None,
            })
            .collect();
        let action = match again.first() {
            Some(why) => Action::RanAgain(format!(
                "{} of {} subject(s): {why}",
                again.len(),
                verdicts.len()
            )),
            None if reused == verdicts.len() => Action::Reused,
            None => Action::Ran,
        };
        run.did(Stage::Synthesize, &what, action);
    }

    /// Removes the shards and volumes of subjects this variant does not hold now (an earlier
    /// run's split or cohort), so what is left is what this file makes.
    fn remove_others(&self, subjects: &[(&str, Vec<usize>)]) -> Result<(), RunError> {
        let keep: std::collections::BTreeSet<&str> = subjects.iter().map(|(s, _)| *s).collect();
        let volumes = self.volumes_dir();
        for entry in std::fs::read_dir(self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(subject) = name.strip_suffix(".safetensors")
                && !keep.contains(subject)
            {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
                let folder = volumes.join(subject);
                if folder.is_dir() {
                    std::fs::remove_dir_all(&folder).map_err(|e| failed(&folder, e))?;
                }
            }
        }
        Ok(())
    }

    /// `synth/variant-K/`: the variant's volumes on the subjects' grids.
    fn volumes_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .and_then(Path::parent)
            .map(|synth| synth.join(format!("variant-{}", self.variant)))
            .unwrap_or_default()
    }

    /// The subject's shard from an earlier run, read whole, when it still has the expected
    /// shape and the stamp it was judged by.
    fn resume(&self, subject: &str, slices: usize, stamp: &Stamp) -> Option<Array4<f32>> {
        let shard = self.shard(subject);
        let same = shard_metadata(&shard)
            .ok()
            .and_then(|m| m.get(STAMP).and_then(|t| Stamp::from_text(t)))
            .is_some_and(|s| s.digest == stamp.digest);
        read_shard(&shard)
            .ok()
            .filter(|(t, ch)| same && t.shape()[0] == slices && ch == self.targets)
            .map(|(t, _)| t)
    }

    /// Writes a subject: what was sampled (with its fingerprint), or the stamp of a shard an
    /// earlier run made from the same fingerprint.
    fn finish(
        &self,
        run: &mut Run,
        subject: &str,
        rows: &[usize],
        made: Made<'_>,
        manifest: &mut Vec<ManifestRow>,
    ) -> Result<(), RunError> {
        let (file, set, generator) = (self.file, self.set, self.generator);
        let started = now_rfc3339();
        let name = format!("{subject}.safetensors");
        let shard = self.shard(subject);
        let (out, stamp) = match made {
            Made::Sampled(out, fingerprint) => {
                let seed = subject_seed(file.pipeline.seed, subject, self.variant);
                let record = Record {
                    seed,
                    sampler: generator.sampler(),
                    guidance: generator.guidance(),
                    checkpoint_sha256: self.checkpoint_sha.to_owned(),
                };
                let stamp = Stamp::new(
                    fingerprint,
                    &run.config_hash,
                    serde_json::to_value(&record).unwrap_or_default(),
                );
                let meta: BTreeMap<String, String> = [
                    ("subject".to_owned(), subject.to_owned()),
                    ("seed".to_owned(), seed.to_string()),
                    ("sampler".to_owned(), record.sampler.clone()),
                    ("guidance".to_owned(), record.guidance.clone()),
                    (
                        "checkpoint_sha256".to_owned(),
                        record.checkpoint_sha256.clone(),
                    ),
                    (STAMP.to_owned(), stamp.to_text()),
                ]
                .into();
                write_shard(&shard, &out, self.targets, &meta).map_err(|e| failed(&shard, e))?;
                (out, stamp)
            }
            Made::Kept(stamp) => {
                let out = self.resume(subject, rows.len(), &stamp).ok_or_else(|| {
                    failed(&shard, "the shard changed while the run was reading it")
                })?;
                (out, stamp)
            }
        };
        // Provenance of everything made from the shard: what its stamp records.
        let record: Record = serde_json::from_value(stamp.outcome.clone())
            .map_err(|e| failed(&shard, format!("its stamp: {e}")))?;
        let seed = record.seed;
        for (n, &i) in rows.iter().enumerate() {
            let source = &set.rows[i];
            manifest.push(ManifestRow {
                shard: name.clone(),
                row: n as u32,
                channels_real: String::new(),
                channels_missing: String::new(),
                ..source.clone()
            });
        }
        // A provenance row for something sampled for this subject-variant.
        let sampled = |run: &Run, kind: &str, path: &Path| {
            run.row(Stage::Synthesize, kind, path, subject, &started)
                .map(|mut row| {
                    row.checkpoint_sha256 = record.checkpoint_sha256.clone();
                    row.sampler = record.sampler.clone();
                    row.guidance = record.guidance.clone();
                    row.seed = seed;
                    row.config_hash = stamp.config_hash.clone();
                    row.source_sha256 = set.rows[rows[0]].source_sha256.clone();
                    row
                })
        };
        let row = sampled(run, "synthetic-slices", &shard)?;
        run.record(row);
        // The volumes, back on the subject's original grid.
        let described: Vec<&ManifestRow> = rows.iter().map(|&i| &set.rows[i]).collect();
        let volumes = self.volumes_dir();
        for (c, target) in self.targets.iter().enumerate() {
            let (volume, scale) =
                to_original_grid(&out, &described, c, target).map_err(|e| failed(&shard, e))?;
            if scale == Scale::Normalized {
                tracing::info!(%subject, %target, "the subject has no {target}: written on its grid in normalized intensities");
            }
            let written = write_formats(
                &volumes,
                subject,
                target,
                &volume,
                &file.output.volume_formats(),
                &crate::volume::dicom::WriteOptions {
                    study_uid: self.source_uids.get(subject).and_then(|u| u.0.clone()),
                    frame_of_reference_uid: self.source_uids.get(subject).and_then(|u| u.1.clone()),
                    ..self.dicom.clone()
                },
                "medsynth synthetic",
            )
            .map_err(|e| failed(&volumes, e))?;
            for path in files_of(&written) {
                let row = sampled(run, "synthetic-volume", &path)?;
                run.record(row);
            }
        }
        if self.variant == 0 && file.output.attention_maps {
            self.attention(run, subject, rows, &out, &stamp, &started)?;
        }
        // The subject's label beside each variant, on the same grid, so a variant and its
        // label travel together (augmentation for segmentation training).
        if let Some(lc) = set.channels.iter().position(|c| c == LABEL) {
            let mut labels = Array4::<f32>::zeros((rows.len(), 1, out.dim().2, out.dim().3));
            for (n, &i) in rows.iter().enumerate() {
                labels
                    .slice_mut(ndarray::s![n, 0, .., ..])
                    .assign(&set.plane(i, lc).map_err(|e| failed(&shard, e))?);
            }
            let (label, _) =
                to_original_grid(&labels, &described, 0, LABEL).map_err(|e| failed(&shard, e))?;
            let formats: Vec<WriteFormat> = file
                .output
                .formats
                .iter()
                .copied()
                .filter(|f| *f == WriteFormat::Nifti)
                .collect();
            let written = write_formats(
                &volumes,
                subject,
                LABEL,
                &label,
                &formats,
                &Default::default(),
                "label of",
            )
            .map_err(|e| failed(&volumes, e))?;
            for path in files_of(&written) {
                let mut row = run.row(
                    Stage::Synthesize,
                    "synthetic-label",
                    &path,
                    subject,
                    &started,
                )?;
                row.source_sha256 = set.rows[rows[0]].source_sha256.clone();
                run.record(row);
            }
        }
        Ok(())
    }

    /// Writes the attention maps of the slices the report shows: the middle block's
    /// attention in the pass that sampled them (same seeds), for the report to draw.
    fn attention(
        &self,
        run: &mut Run,
        subject: &str,
        rows: &[usize],
        out: &Array4<f32>,
        stamp: &Stamp,
        started: &str,
    ) -> Result<(), RunError> {
        let set = self.set;
        let picks = report_positions(rows.len());
        let path = attention_maps(run.dir(), subject);
        let record: Record = serde_json::from_value(stamp.outcome.clone())
            .map_err(|e| failed(&path, format!("its stamp: {e}")))?;
        let seed = record.seed;
        let row = |run: &Run| {
            run.row(Stage::Synthesize, "attention-map", &path, subject, started)
                .map(|mut row| {
                    row.checkpoint_sha256 = record.checkpoint_sha256.clone();
                    row.config_hash = stamp.config_hash.clone();
                    row.seed = seed;
                    row
                })
        };
        // The maps of the same samples are kept.
        let kept = shard_metadata(&path)
            .ok()
            .and_then(|m| m.get(STAMP).and_then(|t| Stamp::from_text(t)))
            .is_some_and(|s| s.digest == stamp.digest);
        if kept {
            let row = row(run)?;
            run.record(row);
            return Ok(());
        }
        let picked: Vec<usize> = picks.iter().map(|&p| rows[p]).collect();
        let slices = set.gather(&picked).map_err(|e| failed(&path, e))?;
        let outs = out.select(Axis(0), &picks);
        let described: Vec<&ManifestRow> = picks.iter().map(|&p| &set.rows[rows[p]]).collect();
        let seeds: Vec<u64> = described.iter().map(|r| slice_seed(seed, r)).collect();
        let Some(result) = self.generator.attention(&slices, &described, &outs, &seeds) else {
            return Ok(());
        };
        let maps = result.map_err(|e| failed(&path, e))?.insert_axis(Axis(1));
        let meta: BTreeMap<String, String> = [
            ("subject".to_owned(), subject.to_owned()),
            (
                "slice_index".to_owned(),
                described
                    .iter()
                    .map(|r| r.slice_index.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (STAMP.to_owned(), stamp.to_text()),
        ]
        .into();
        write_shard(&path, &maps, &["attention".to_owned()], &meta)
            .map_err(|e| failed(&path, e))?;
        let row = row(run)?;
        run.record(row);
        Ok(())
    }
}

/// The shard header key of a sampled shard's [`Stamp`].
const STAMP: &str = "stamp";

/// What a subject-variant's stamp records of how it was sampled, for provenance.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    seed: u64,
    sampler: String,
    guidance: String,
    checkpoint_sha256: String,
}

/// A subject-variant's slices: sampled now from a fingerprint, or kept from an earlier run.
enum Made<'a> {
    Sampled(Array4<f32>, &'a Fingerprint),
    Kept(Stamp),
}
