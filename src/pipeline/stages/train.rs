//! The `[train]` stage: trains the generator on the store's `train` split (validation loss on
//! `val`), checkpointing into `checkpoints/` and logging to `train_log.parquet`. A re-run
//! resumes from the newest checkpoint when it was trained with the same seed, settings and
//! data (raising `train.epochs` trains on); a finished run is not trained again; a checkpoint
//! trained otherwise is replaced by training again ([`crate::train`] decides, each checkpoint
//! records its fingerprint). `.train.stamp.json` in the run folder names the run that made the
//! newest checkpoint, for its provenance when a later run reuses it.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::dataset::SliceSet;
use crate::fingerprint::{Fingerprint, Keys, Stamp, Verdict, changes, describe};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Action;
use crate::pipeline::handoff::Store;
use crate::pipeline::model::{diffusion_trainer, gan_trainer};
use crate::pipeline::stage::Stage;
use crate::provenance::{now_rfc3339, sha256_file};
use crate::spec::{ModelKind, ModelSection, PipelineFile};
use crate::train::{CheckpointState, Checkpoints, TrainError};

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
    let device = run.device(Stage::Train)?;
    tracing::info!(
        val = val.as_ref().map_or(0, SliceSet::len),
        "validation slices"
    );
    let checkpoints = Checkpoints::new(run.dir().join("checkpoints"));
    let before = newest(&checkpoints);
    let outcome = train(&file, model, &set, val.as_ref(), run.dir(), &device)
        .map_err(|(path, e)| fail(&path, e))?;
    let Some(checkpoint) = outcome.checkpoint else {
        return Err(RunError::Nothing {
            stage: Stage::Train,
            what: "training wrote no checkpoint (zero steps: check train.epochs)".into(),
        });
    };
    let after = newest(&checkpoints);
    let stamp_path = run.dir().join(STAMP_FILE);
    let made = after.as_ref().map(|(_, f)| f);
    let config_hash = match (&before, made) {
        (Some((_, b)), Some(a)) if b == a => {
            run.did(Stage::Train, "model", Action::Reused);
            match made.map(|a| Stamp::verdict(Stamp::read(&stamp_path), a)) {
                Some(Verdict::Reuse(stamp)) => stamp.config_hash,
                _ => run.config_hash.clone(),
            }
        }
        (before, _) => {
            run.did(
                Stage::Train,
                "model",
                trained(before.as_ref(), after.as_ref()),
            );
            run.config_hash.clone()
        }
    };
    if let Some(fingerprint) = made {
        Stamp::new(fingerprint, &config_hash, serde_json::Value::Null)
            .write(&stamp_path)
            .map_err(|e| fail(&stamp_path, e.to_string()))?;
    }
    // Only the newest checkpoint is listed: older ones are rotated away.
    run.forget(|artifact| artifact.starts_with("checkpoints/"));
    for part in outcome.parts {
        let mut row = run.row(
            Stage::Train,
            "checkpoint",
            &checkpoint.join(part),
            "",
            &started,
        )?;
        row.config_hash = config_hash.clone();
        run.record(row);
    }
    if outcome.log.is_file() {
        let mut row = run.row(Stage::Train, "train-log", &outcome.log, "", &started)?;
        row.config_hash = config_hash;
        run.record(row);
    }
    run.save_provenance()?;
    Ok(checkpoint)
}

/// The run folder's record of which run made the newest checkpoint.
const STAMP_FILE: &str = ".train.stamp.json";

/// The newest checkpoint and what identifies it: its folder, state and EMA weights' digest.
fn newest(checkpoints: &Checkpoints) -> Option<(CheckpointState, Fingerprint)> {
    let (dir, state) = checkpoints.latest().ok()??;
    let ema = sha256_file(&dir.join("ema.bpk")).ok()?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let fingerprint = Fingerprint::new(serde_json::json!({
        "checkpoint": name,
        "state": state,
        "ema_sha256": ema,
    }));
    Some((state, fingerprint))
}

/// What training did, from the newest checkpoint before and after it.
fn trained(
    before: Option<&(CheckpointState, Fingerprint)>,
    after: Option<&(CheckpointState, Fingerprint)>,
) -> Action {
    match (before, after) {
        (Some((b, _)), Some((a, _))) => {
            let mut changed = changes(&b.extra, &a.extra, Keys::Recorded);
            if b.seed != a.seed {
                changed.push("pipeline.seed".into());
            }
            if changed.is_empty() && a.step > b.step {
                Action::RanAgain(format!(
                    "trained on from step {} to step {}",
                    b.step, a.step
                ))
            } else {
                Action::RanAgain(format!("trained again from step 0: {}", describe(&changed)))
            }
        }
        _ => Action::Ran,
    }
}
