//! The `[synthesize]` stage: the trained generator produces the target modalities for every
//! slice of the chosen split, `variants` times with recorded seeds.
//!
//! Each variant is written as a slice store of its own, `synth/slices/variant-K/` (one
//! safetensors shard per subject, channels = the targets, and a `manifest.parquet` whose rows
//! carry the source slices' positions and preprocessing records), so what reads the real
//! store reads the synthetic one. A subject whose shard is already there is not sampled again:
//! an interrupted run resumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array4, Axis};

use super::train::{device, diffusion_trainer, gan_trainer};
use super::write::{files_of, write_formats};
use super::{Run, RunError, Stage, Store, now_rfc3339, sha256_file};
use crate::dataset::{ManifestRow, SliceSet, read_shard, write_manifest, write_shard};
use crate::models::UnetSpec;
use crate::models::gan::GanSpec;
use crate::preprocess::LABEL;
use crate::spec::{ModelKind, NormalizeMethod, PipelineFile, SplitName, WriteFormat};
use crate::synth::diffusion::sampling;
use crate::synth::volumes::{Scale, to_original_grid};
use crate::synth::{DiffusionGenerator, Generator, SaganGenerator, load_weights, unit_seed};
use crate::train::CheckpointState;
use crate::train::gan::SliceClasses;

/// What the stage wrote.
#[derive(Debug, Clone)]
pub struct Synthesized {
    /// `synth/slices/variant-K/` per variant.
    pub variants: Vec<PathBuf>,
    pub slices: usize,
}

/// The data range x̂0 may be clamped to: the normalization range when it bounds the data.
pub fn clip_range(file: &PipelineFile) -> Option<[f32; 2]> {
    let n = &file.preprocess.normalize;
    match n.method {
        NormalizeMethod::Percentile | NormalizeMethod::Minmax => {
            let [a, b] = n.range;
            Some([a.min(b) as f32, a.max(b) as f32])
        }
        NormalizeMethod::Zscore | NormalizeMethod::None => None,
    }
}

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Synthesize, path, e.to_string())
}

