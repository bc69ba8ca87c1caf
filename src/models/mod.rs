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
pub mod gan;
mod guidance;
pub mod sagan;
pub mod spectral;
mod unet;

pub use attention::{SelfAttention, SelfAttentionConfig, relative_index};
pub use embedding::{TimeEmbedding, timestep_embedding};
pub use guidance::{Guidance, attention_grid, blur, guided_output, received_attention, sag_mask};
pub use unet::{Unet, UnetOutput, UnetSpec};

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

static INIT: Mutex<()> = Mutex::new(());

/// Reads every float parameter once, which makes burn run its lazy initialisers.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Builds a module (`build` on the device it is given) with the CPU's generator seeded by
/// `seed`. burn initialises parameters lazily, on first use; every parameter is materialised
/// here, in a fixed order, while a process-wide lock keeps other seeded builds from drawing
/// from the generator in between.
///
/// Each backend has its own generator, so on any other device the module is built on the CPU
/// and its record (weights and saved state) loaded onto `device`: one seed, one model, on
/// every device.
pub fn seeded<M: Module>(device: &Device, seed: u64, build: impl Fn(&Device) -> M) -> M {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = Device::flex();
    if *device == cpu {
        device.seed(seed);
        let module = build(device);
        module.visit(&mut Materialize);
        return module;
    }
    let cpu = if device.is_autodiff() {
        cpu.autodiff()
    } else {
        cpu
    };
    cpu.seed(seed);
    let module = build(&cpu);
    module.visit(&mut Materialize);
    build(device).load_record(module.into_record())
}
