//! Training infrastructure shared by every generator: checkpoints that resume exactly, an
//! exponential moving average of the weights, the learning-rate warm-up, the loss log
//! (`train_log.parquet`) and the non-finite loss guard. [`diffusion`] is the diffusion trainer
//! built on it; the self-attention GAN reuses the same pieces.

mod checkpoint;
pub mod diffusion;
mod ema;
pub mod gan_loss;
mod log;

pub use checkpoint::{CheckpointState, Checkpoints};
pub use ema::Ema;
pub use log::{LogRow, read_log, write_log};

use std::path::PathBuf;

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
}
