//! The GPU code path (`--features gpu`: burn's wgpu backend) against the CPU backend, on
//! whatever adapter `train.device = "gpu"` opens; in CI that is Mesa's software Vulkan
//! driver (lavapipe), which tests/run.sh installs. Same seed, same inputs, both devices:
//! - the attention UNet's forward pass, and its backward pass through one Adam step;
//! - 20 diffusion training steps: the loss curves;
//! - DDIM sampling;
//! - a SAGAN discriminator and generator step (hinge + L1), and spectral normalization.
//!
//! Tolerances are stated per check: float32 kernels on two backends sum in different orders,
//! so values agree to rounding, growing slowly with the number of steps.
#![cfg(feature = "gpu")]

use crate::common;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use medsynth::models::diffusion::{ItemNoise, NoiseSchedule, Sampler, gaussian, sample};
use medsynth::models::gan::{GanArch, GanInput, GanSpec};
use medsynth::models::spectral::SpectralConv2d;
use medsynth::models::{Unet, UnetSpec, seeded};
use medsynth::spec::{DeviceKind, DiffusionConfig};
use medsynth::train::gan_loss::{discriminator_hinge, generator_hinge, l1};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn gpu() -> Device {
    medsynth::device::open(DeviceKind::Gpu).unwrap_or_else(|e| {
        panic!("{e}: a Vulkan driver is needed (apt-get install mesa-vulkan-drivers; tests/run.sh installs it as root)")
    })
}

