//! The device a run computes on, for training, synthesis and evaluation alike:
//! - `cpu`: burn's `flex` backend, on every core of the worker pool, in every build;
//! - `gpu`: burn's wgpu backend (Vulkan on Linux and Windows, Metal on macOS), in builds with
//!   the `gpu` feature;
//! - `cuda`: burn's CUDA backend, in builds with the `cuda` feature.
//!
//! Each backend has its own random generator, so one seed would build different weights on
//! different devices. [`crate::models::seeded`] therefore builds every module on the CPU and
//! loads its weights onto the device: one seed gives the same model everywhere.

use burn::tensor::Device;

use crate::spec::DeviceKind;

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "train.device = \"{kind}\" needs medsynth built with `--features {kind}`; this build has {built}"
    )]
    NotBuilt { kind: &'static str, built: String },
    #[error("cannot open the {kind} device: {reason}")]
    Open { kind: &'static str, reason: String },
}

/// Opens the device `kind` names (without autodiff).
pub fn open(kind: DeviceKind) -> Result<Device, DeviceError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        DeviceKind::Gpu => gpu(),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[allow(unreachable_patterns)]
        _ => Err(DeviceError::NotBuilt {
            kind: kind.name(),
            built: DeviceKind::built()
                .into_iter()
                .map(DeviceKind::name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// How many parts a batch of `items` slices is sampled in, side by side
/// ([`crate::models::diffusion::sample_chunked`]). On the CPU: parts of about 4 slices, at least
/// one per worker thread. burn's CPU backend runs convolutions and GEMM on every thread but its
/// elementwise kernels on one, and parts in parallel fill the threads one batch leaves idle:
/// DDIM on 32 slices at 128 x 128 took 60.3 s in one part, 35.6 s in 2 and 33.1 s in 4 on two
/// threads. On a GPU: one part.
pub fn sampling_parts(device: &Device, items: usize) -> usize {
    if *device != Device::flex() {
        return 1;
    }
    (items / 4)
        .max(rayon::current_num_threads())
        .clamp(1, items.max(1))
}

/// The wgpu device: the adapter wgpu prefers (a high-power GPU first;
/// `CUBECL_WGPU_DEFAULT_DEVICE` overrides, e.g. `Cpu` for a software Vulkan driver), opened
/// once per process.
#[cfg(feature = "gpu")]
fn gpu() -> Result<Device, DeviceError> {
    static GPU: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|reason| DeviceError::Open {
            kind: "gpu",
            reason,
        })
}

/// One line per device this build can use, for `medsynth devices`: the kind, and what it
/// runs on (the CPU's worker threads; each GPU adapter by name, or why none opened).
pub fn describe() -> Vec<(DeviceKind, String)> {
    DeviceKind::built()
        .into_iter()
        .map(|kind| {
            let what = match kind {
                DeviceKind::Cpu => format!(
                    "burn flex on {} worker threads (SIMD kernels)",
                    rayon::current_num_threads()
                ),
                DeviceKind::Gpu | DeviceKind::Cuda => match open(kind) {
                    Ok(device) => adapter(&device),
                    Err(e) => format!("not available: {e}"),
                },
            };
            (kind, what)
        })
        .collect()
}

#[cfg(any(feature = "gpu", feature = "cuda"))]
fn adapter(device: &Device) -> String {
    match device.identity() {
        Some(id) => format!("{} ({:?})", id.name, device),
        None => format!("{device:?}"),
    }
}

#[cfg(not(any(feature = "gpu", feature = "cuda")))]
fn adapter(device: &Device) -> String {
    format!("{device:?}")
}
