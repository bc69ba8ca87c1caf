//! What the model benchmarks share: the device and image sizes they run at, chosen by
//! environment variables so one binary serves the CPU runs and the GPU script
//! (benches/gpu.sh):
//!
//! - `MEDSYNTH_BENCH_DEVICE`: `cpu` (default) or `gpu` (a build with `--features gpu`);
//! - `MEDSYNTH_BENCH_SIZES`: image sides, e.g. `128,256` (default: the bench's own);
//! - `MEDSYNTH_TORCH_DEVICE`: where the PyTorch reference runs, `cpu` (default) or `cuda`;
//! - `MEDSYNTH_TORCH_PYTHON`: the Python with torch;
//! - `MEDSYNTH_BENCH_SCRIPTS`: the folder of the reference scripts (default: benches/).
#![allow(dead_code)]

use burn::tensor::Device;
use medsynth::spec::DeviceKind;

/// The device named by `MEDSYNTH_BENCH_DEVICE`, and its name.
pub fn device() -> anyhow::Result<(Device, &'static str)> {
    let kind = match std::env::var("MEDSYNTH_BENCH_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => DeviceKind::Cpu,
        Ok("gpu") => DeviceKind::Gpu,
        Ok("cuda") => DeviceKind::Cuda,
        Ok(other) => anyhow::bail!("MEDSYNTH_BENCH_DEVICE={other:?}, expected cpu, gpu or cuda"),
    };
    Ok((medsynth::device::open(kind)?, kind.name()))
}

/// The image sides named by `MEDSYNTH_BENCH_SIZES`, else `default`.
pub fn sizes(default: &[usize]) -> anyhow::Result<Vec<usize>> {
    match std::env::var("MEDSYNTH_BENCH_SIZES") {
        Err(_) => Ok(default.to_vec()),
        Ok(s) => s
            .split(',')
            .map(|x| {
                let n: usize = x.trim().parse()?;
                anyhow::ensure!(
                    n >= 32 && n.is_power_of_two(),
                    "MEDSYNTH_BENCH_SIZES: {n} is not a power of two from 32"
                );
                Ok(n)
            })
            .collect(),
    }
}

/// UNet channel multipliers for a side: one level per halving down to 16 pixels.
pub fn levels(size: usize) -> Vec<usize> {
    let n = (size / 16).trailing_zeros() as usize;
    std::iter::once(1)
        .chain(std::iter::repeat_n(2, n))
        .collect()
}

/// Timed steps for a side: fewer as images grow.
pub fn steps(size: usize) -> usize {
    match size {
        0..=64 => 5,
        65..=128 => 3,
        _ => 2,
    }
}

/// A reference script of benches/ (`MEDSYNTH_BENCH_SCRIPTS` names the folder where the
/// binary runs away from its checkout, as benches/gpu.sh does).
pub fn script(name: &str) -> std::path::PathBuf {
    std::env::var_os("MEDSYNTH_BENCH_SCRIPTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches"))
        .join(name)
}

/// The PyTorch reference's device (`MEDSYNTH_TORCH_DEVICE`).
pub fn torch_device() -> String {
    std::env::var("MEDSYNTH_TORCH_DEVICE").unwrap_or_else(|_| "cpu".to_owned())
}

/// Waits for the device's queued work, so a timer stopped after it measures the work.
pub fn sync(device: &Device) -> anyhow::Result<()> {
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("the device failed: {e:?}"))
}
