//! Training: one loop ([`engine`]) with checkpoints that resume exactly, an exponential
//! moving average of the weights, the learning-rate warm-up, the loss log
//! (`train_log.parquet`) and the non-finite loss guard, and the networks it trains, each
//! supplying only its step: the diffusion model ([`diffusion`]), the self-attention GAN
//! ([`gan`]) and the supervised UNets ([`supervised`]: baseline-unet, segmentation).

mod checkpoint;
pub mod diffusion;
mod ema;
pub mod engine;
pub mod gan_loss;
mod log;
pub mod regression;
pub mod supervised;

pub use checkpoint::{CheckpointState, Checkpoints};
pub use ema::Ema;
pub use log::{LogRow, read_log, write_log};

pub mod gan;

use std::path::{Path, PathBuf};

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;

use crate::fingerprint::{Keys, changes, describe};
use crate::progress::Progress;
use crate::spec::{OptimizerKind, TrainSection};

/// The parts of a checkpoint folder of one network with its moving average.
pub const PARTS: [&str; 4] = ["model.bpk", "ema.bpk", "optimizer.bpk", "state.json"];

/// SplitMix64 of a seed and a stream number: the seed of step `s`'s random draws.
pub(crate) fn stream(seed: u64, s: u64) -> u64 {
    let mut z = seed ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The optimizer `[train]` asks for, with Adam's `betas`.
pub(crate) fn optimizer(train: &TrainSection, betas: [f64; 2]) -> ModuleOptimizer {
    let clip = train
        .grad_clip
        .map(|c| GradientClippingConfig::Norm(c as f32));
    let [b1, b2] = betas.map(|b| b as f32);
    match train.optimizer {
        OptimizerKind::Adam => {
            let mut cfg = AdamConfig::new()
                .with_beta_1(b1)
                .with_beta_2(b2)
                .with_epsilon(1e-8);
            if train.weight_decay > 0.0 {
                cfg = cfg.with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
                    train.weight_decay as f32,
                )));
            }
            cfg.with_grad_clipping(clip).init()
        }
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(b1)
            .with_beta_2(b2)
            .with_epsilon(1e-8)
            .with_weight_decay(train.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
    }
}

fn record_err(path: &Path, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Io {
        path: path.to_owned(),
        what: format!("{e:?}"),
    }
}

/// Loads the part `name` of the checkpoint folder `dir` into `module`.
pub(crate) fn load_part<M: Module>(module: M, dir: &Path, name: &str) -> Result<M, TrainError> {
    let path = dir.join(name);
    let record = ModuleRecord::load(&path).map_err(|e| record_err(&path, e))?;
    module
        .try_load_record(record)
        .map_err(|e| record_err(&path, format!("does not fit this model: {e:?}")))
}

/// Loads the optimizer state `name` of the checkpoint folder `dir`.
pub(crate) fn load_optimizer(
    optim: ModuleOptimizer,
    dir: &Path,
    name: &str,
) -> Result<ModuleOptimizer, TrainError> {
    let path = dir.join(name);
    let record = OptimizerRecord::load(&path).map_err(|e| record_err(&path, e))?;
    Ok(optim.load_record(record))
}

/// Saves `module` as the part `name` of the checkpoint folder being written.
pub(crate) fn save_part<M: Module + Clone>(
    module: &M,
    dir: &Path,
    name: &str,
) -> Result<(), String> {
    module
        .clone()
        .into_record()
        .save(dir.join(name))
        .map_err(|e| format!("{name}: {e:?}"))
}

/// Saves optimizer state as the part `name`.
pub(crate) fn save_optimizer(
    optim: &ModuleOptimizer,
    dir: &Path,
    name: &str,
) -> Result<(), String> {
    optim
        .to_record()
        .save(dir.join(name))
        .map_err(|e| format!("{name}: {e:?}"))
}

/// What of `[train]` a resumed run must share with the checkpoint: everything but how long to
/// train, how often to checkpoint and on which device, with the learning rate and betas
/// resolved (`lr`, `betas`: so an explicit default equals an omitted one).
pub(crate) fn resumable(train: &TrainSection, lr: f64, betas: [f64; 2]) -> serde_json::Value {
    let resolved = TrainSection {
        lr: Some(lr),
        betas: Some(betas),
        ..train.clone()
    };
    let mut v = serde_json::to_value(resolved).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        for key in ["epochs", "max_steps", "checkpoint_every", "device"] {
            map.remove(key);
        }
    }
    v
}

/// Where training resumes: the newest checkpoint, when it was trained with this seed and these
/// settings (`extra` as the trainer records it, the digest of its training data among them;
/// settings a checkpoint does not record are not compared, so older checkpoints still resume).
///
/// A checkpoint trained otherwise is never mixed with this run: a log line names what
/// changed, the old checkpoints and the loss log `log` are removed, and training starts again
/// from step 0 (`None`).
pub(crate) fn resume_point(
    checkpoints: &Checkpoints,
    log: &Path,
    seed: u64,
    extra: &serde_json::Value,
) -> Result<Option<(PathBuf, CheckpointState)>, TrainError> {
    let Some((dir, state)) = checkpoints.latest()? else {
        return Ok(None);
    };
    let mut changed = Vec::new();
    if state.seed != seed {
        changed.push("pipeline.seed".to_owned());
    }
    changed.extend(changes(&state.extra, extra, Keys::Recorded));
    if changed.is_empty() {
        return Ok(Some((dir, state)));
    }
    tracing::warn!(
        checkpoint = %dir.display(),
        "{}: training again from step 0 (the checkpoints trained before are replaced)",
        describe(&changed)
    );
    checkpoints.clear()?;
    if log.exists() {
        std::fs::remove_file(log).map_err(|e| TrainError::Io {
            path: log.to_owned(),
            what: e.to_string(),
        })?;
    }
    Ok(None)
}

/// Training progress (hidden when `show` is false).
pub(crate) fn progress_bar(show: bool, total: u64) -> Progress {
    if !show {
        return Progress::hidden();
    }
    Progress::new("train", "steps", total)
}

/// The learning rate at optimizer step `step` (0-based): linear warm-up over `warmup` steps,
/// then constant.
pub fn warmup_lr(base: f64, warmup: u32, step: u64) -> f64 {
    if warmup == 0 {
        base
    } else {
        base * ((step + 1) as f64 / warmup as f64).min(1.0)
    }
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "the loss became {loss} at step {step}; training stopped and the last good checkpoint is kept{}",
        checkpoint.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_else(|| " (none written yet)".to_owned())
    )]
    NonFinite {
        step: u64,
        loss: f64,
        checkpoint: Option<PathBuf>,
    },
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
    #[error("{0}")]
    Setup(String),
    /// Reading the slice store failed.
    #[error(transparent)]
    Store(#[from] crate::dataset::StoreError),
}