fn devices() -> [(&'static str, Device); 2] {
    [("cpu", Device::flex()), ("gpu", gpu())]
}

fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference, relative to the largest magnitude in `a`.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

fn unet_spec() -> UnetSpec {
    UnetSpec {
        in_channels: 3,
        out_channels: 1,
        base_channels: 16,
        channel_mult: vec![1, 2],
        res_blocks: 1,
        groups: 4,
        dropout: 0.0,
        heads: 2,
        time_dependent: true,
        attention_resolutions: vec![16],
        image_size: 32,
        window: None,
    }
}

/// The batch every UNet check uses: made on the host from one seed, so equal on both devices.
fn batch(device: &Device) -> (Tensor<4>, Tensor<4>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = gaussian([4, 3, 32, 32], &mut rng, device);
    let target = gaussian([4, 1, 32, 32], &mut rng, device);
    (x, target, vec![10.0, 250.0, 600.0, 990.0])
}

/// `steps` Adam steps of MSE on one batch; returns each step's loss and the trained net.
fn train(device: &Device, steps: usize) -> (Vec<f32>, Unet) {
    let ad = device.clone().autodiff();
    let mut net = seeded(&ad, 3, |d| unet_spec().init(d));
    let mut optim = AdamConfig::new().init();
    let (x, target, t) = batch(&ad);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let out = net.forward(x.clone(), &t).output;
        let loss = (out - target.clone()).powf_scalar(2.0).mean();
        losses.push(host(&loss)[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(1e-3, net, grads);
    }
    (losses, net)
}

#[test]
fn one_seed_builds_the_same_unet_on_both_devices_and_its_passes_agree() {
    let [(_, cpu), (_, gpu)] = devices();
    let a = seeded(&cpu, 3, |d| unet_spec().init(d));
    let b = seeded(&gpu, 3, |d| unet_spec().init(d));
    let (x, _, t) = batch(&cpu);
    let (xg, _, _) = batch(&gpu);
    let (ya, yb) = (a.forward(x, &t), b.forward(xg, &t));
    let forward = relative(&host(&ya.output), &host(&yb.output));
    assert!(forward < 1e-4, "forward pass: {forward}");
    // Backward: one Adam step each, then the same forward pass again.
    let (la, na) = train(&cpu, 1);
    let (lb, nb) = train(&gpu, 1);
    assert!(relative(&la, &lb) < 1e-4, "{la:?} vs {lb:?}");
    let (x, _, t) = batch(&cpu);
    let (xg, _, _) = batch(&gpu);
    let stepped = relative(
        &host(&na.valid().forward(x, &t).output),
        &host(&nb.valid().forward(xg, &t).output),
    );
    assert!(stepped < 1e-3, "after one step: {stepped}");
}

#[test]
fn twenty_training_steps_give_the_same_loss_curve() {
    let (cpu, _) = train(&Device::flex(), 20);
    let (gpu, _) = train(&gpu(), 20);
    for (step, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
        let rel = ((a - b) / a).abs();
        assert!(rel < 1e-3, "step {step}: cpu {a}, gpu {b}");
    }
    assert!(cpu[19] < cpu[0], "the loss falls: {cpu:?}");
}

#[test]
fn ddim_sampling_agrees() {
    let schedule = NoiseSchedule::new(&DiffusionConfig::default());
    let mut out = Vec::new();
    for (_, device) in devices() {
        let net = seeded(&device, 5, |d| unet_spec().init(d));
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let cond = gaussian([2, 2, 32, 32], &mut rng, &device);
        let x = sample(
            &schedule,
            Sampler::Ddim { steps: 5, eta: 0.0 },
            Some([-1.0, 1.0]),
            [1, 32, 32],
            ItemNoise::from_seed(11, 2),
            &device,
            |x_t, step| {
                let times = vec![step as f32; 2];
                net.forward(Tensor::cat(vec![x_t, cond.clone()], 1), &times)
                    .output
            },
        );
        out.push(host(&x));
    }
    let diff = relative(&out[0], &out[1]);
    assert!(diff < 1e-3, "DDIM, 5 steps: {diff}");
}

fn gan_spec() -> GanSpec {
    GanSpec {
        arch: GanArch::Unet,
        in_channels: 2,
        noise_channels: 0,
        out_channels: 1,
        base_channels: 16,
        channel_mult: vec![1, 2],
        groups: 4,
        z_dim: 64,
        classes: 0,
        image_size: [32, 32],
        attention_resolution: 8,
        output_range: Some([-1.0, 1.0]),
    }
}

/// One discriminator and one generator step (hinge, + 100 L1) as the trainer takes them;
/// returns both losses and the discriminator's score of the real batch afterwards.
fn gan_steps(device: &Device) -> Vec<f32> {
    let ad = device.clone().autodiff();
    let s = gan_spec();
    let g = seeded(&ad, 1, |d| s.generator(d));
    let d = seeded(&ad, 2, |d| s.discriminator(d));
    let adam = || AdamConfig::new().with_beta_1(0.0).with_beta_2(0.9).init();
    let (mut opt_g, mut opt_d) = (adam(), adam());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let real = gaussian([4, 1, 32, 32], &mut rng, &ad).clamp(-1.0, 1.0);
    let input = GanInput {
        cond: Some(gaussian([4, 2, 32, 32], &mut rng, &ad)),
        ..GanInput::default()
    };
    let range = s.output_range;
    let fake = g.forward(&input, range, true).0.detach();
    let d_loss = discriminator_hinge(
        d.forward(real.clone(), &input, true).0,
        d.forward(fake, &input, true).0,
    );
    let mut out = vec![host(&d_loss)[0]];
    let grads = GradientsParams::from_grads(d_loss.backward(), &d);
    let d = opt_d.step(4e-4, d, grads);
    let (fake, _) = g.forward(&input, range, true);
    let g_loss =
        generator_hinge(d.forward(fake.clone(), &input, true).0) + l1(fake, real.clone(), 100.0);
    out.push(host(&g_loss)[0]);
    let grads = GradientsParams::from_grads(g_loss.backward(), &g);
    let g = opt_g.step(1e-4, g, grads);
    let (after, _) = g.forward(&input, range, false);
    out.extend(host(&d.forward(after, &input, false).0));
    out
}

#[test]
fn a_sagan_discriminator_and_generator_step_agree() {
    let cpu = gan_steps(&Device::flex());
    let gpu = gan_steps(&gpu());
    let diff = relative(&cpu, &gpu);
    assert!(
        diff < 1e-3,
        "D loss, G loss, scores after: {cpu:?} vs {gpu:?}"
    );
}

#[test]
fn spectral_normalization_agrees() {
    let mut sigmas = Vec::new();
    for (_, device) in devices() {
        let conv = seeded(&device, 4, |d| {
            SpectralConv2d::new([6, 12], 3, 1, 1, true, d)
        });
        for _ in 0..50 {
            conv.sigma(true);
        }
        sigmas.push(conv.sigma(false).into_scalar::<f32>());
    }
    let rel = ((sigmas[0] - sigmas[1]) / sigmas[0]).abs();
    assert!(rel < 1e-4, "σ after 50 power iterations: {sigmas:?}");
}

/// `train.device = "gpu"` through a whole pipeline: training, synthesis and evaluation on the
/// GPU give the CPU run's loss curve and scores within float32 rounding.
#[test]
fn a_pipeline_on_the_gpu_matches_the_same_pipeline_on_the_cpu() {
    let root = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    let mut scores = Vec::new();
    for device in ["cpu", "gpu"] {
        let file = root.path().join(format!("{device}.toml"));
        std::fs::write(
            &file,
            format!(
                r#"
[pipeline]
name = "{device}"
seed = 5

[input]
format = "phantom"
phantom = {{ subjects = 4, shape = [40, 44, 36], spacing_mm = 5.0, tumour_fraction = 1.0 }}

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = {{ axis = "axial", min_foreground = 0.2 }}
split = {{ train = 0.5, val = 0.25, test = 0.25 }}

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "flair"]
target = "t2"
unet = {{ base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }}
attention = {{ kind = "tmsa", resolutions = [16], heads = 2 }}
diffusion = {{ schedule = "cosine", timesteps = 50 }}

[train]
epochs = 2
batch_size = 8
checkpoint_every = 1000
device = "{device}"

[synthesize]
split = "test"
sampler = {{ kind = "ddim", steps = 3 }}

[evaluate]
metrics = ["ssim", "psnr"]

[output]
formats = ["nifti"]
"#
            ),
        )
        .unwrap();
        let out = common::run_pipeline(root.path(), &file);
        common::assert_success(&out);
        let run_dir = root.path().join("runs").join(device);
        let log = medsynth::train::read_log(&run_dir.join("train_log.parquet")).unwrap();
        logs.push(log.iter().map(|r| r.loss).collect::<Vec<_>>());
        let rows = medsynth::pipeline::read_metrics(&run_dir.join("metrics.parquet")).unwrap();
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.method == "diffusion")
            .map(|r| r.value)
            .collect();
        assert!(!values.is_empty(), "{device}: no diffusion scores");
        scores.push(values);
    }
    assert_eq!(logs[0].len(), logs[1].len());
    for (step, (a, b)) in logs[0].iter().zip(&logs[1]).enumerate() {
        assert!(
            ((a - b) / a).abs() < 1e-3,
            "training loss at step {step}: cpu {a}, gpu {b}"
        );
    }
    assert_eq!(scores[0].len(), scores[1].len());
    for (a, b) in scores[0].iter().zip(&scores[1]) {
        assert!(
            (a - b).abs() <= 1e-2 * a.abs().max(1.0),
            "score: cpu {a}, gpu {b}"
        );
    }
}

