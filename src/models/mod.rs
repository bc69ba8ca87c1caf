//! The generators' building blocks in burn: the sinusoidal time embedding, self-attention
//! (multi-head, and DiffiT's time-dependent variant) with readable attention maps, and the
//! attention UNet. Diffusion (schedules, objective, samplers) lives in [`diffusion`].
//!
//! Weight initialisation is seeded: [`seeded`] holds a process-wide lock while the device's
//! generator is seeded and a module is built, so two models built with one seed are equal even
//! when other threads build models at the same time.

mod attention;
pub mod diffusion;
mod embedding;
mod unet;

pub use attention::{SelfAttention, SelfAttentionConfig};
pub use embedding::{TimeEmbedding, timestep_embedding};
pub use unet::{Unet, UnetOutput, UnetSpec};

use std::sync::Mutex;

use burn::tensor::Device;

static INIT: Mutex<()> = Mutex::new(());

/// Builds a module with the device's generator seeded by `seed`, holding a process-wide lock
/// so no other seeded build interleaves.
pub fn seeded<M>(device: &Device, seed: u64, build: impl FnOnce() -> M) -> M {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    build()
}
