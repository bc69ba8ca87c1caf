//! Self-attention GAN speed on the CPU beside the same models in PyTorch
//! (benches/gan_reference.py): discriminator and generator optimizer steps per second, as the
//! trainer takes them (hinge loss, + 100·L1 for the paired models; Adam betas (0, 0.9)), batch 8:
//!
//! - `unet`: UNet generator (SAGAN attention at the bottleneck) + PatchGAN discriminator with
//!   attention, translation with one input and its mask, at 64 x 64 and 128 x 128;
//! - `noise`: residual generator from z (self-modulated conditional batch norm, attention at
//!   32) + residual discriminator, at 64 x 64.
//!
//!   cargo bench --bench gan     (MEDSYNTH_TORCH_PYTHON names a Python with torch)
//!
//! Both sides count their parameters (with medsynth's non-trainable state), which must agree.
//! The device and sizes are chosen by environment variables (benches/common); the noise models
//! run when 64 is among the sizes; benches/gpu.sh runs it on a GPU.
//!
//! For the benchmark suite (benches/run), `MEDSYNTH_BENCH_WORKER=1` measures medsynth only and
//! prints a JSON line per case.

mod common;

use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use medsynth::models::diffusion::gaussian;
use medsynth::models::gan::{GanArch, GanInput, GanSpec, latents};
use medsynth::models::seeded;
use medsynth::train::gan_loss::{discriminator_hinge, generator_hinge, l1};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 8;
const BASE: usize = 32;

struct Case {
    arch: GanArch,
    size: usize,
    mult: Vec<usize>,
    attention: usize,
    steps: usize,
}

fn spec(c: &Case) -> GanSpec {
    GanSpec {
        arch: c.arch,
        in_channels: if c.arch == GanArch::Unet { 2 } else { 0 },
        noise_channels: 0,
        out_channels: 1,
        base_channels: BASE,
        channel_mult: c.mult.clone(),
        groups: 8,
        z_dim: 128,
        classes: 0,
        image_size: [c.size, c.size],
        attention_resolution: c.attention,
        output_range: Some([-1.0, 1.0]),
    }
}

/// (G parameters, D parameters, D steps/s, G steps/s).
fn measure(device: &Device, c: &Case) -> anyhow::Result<(usize, usize, f64, f64)> {
    let device = device.clone().autodiff();
    let s = spec(c);
    let mut g = seeded(&device, 0, |device| s.generator(device));
    let mut d = seeded(&device, 1, |device| s.discriminator(device));
    let (pg, pd) = (g.num_params(), d.num_params());
    let adam = || AdamConfig::new().with_beta_1(0.0).with_beta_2(0.9).init();
    let (mut opt_g, mut opt_d) = (adam(), adam());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let real: Tensor<4> = gaussian([BATCH, 1, c.size, c.size], &mut rng, &device).clamp(-1.0, 1.0);
    let cond = gaussian([BATCH, 2, c.size, c.size], &mut rng, &device);
    let range = s.output_range;
    // The condition (paired models) or fresh latents (noise models) of one step.
    let mut input = || match c.arch {
        GanArch::Unet => GanInput {
            cond: Some(cond.clone()),
            ..GanInput::default()
        },
        GanArch::Noise => GanInput {
            z: Some(latents(BATCH, 128, None, &mut rng, &device)),
            ..GanInput::default()
        },
    };
    let mut d_step = |input: &mut dyn FnMut() -> GanInput,
                      g: &medsynth::models::gan::GanGenerator,
                      d: medsynth::models::gan::GanDiscriminator| {
        let i = input();
        let fake = g.forward(&i, range, true).0.detach();
        let loss = discriminator_hinge(
            d.forward(real.clone(), &i, true).0,
            d.forward(fake, &i, true).0,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &d);
        opt_d.step(4e-4, d, grads)
    };
    d = d_step(&mut input, &g, d);
    common::sync(&device)?;
    let start = Instant::now();
    for _ in 0..c.steps {
        d = d_step(&mut input, &g, d);
    }
    common::sync(&device)?;
    let d_rate = c.steps as f64 / start.elapsed().as_secs_f64();
    let mut g_step = |input: &mut dyn FnMut() -> GanInput,
                      g: medsynth::models::gan::GanGenerator| {
        let i = input();
        let (fake, _) = g.forward(&i, range, true);
        let mut loss = generator_hinge(d.forward(fake.clone(), &i, true).0);
        if c.arch == GanArch::Unet {
            loss = loss + l1(fake, real.clone(), 100.0);
        }
        let grads = GradientsParams::from_grads(loss.backward(), &g);
        opt_g.step(1e-4, g, grads)
    };
    g = g_step(&mut input, g);
    common::sync(&device)?;
    let start = Instant::now();
    for _ in 0..c.steps {
        g = g_step(&mut input, g);
    }
    common::sync(&device)?;
    let g_rate = c.steps as f64 / start.elapsed().as_secs_f64();
    Ok((pg, pd, d_rate, g_rate))
}