/// Loads the generator of the checkpoint folder `checkpoint` as the pipeline file describes it,
/// for slices like those of `set`.
pub fn generator(
    file: &PipelineFile,
    set: &SliceSet,
    checkpoint: &Path,
    run_dir: &Path,
) -> Result<Box<dyn Generator>, RunError> {
    let Some(model) = &file.model else {
        return Err(RunError::Nothing {
            stage: Stage::Synthesize,
            what: "[synthesize] needs a [model] section".into(),
        });
    };
    let state_path = checkpoint.join("state.json");
    let state: CheckpointState = std::fs::read_to_string(&state_path)
        .map_err(|e| {
            failed(
                &state_path,
                format!("cannot read the checkpoint state: {e}"),
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| failed(&state_path, e)))?;
    let device = device(file.train.clone().unwrap_or_default().device)
        .map_err(|e| failed(&state_path, e))?;
    let label_classes = state.extra["label_classes"].as_u64().map(|k| k as usize);
    let mismatch = |saved: &dyn std::fmt::Debug, spec: &dyn std::fmt::Debug| {
        failed(
            &state_path,
            format!(
                "the checkpoint holds a network of shape {saved:?}, the pipeline file describes {spec:?}; \
                 use the [model] settings it was trained with"
            ),
        )
    };
    let section = file.synthesize.clone().unwrap_or_default();
    match model.kind {
        ModelKind::Diffusion => {
            let trainer =
                diffusion_trainer(file, model, set, run_dir).map_err(|e| failed(checkpoint, e))?;
            let mut conditioning = trainer.conditioning;
            if let (Some((ch, _)), Some(k)) = (conditioning.label, label_classes) {
                conditioning.label = Some((ch, k));
            }
            let spec = UnetSpec {
                in_channels: conditioning.in_channels(),
                ..trainer.spec
            };
            if let Ok(saved) = serde_json::from_value::<UnetSpec>(state.extra["unet"].clone())
                && saved != spec
            {
                return Err(mismatch(&saved, &spec));
            }
            let net =
                load_weights(spec.init(&device), checkpoint).map_err(|e| failed(checkpoint, e))?;
            let (sampler, guidance) = sampling(&section);
            Ok(Box::new(DiffusionGenerator {
                net,
                schedule: trainer.schedule,
                conditioning,
                sampler,
                guidance,
                clip: clip_range(file),
                device,
            }))
        }
        ModelKind::Sagan => {
            let trainer =
                gan_trainer(file, model, set, run_dir).map_err(|e| failed(checkpoint, e))?;
            let mut inputs = trainer.inputs;
            if let (Some((ch, _)), Some(k)) = (inputs.conditioning.label, label_classes) {
                inputs.conditioning.label = Some((ch, k));
            }
            inputs.spec.in_channels =
                inputs.conditioning.cond_channels() + inputs.spec.noise_channels;
            if let Ok(saved) = serde_json::from_value::<GanSpec>(state.extra["gan"].clone())
                && saved != inputs.spec
            {
                return Err(mismatch(&saved, &inputs.spec));
            }
            let net = load_weights(inputs.spec.generator(&device), checkpoint)
                .map_err(|e| failed(checkpoint, e))?;
            Ok(Box::new(SaganGenerator {
                net,
                classes: SliceClasses::new(&set.rows, inputs.spec.classes),
                inputs,
                truncation: section.truncation,
                device,
            }))
        }
    }
}

/// Runs the stage with the checkpoint folder `checkpoint`.
pub fn run(run: &mut Run, store: &Store, checkpoint: &Path) -> Result<Synthesized, RunError> {
    let file = run.plan.file.clone();
    let section = file.synthesize.clone().unwrap_or_default();
    let split = match section.split {
        SplitName::All => None,
        s => Some(s.as_str()),
    };
    let set = SliceSet::load(&store.dir, split).map_err(|e| failed(&store.dir, e))?;
    let generator = generator(&file, &set, checkpoint, run.dir())?;
    let checkpoint_sha = sha256_file(&checkpoint.join("ema.bpk")).unwrap_or_default();
    let targets = generator.targets();

    // Rows of each subject, in store order.
    let mut subjects: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in set.rows.iter().enumerate() {
        subjects.entry(r.subject.as_str()).or_default().push(i);
    }
    let total = subjects.len() * section.variants.max(1) as usize;
    let bar = ProgressBar::new(set.len() as u64 * section.variants.max(1) as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} synthesize {pos}/{len} slices [{elapsed_precise}<{eta_precise}] {wide_bar} {msg}",
        )
        .expect("the template is valid"),
    );
    tracing::info!(
        subjects = subjects.len(),
        slices = set.len(),
        variants = section.variants,
        sampler = %generator.sampler(),
        guidance = %generator.guidance(),
        "synthesizing"
    );
    let mut variants = Vec::new();
    let mut done = 0usize;
    for v in 0..section.variants.max(1) {
        let dir = run
            .dir()
            .join("synth")
            .join("slices")
            .join(format!("variant-{v}"));
        std::fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
        let mut manifest = Vec::new();
        for (subject, rows) in &subjects {
            let started = now_rfc3339();
            let name = format!("{subject}.safetensors");
            let shard = dir.join(&name);
            let seed = unit_seed(file.pipeline.seed, &format!("synth/{subject}/variant-{v}"));
            let complete = read_shard(&shard)
                .ok()
                .filter(|(t, ch)| t.shape()[0] == rows.len() && *ch == targets);
            let out = if let Some((t, _)) = complete {
                bar.inc(rows.len() as u64);
                t
            } else {
                let (_, c, h, w) = set.data.dim();
                let mut out = Array4::<f32>::zeros((rows.len(), targets.len(), h, w));
                for (b, chunk) in rows.chunks(section.batch_size.max(1) as usize).enumerate() {
                    let mut batch = Array4::<f32>::zeros((chunk.len(), c, h, w));
                    for (n, &i) in chunk.iter().enumerate() {
                        batch
                            .index_axis_mut(Axis(0), n)
                            .assign(&set.data.index_axis(Axis(0), i));
                    }
                    let described: Vec<&ManifestRow> =
                        chunk.iter().map(|&i| &set.rows[i]).collect();
                    let fake = generator
                        .generate(&batch, &described, unit_seed(seed, &b.to_string()))
                        .map_err(|e| failed(checkpoint, e))?;
                    let at = b * section.batch_size.max(1) as usize;
                    out.slice_mut(ndarray::s![at..at + chunk.len(), .., .., ..])
                        .assign(&fake);
                    bar.inc(chunk.len() as u64);
                }
                let meta: BTreeMap<String, String> = [
                    ("subject".to_owned(), (*subject).to_owned()),
                    ("seed".to_owned(), seed.to_string()),
                    ("sampler".to_owned(), generator.sampler()),
                    ("guidance".to_owned(), generator.guidance()),
                    ("checkpoint_sha256".to_owned(), checkpoint_sha.clone()),
                ]
                .into();
                write_shard(&shard, &out, &targets, &meta).map_err(|e| failed(&shard, e))?;
                out
            };
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
                        row.checkpoint_sha256 = checkpoint_sha.clone();
                        row.sampler = generator.sampler();
                        row.guidance = generator.guidance();
                        row.seed = seed;
                        row.source_sha256 = set.rows[rows[0]].source_sha256.clone();
                        row
                    })
            };
            let row = sampled(run, "synthetic-slices", &shard)?;
            run.record(row);
            // The volumes, back on the subject's original grid.
            let described: Vec<&ManifestRow> = rows.iter().map(|&i| &set.rows[i]).collect();
            let volumes = run.dir().join("synth").join(format!("variant-{v}"));
            for (c, target) in targets.iter().enumerate() {
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
                    &file.output.formats,
                    file.output.dicom_uid_root.as_deref(),
                    "medsynth synthetic",
                )
                .map_err(|e| failed(&volumes, e))?;
                for path in files_of(&written) {
                    let row = sampled(run, "synthetic-volume", &path)?;
                    run.record(row);
                }
            }
            // The subject's label beside each variant, on the same grid, so a variant and its
            // label travel together (augmentation for segmentation training).
            if let Some(lc) = set.channels.iter().position(|c| c == LABEL) {
                let mut labels = Array4::<f32>::zeros((rows.len(), 1, out.dim().2, out.dim().3));
                for (n, &i) in rows.iter().enumerate() {
                    labels
                        .slice_mut(ndarray::s![n, 0, .., ..])
                        .assign(&set.data.slice(ndarray::s![i, lc, .., ..]));
                }
                let (label, _) = to_original_grid(&labels, &described, 0, LABEL)
                    .map_err(|e| failed(&shard, e))?;
                let formats: Vec<WriteFormat> = file
                    .output
                    .formats
                    .iter()
                    .copied()
                    .filter(|f| *f == WriteFormat::Nifti)
                    .collect();
                let written =
                    write_formats(&volumes, subject, LABEL, &label, &formats, None, "label of")
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
            done += 1;
            bar.set_message(format!("{done}/{total} subject-variants"));
        }
        let path = dir.join("manifest.parquet");
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
        variants.push(dir);
    }
    bar.finish_and_clear();
    Ok(Synthesized {
        variants,
        slices: set.len(),
    })
}