/// The demo itself (pipelines/demo.toml: ten phantom heads, the attention UNet, SAG,
/// evaluation, the nnU-Net export, the report with attention maps) with `train.device = "gpu"`,
/// one epoch instead of twelve so it fits CI on a software driver: every stage runs on the GPU
/// and gives the CPU run's training losses and scores.
#[test]
fn the_demo_runs_on_the_gpu_and_matches_the_cpu() {
    let demo = std::fs::read_to_string(common::repo().join("pipelines/demo.toml")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    let mut scores = Vec::new();
    for device in ["cpu", "gpu"] {
        let mut file: toml::Table = demo.parse().unwrap();
        file["pipeline"]["name"] = toml::Value::from(format!("demo-{device}"));
        let train = file["train"].as_table_mut().unwrap();
        train.insert("device".into(), device.into());
        train.insert("epochs".into(), 1.into());
        // The demo's cohort of the first GPU checks (ten subjects, two tested), one variant,
        // and the downstream segmentation for one epoch, so it fits CI on a software driver;
        // baseline-unet is the same network and training loop.
        let phantom = file["input"]["phantom"].as_table_mut().unwrap();
        phantom.insert("subjects".into(), 10.into());
        let split = file["preprocess"]["split"].as_table_mut().unwrap();
        for (k, v) in [("train", 0.7), ("val", 0.1), ("test", 0.2)] {
            split.insert(k.into(), v.into());
        }
        file["synthesize"]["variants"] = 1.into();
        let evaluate = file["evaluate"].as_table_mut().unwrap();
        evaluate.insert(
            "baselines".into(),
            toml::Value::Array(vec!["histogram".into(), "regression".into()]),
        );
        evaluate["segmentation"]["epochs"] = 1.into();
        let path = root.path().join(format!("demo-{device}.toml"));
        std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
        let out = common::run_pipeline(root.path(), &path);
        common::assert_success(&out);
        let run_dir = root.path().join(format!("runs/demo-{device}"));
        for part in ["report.html", "metrics.parquet"] {
            assert!(run_dir.join(part).is_file(), "{device}: no {part}");
        }
        let log = medsynth::train::read_log(&run_dir.join("train_log.parquet")).unwrap();
        logs.push(log.iter().map(|r| r.loss).collect::<Vec<_>>());
        let rows = medsynth::pipeline::read_metrics(&run_dir.join("metrics.parquet")).unwrap();
        scores.push(
            rows.iter()
                .filter(|r| r.method == "diffusion")
                .map(|r| (r.metric.clone(), r.value))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(logs[0].len(), logs[1].len());
    assert!(logs[0].len() >= 20, "{} steps", logs[0].len());
    for (step, (a, b)) in logs[0].iter().zip(&logs[1]).enumerate() {
        assert!(
            ((a - b) / a).abs() < 1e-2,
            "training loss at step {step}: cpu {a}, gpu {b}"
        );
    }
    assert!(!scores[0].is_empty());
    assert_eq!(scores[0].len(), scores[1].len());
    for ((m, a), (_, b)) in scores[0].iter().zip(&scores[1]) {
        assert!(a.is_finite() && b.is_finite());
        assert!(
            (a - b).abs() <= 2e-2 * a.abs().max(1.0),
            "{m}: cpu {a}, gpu {b}"
        );
    }
}
