//! Diffusion speed on the CPU beside the same UNet in PyTorch (benches/diffusion_reference.py):
//! training steps per second (Adam, MSE, batch 8, translation input: noisy target + one
//! condition + its mask) and DDIM sampling time per slice, at 64 x 64 and 128 x 128.
//!
//!   cargo bench --bench diffusion     (MEDSYNTH_TORCH_PYTHON names a Python with torch)
//!
//! Both sides print their parameter count, which must agree (same architecture). The device
//! and sizes are chosen by environment variables (benches/common: `MEDSYNTH_BENCH_DEVICE`,
//! `MEDSYNTH_BENCH_SIZES`, `MEDSYNTH_TORCH_DEVICE`); benches/gpu.sh runs it on a GPU.
//!
//! For the benchmark suite (benches/run) it measures one side only and prints JSON lines:
//! `MEDSYNTH_BENCH_WORKER=train` times training and sampling at each size;
//! `MEDSYNTH_BENCH_WORKER=volume:N` times sampling one volume of N slices (DDIM 10 steps,
//! batches of 16, as `[synthesize]` does).

mod common;

use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use medsynth::device::sampling_parts;
use medsynth::models::diffusion::{NoiseSchedule, Sampler, gaussian, sample_chunked};
use medsynth::models::{UnetSpec, seeded};
use medsynth::spec::DiffusionConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 8;
const SAMPLE_STEPS: usize = 5;

fn spec(size: usize, mult: &[usize], attention: usize) -> UnetSpec {
    UnetSpec {
        in_channels: 3,
        out_channels: 1,
        base_channels: 32,
        channel_mult: mult.to_vec(),
        res_blocks: 1,
        groups: 8,
        dropout: 0.0,
        heads: 4,
        time_dependent: true,
        attention_resolutions: vec![attention],
        image_size: size,
        window: None,
    }
}