/// The table's title and column heads.
fn header(device_name: &str, torch_device: &str) {
    println!(
        "self-attention GANs (base {BASE}), batch {BATCH}, medsynth on {device_name} ({} CPU threads), torch on {torch_device}",
        rayon::current_num_threads()
    );
    println!(
        "{:<7} {:<9} {:>9} {:>9} {:>12} {:>12} {:>6} {:>12} {:>12} {:>6}",
        "arch",
        "size",
        "G params",
        "D params",
        "medsynth D/s",
        "torch D/s",
        "ratio",
        "medsynth G/s",
        "torch G/s",
        "ratio"
    );
}

fn main() -> anyhow::Result<()> {
    let python = std::env::var("MEDSYNTH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = common::script("gan_reference.py");
    let (device, device_name) = common::device()?;
    let torch_device = common::torch_device();
    let worker = std::env::var_os("MEDSYNTH_BENCH_WORKER").is_some();
    if !worker {
        header(device_name, &torch_device);
    }
    let sizes = common::sizes(&[64, 128])?;
    let mut cases: Vec<Case> = sizes
        .iter()
        .map(|&size| Case {
            arch: GanArch::Unet,
            size,
            mult: common::levels(size),
            attention: 16,
            steps: common::steps(size),
        })
        .collect();
    if sizes.contains(&64) {
        cases.push(Case {
            arch: GanArch::Noise,
            size: 64,
            mult: vec![1],
            attention: 32,
            steps: 5,
        });
    }
    for c in &cases {
        let (pg, pd, d_rate, g_rate) = measure(&device, c)?;
        let arch = if c.arch == GanArch::Unet {
            "unet"
        } else {
            "noise"
        };
        if worker {
            let line = serde_json::json!({"arch": arch, "size": c.size, "params_g": pg,
                "params_d": pd, "d_steps_per_s": d_rate, "g_steps_per_s": g_rate,
                "threads": rayon::current_num_threads()});
            println!("{line}");
            continue;
        }
        let mult = c
            .mult
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(&python)
            .arg(&script)
            .args([
                arch.to_owned(),
                c.size.to_string(),
                BASE.to_string(),
                mult,
                c.attention.to_string(),
                BATCH.to_string(),
                c.steps.to_string(),
                torch_device.clone(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{python} gan_reference.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let count = |k: &str| {
            r[format!("params_{k}")].as_u64().unwrap_or(0)
                + r[format!("buffers_{k}")].as_u64().unwrap_or(0)
        };
        anyhow::ensure!(
            count("g") == pg as u64 && count("d") == pd as u64,
            "parameter counts differ: medsynth G {pg} D {pd}, torch G {} D {}",
            count("g"),
            count("d")
        );
        let (td, tg) = (
            r["d_steps_per_s"].as_f64().unwrap_or(f64::NAN),
            r["g_steps_per_s"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "{:<7} {:<9} {:>9} {:>9} {:>12.3} {:>12.3} {:>6.2} {:>12.3} {:>12.3} {:>6.2}",
            arch,
            format!("{0}x{0}", c.size),
            pg,
            pd,
            d_rate,
            td,
            d_rate / td,
            g_rate,
            tg,
            g_rate / tg
        );
    }
    Ok(())
}
