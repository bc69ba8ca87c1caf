//! The `[train]` stage: trains the generator on the store's `train` split (validation loss on
//! `val`), checkpointing into `checkpoints/` and logging to `train_log.parquet`. A re-run
//! resumes from the newest checkpoint; a finished run is not trained again.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::dataset::SliceSet;
use crate::pipeline::model::{device, diffusion_trainer, gan_trainer};
use crate::pipeline::{Run, RunError, Stage, Store, now_rfc3339};
use crate::spec::{ModelKind, ModelSection, PipelineFile};
use crate::train::TrainError;

/// What a trainer left: the newest checkpoint, its parts, and the log.
struct Outcome {
    checkpoint: Option<PathBuf>,
    parts: &'static [&'static str],
    log: PathBuf,
}

/// Trains the model the pipeline file describes.
fn train(
    file: &PipelineFile,
    model: &ModelSection,
    set: &SliceSet,
    val: Option<&SliceSet>,
    run_dir: &std::path::Path,
    device: &Device,
) -> Result<Outcome, (PathBuf, String)> {
    let source = run_dir.to_owned();
    let failed = |dir: &std::path::Path, e: TrainError| (dir.to_owned(), e.to_string());
    match model.kind {
        ModelKind::Diffusion => {
            let trainer = diffusion_trainer(file, model, set, run_dir).map_err(|e| (source, e))?;
            tracing::info!(slices = set.len(), "training the diffusion model");
            let trained = trainer
                .run(set, val, device)
                .map_err(|e| failed(&trainer.checkpoints.dir, e))?;
            Ok(Outcome {
                checkpoint: trained.last_checkpoint,
                parts: &crate::train::diffusion::PARTS,
                log: trainer.log,
            })
        }
        ModelKind::Sagan => {
            let trainer = gan_trainer(file, model, set, run_dir).map_err(|e| (source, e))?;
            tracing::info!(slices = set.len(), "training the self-attention GAN");
            let trained = trainer
                .run(set, val, device)
                .map_err(|e| failed(&trainer.checkpoints.dir, e))?;
            Ok(Outcome {
                checkpoint: trained.last_checkpoint,
                parts: &crate::train::gan::PARTS,
                log: trainer.log,
            })
        }
    }
}

/// Runs the stage; returns the checkpoint folder synthesis should use.
pub fn run(run: &mut Run, store: &Store) -> Result<PathBuf, RunError> {
    let file = run.plan.file.clone();
    let Some(model) = &file.model else {
        return Err(RunError::Nothing {
            stage: Stage::Train,
            what: "[train] needs a [model] section".into(),
        });
    };
    if let Some(c) = &model.checkpoint {
        // Apply-only run: the given checkpoint replaces training.
        let path = run.resolve(c);
        tracing::info!(checkpoint = %path.display(), "model.checkpoint given; not training");
        return Ok(path);
    }
    let started = now_rfc3339();
    let fail = |path: &std::path::Path, e: String| RunError::failed(Stage::Train, path, e);
    let set =
        SliceSet::load(&store.dir, Some("train")).map_err(|e| fail(&store.dir, e.to_string()))?;
    let val = SliceSet::load(&store.dir, Some("val")).ok();
    let train_section = file.train.clone().unwrap_or_default();
    let device = device(train_section.device).map_err(|e| fail(&run.plan.source, e))?;
    tracing::info!(
        val = val.as_ref().map_or(0, SliceSet::len),
        "validation slices"
    );
    let outcome = train(&file, model, &set, val.as_ref(), run.dir(), &device)
        .map_err(|(path, e)| fail(&path, e))?;
    let Some(checkpoint) = outcome.checkpoint else {
        return Err(RunError::Nothing {
            stage: Stage::Train,
            what: "training wrote no checkpoint (zero steps: check train.epochs)".into(),
        });
    };
    // Only the newest checkpoint is listed: older ones are rotated away.
    run.forget(|artifact| artifact.starts_with("checkpoints/"));
    for part in outcome.parts {
        let row = run.row(
            Stage::Train,
            "checkpoint",
            &checkpoint.join(part),
            "",
            &started,
        )?;
        run.record(row);
    }
    if outcome.log.is_file() {
        let row = run.row(Stage::Train, "train-log", &outcome.log, "", &started)?;
        run.record(row);
    }
    run.save_provenance()?;
    Ok(checkpoint)
}