fn measure(
    device: &Device,
    size: usize,
    mult: &[usize],
    attention: usize,
    train_steps: usize,
) -> anyhow::Result<(usize, f64, f64)> {
    let device = device.clone();
    let ad = device.clone().autodiff();
    let mut net = seeded(&ad, 0, |ad| spec(size, mult, attention).init(ad));
    let params = net.num_params();
    let mut optim = AdamConfig::new().init();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = gaussian([BATCH, 3, size, size], &mut rng, &ad);
    let target = gaussian([BATCH, 1, size, size], &mut rng, &ad);
    let t: Vec<f32> = (0..BATCH).map(|i| (i * 123 % 1000) as f32).collect();
    let mut step = |net: medsynth::models::Unet| {
        let out = net.forward(x.clone(), &t).output;
        let loss = (out - target.clone()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        optim.step(1e-4, net, grads)
    };
    net = step(net);
    common::sync(&ad)?;
    let start = Instant::now();
    for _ in 0..train_steps {
        net = step(net);
    }
    common::sync(&ad)?;
    let train_rate = train_steps as f64 / start.elapsed().as_secs_f64();

    let net = net.valid();
    let schedule = NoiseSchedule::new(&DiffusionConfig::default());
    let cond: Tensor<4> = gaussian([BATCH, 2, size, size], &mut rng, &device);
    let _ = net.forward(
        Tensor::cat(vec![cond.clone().narrow(1, 0, 1), cond.clone()], 1),
        &t,
    );
    common::sync(&device)?;
    let start = Instant::now();
    let seeds: Vec<u64> = (0..BATCH as u64).collect();
    let _ = sample_chunked(
        &schedule,
        Sampler::Ddim {
            steps: SAMPLE_STEPS,
            eta: 0.0,
        },
        None,
        [1, size, size],
        &seeds,
        sampling_parts(&device, BATCH),
        &device,
        |x_t, step, items| {
            let times = vec![step as f32; items.len()];
            let cond = cond.clone().narrow(0, items.start, items.len());
            net.forward(Tensor::cat(vec![x_t, cond], 1), &times).output
        },
    );
    common::sync(&device)?;
    let per_slice = start.elapsed().as_secs_f64() / BATCH as f64;
    Ok((params, train_rate, per_slice))
}

/// Volume sampling as `[synthesize]` runs it: DDIM steps and batch size.
const VOLUME_STEPS: usize = 10;
const VOLUME_BATCH: usize = 16;

/// Seconds to sample a volume of `slices` slices at `size`, `VOLUME_BATCH` at a time.
fn sample_volume(device: &Device, size: usize, slices: usize) -> anyhow::Result<(usize, f64)> {
    let (mult, attention) = (common::levels(size), 16);
    let net = seeded(device, 0, |d| spec(size, &mult, attention).init(d));
    let params = net.num_params();
    let schedule = NoiseSchedule::new(&DiffusionConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let cond: Tensor<4> = gaussian([VOLUME_BATCH, 2, size, size], &mut rng, device);
    let t = vec![0.0; VOLUME_BATCH];
    let _ = net.forward(
        Tensor::cat(vec![cond.clone().narrow(1, 0, 1), cond.clone()], 1),
        &t,
    );
    common::sync(device)?;
    let start = Instant::now();
    for first in (0..slices).step_by(VOLUME_BATCH) {
        let n = VOLUME_BATCH.min(slices - first);
        let seeds: Vec<u64> = (first as u64..(first + n) as u64).collect();
        let _ = sample_chunked(
            &schedule,
            Sampler::Ddim {
                steps: VOLUME_STEPS,
                eta: 0.0,
            },
            None,
            [1, size, size],
            &seeds,
            sampling_parts(device, n),
            device,
            |x_t, step, items| {
                let times = vec![step as f32; items.len()];
                let cond = cond.clone().narrow(0, items.start, items.len());
                net.forward(Tensor::cat(vec![x_t, cond], 1), &times).output
            },
        );
    }
    common::sync(device)?;
    Ok((params, start.elapsed().as_secs_f64()))
}

/// One side of the benchmark suite (`MEDSYNTH_BENCH_WORKER`): JSON lines on stdout.
fn worker(device: &Device, mode: &str) -> anyhow::Result<()> {
    let threads = rayon::current_num_threads();
    for size in common::sizes(&[64, 128])? {
        let line = if let Some(slices) = mode.strip_prefix("volume:") {
            let slices: usize = slices.parse()?;
            let (params, seconds) = sample_volume(device, size, slices)?;
            serde_json::json!({"size": size, "params": params, "volume_s": seconds,
                "slices": slices, "steps": VOLUME_STEPS, "batch": VOLUME_BATCH, "threads": threads})
        } else {
            let (params, rate, per_slice) =
                measure(device, size, &common::levels(size), 16, common::steps(size))?;
            serde_json::json!({"size": size, "params": params, "train_steps_per_s": rate,
                "sample_s_per_slice": per_slice, "threads": threads})
        };
        println!("{line}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if let Ok(mode) = std::env::var("MEDSYNTH_BENCH_WORKER") {
        return worker(&common::device()?.0, &mode);
    }
    let python = std::env::var("MEDSYNTH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = common::script("diffusion_reference.py");
    let (device, device_name) = common::device()?;
    let torch_device = common::torch_device();
    println!(
        "attention UNet (base 32, res_blocks 1, tmsa 4 heads), batch {BATCH}, medsynth on {device_name} ({} CPU threads), torch on {torch_device}; DDIM {SAMPLE_STEPS} steps",
        rayon::current_num_threads()
    );
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>8} {:>16} {:>16} {:>8}",
        "size",
        "params",
        "medsynth st/s",
        "torch st/s",
        "ratio",
        "medsynth s/slice",
        "torch s/slice",
        "ratio"
    );
    for size in common::sizes(&[64, 128])? {
        let (mult, attention, steps) = (common::levels(size), 16, common::steps(size));
        let (params, rate, per_slice) = measure(&device, size, &mult, attention, steps)?;
        let mult_arg = mult
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(&python)
            .arg(&script)
            .args([
                size.to_string(),
                "32".into(),
                mult_arg,
                attention.to_string(),
                "4".into(),
                BATCH.to_string(),
                steps.to_string(),
                SAMPLE_STEPS.to_string(),
                torch_device.clone(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{python} diffusion_reference.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let torch_rate = r["train_steps_per_s"].as_f64().unwrap_or(f64::NAN);
        let torch_slice = r["sample_s_per_slice"].as_f64().unwrap_or(f64::NAN);
        anyhow::ensure!(
            r["params"].as_u64() == Some(params as u64),
            "parameter counts differ: medsynth {params}, torch {}",
            r["params"]
        );
        println!(
            "{:<10} {:>10} {:>14.3} {:>14.3} {:>8.2} {:>16.4} {:>16.4} {:>8.2}",
            format!("{size}x{size}"),
            params,
            rate,
            torch_rate,
            rate / torch_rate,
            per_slice,
            torch_slice,
            torch_slice / per_slice
        );
    }
    Ok(())
}
