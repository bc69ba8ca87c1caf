//! The `[train]` stage: trains the generator on the store's `train` split (validation loss on
//! `val`), checkpointing into `checkpoints/` and logging to `train_log.parquet`. A re-run
//! resumes from the newest checkpoint; a finished run is not trained again.

use std::path::PathBuf;

use burn::tensor::Device;

use super::{Run, RunError, Stage, Store, now_rfc3339};
use crate::dataset::SliceSet;
use crate::models::UnetSpec;
use crate::models::diffusion::NoiseSchedule;
use crate::spec::{DeviceKind, ModelSection, PipelineFile};
use crate::train::Checkpoints;
use crate::train::diffusion::{Conditioning, DiffusionTrainer};

/// The compute device `[train]` asks for.
pub fn device(kind: DeviceKind) -> Result<Device, String> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => {
            Err("train.device = \"cuda\" needs medsynth built with `--features cuda`".to_owned())
        }
    }
}

/// The diffusion trainer the pipeline file describes, for slices like those of `set`.
pub fn diffusion_trainer(
    file: &PipelineFile,
    model: &ModelSection,
    set: &SliceSet,
    run_dir: &std::path::Path,
) -> Result<DiffusionTrainer, String> {
    let conditioning = Conditioning::new(model, set).map_err(|e| e.to_string())?;
    let (h, w) = (set.data.shape()[2], set.data.shape()[3]);
    let spec = UnetSpec::from_model(
        model,
        conditioning.in_channels(),
        conditioning.targets.len(),
        h.min(w),
    );
    let diffusion = model.diffusion.clone().unwrap_or_default();
    Ok(DiffusionTrainer {
        spec,
        schedule: NoiseSchedule::new(&diffusion),
        conditioning,
        train: file.train.clone().unwrap_or_default(),
        seed: file.pipeline.seed,
        checkpoints: Checkpoints::new(run_dir.join("checkpoints")),
        log: run_dir.join("train_log.parquet"),
        max_steps: None,
        progress: true,
    })
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
    let trainer =
        diffusion_trainer(&file, model, &set, run.dir()).map_err(|e| fail(&run.plan.source, e))?;
    let train = file.train.clone().unwrap_or_default();
    let device = device(train.device).map_err(|e| fail(&run.plan.source, e))?;
    tracing::info!(
        slices = set.len(),
        val = val.as_ref().map_or(0, SliceSet::len),
        "training the diffusion model"
    );
    let trained = trainer
        .run(&set, val.as_ref(), &device)
        .map_err(|e| fail(&trainer.checkpoints.dir, e.to_string()))?;
    let Some(checkpoint) = trained.last_checkpoint else {
        return Err(RunError::Nothing {
            stage: Stage::Train,
            what: "training wrote no checkpoint (zero steps: check train.epochs)".into(),
        });
    };
    // Only the newest checkpoint is listed: older ones are rotated away.
    run.forget(|artifact| artifact.starts_with("checkpoints/"));
    for part in ["model.bpk", "ema.bpk", "optimizer.bpk", "state.json"] {
        let row = run.row(
            Stage::Train,
            "checkpoint",
            &checkpoint.join(part),
            "",
            &started,
        )?;
        run.record(row);
    }
    if trainer.log.is_file() {
        let row = run.row(Stage::Train, "train-log", &trainer.log, "", &started)?;
        run.record(row);
    }
    run.save_provenance()?;
    Ok(checkpoint)
}
