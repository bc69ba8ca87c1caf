//! `medsynth devices`: the compute devices this build can use.

use std::process::ExitCode;

use clap::Args;
use medsynth::spec::DeviceKind;

/// List the devices this build can use for `train.device`: `cpu` always (burn's flex backend
/// on the worker threads), `gpu` in builds with `--features gpu` (burn's wgpu backend: Vulkan
/// on Linux and Windows, Metal on macOS), `cuda` with `--features cuda`. A GPU kind is
/// opened to name its adapter, or to say why it cannot be used. Kinds this build lacks are
/// listed with the feature that adds them.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth devices\n  CUBECL_WGPU_DEFAULT_DEVICE=Cpu medsynth devices   # a software Vulkan driver (lavapipe)"
)]
pub struct DevicesArgs {}

pub fn run(_: DevicesArgs) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    for (kind, what) in medsynth::device::describe() {
        text.push_str(&format!("{:<5} {what}\n", kind.name()));
    }
    for kind in [DeviceKind::Gpu, DeviceKind::Cuda] {
        if !kind.is_built() {
            text.push_str(&format!(
                "{:<5} not in this build (cargo build --release --features {})\n",
                kind.name(),
                kind.name()
            ));
        }
    }
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
