//! The diffusion trainer: a resumed run continues with exactly the losses of an uninterrupted
//! one, a non-finite loss stops training with a clear error, and the loss falls on phantom
//! slices.

use crate::common;

use burn::tensor::Device;
use medsynth::conditioning::Conditioning;
use medsynth::dataset::SliceSet;
use medsynth::models::UnetSpec;
use medsynth::models::diffusion::NoiseSchedule;
use medsynth::spec::{DiffusionConfig, ModelSection, TrainSection};
use medsynth::train::Checkpoints;
use medsynth::train::diffusion::DiffusionTrainer;

fn model() -> ModelSection {
    toml::from_str(
        r#"
kind = "diffusion"
task = "translation"
inputs = ["t1"]
target = "t2"
modality_dropout = 0.0
cond_dropout = 0.0
"#,
    )
    .unwrap()
}

fn trainer(
    set: &SliceSet,
    dir: &std::path::Path,
    epochs: u32,
    checkpoint_every: u32,
) -> DiffusionTrainer {
    let conditioning = Conditioning::new(&model(), set).unwrap();
    DiffusionTrainer {
        spec: UnetSpec {
            in_channels: conditioning.in_channels(),
            out_channels: 1,
            base_channels: 16,
            channel_mult: vec![1, 2],
            res_blocks: 1,
            groups: 8,
            dropout: 0.0,
            heads: 2,
            time_dependent: true,
            attention_resolutions: vec![16],
            image_size: 32,
            window: None,
        },
        schedule: NoiseSchedule::new(&DiffusionConfig {
            timesteps: 200,
            ..DiffusionConfig::default()
        }),
        conditioning,
        train: TrainSection {
            epochs,
            batch_size: 4,
            lr: Some(1e-3),
            warmup_steps: 2,
            ema: 0.9,
            checkpoint_every,
            ..TrainSection::default()
        },
        seed: 21,
        checkpoints: Checkpoints::new(dir.join("checkpoints")),
        log: dir.join("train_log.parquet"),
        max_steps: None,
        progress: false,
    }
}

#[test]
fn a_resumed_run_gives_the_same_next_losses_as_an_uninterrupted_one() {
    let set = common::t1_t2_slices(8);
    let device = Device::flex();
    let whole = tempfile::tempdir().unwrap();
    let straight = trainer(&set, whole.path(), 3, 3)
        .run(&set, None, &device)
        .unwrap();
    assert_eq!(straight.log.len(), 6);

    let split = tempfile::tempdir().unwrap();
    let mut first = trainer(&set, split.path(), 3, 3);
    first.max_steps = Some(3);
    let part = first.run(&set, None, &device).unwrap();
    assert_eq!(part.log.len(), 3);
    let cp = part.last_checkpoint.unwrap();
    assert!(
        cp.ends_with("step-00000003") && cp.join("optimizer.bpk").is_file(),
        "{cp:?}"
    );
    // A fresh trainer (as a new process would build) resumes from step 3.
    let rest = trainer(&set, split.path(), 3, 3)
        .run(&set, None, &device)
        .unwrap();
    let a: Vec<f64> = straight.log.iter().map(|r| r.loss).collect();
    let b: Vec<f64> = rest.log.iter().map(|r| r.loss).collect();
    assert_eq!(b.len(), 6, "the log is continued, not restarted");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{a:?}\n{b:?}");
    }
    // The log on disk has every step once.
    let on_disk = medsynth::train::read_log(&split.path().join("train_log.parquet")).unwrap();
    assert_eq!(
        on_disk.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    // Another setting, or other data, is never mixed with the checkpoint: training starts
    // again from step 0, exactly as in a fresh folder, replacing the checkpoints and the log.
    let with_lr = |dir: &std::path::Path, set: &SliceSet| {
        let mut t = trainer(set, dir, 1, 3);
        t.train.lr = Some(5e-4);
        t.run(set, None, &device).unwrap()
    };
    let again = with_lr(split.path(), &set);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = with_lr(fresh_dir.path(), &set);
    assert_eq!(again.log.len(), 2, "trained from step 0");
    for (a, b) in again.log.iter().zip(&fresh.log) {
        assert!((a.loss - b.loss).abs() <= 1e-6 * a.loss.abs().max(1.0));
    }
    let steps = |dir: &std::path::Path| {
        medsynth::train::read_log(&dir.join("train_log.parquet"))
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(split.path()), [1, 2]);
    // Other slices with the same settings: the checkpoint is not reused either.
    let other = common::t1_t2_slices(9);
    let mut t = trainer(&other, split.path(), 1, 3);
    t.train.lr = Some(5e-4);
    let retrained = t.run(&other, None, &device).unwrap();
    assert_eq!(
        retrained.log.len(),
        3,
        "trained from step 0 on the new data"
    );
    assert_eq!(steps(split.path()), [1, 2, 3]);
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let set = common::t1_t2_slices(4);
    let mut data = set.to_array().unwrap();
    data[[1, 1, 10, 10]] = f32::NAN;
    let set = SliceSet::from_memory(set.channels.clone(), data, set.rows.clone());
    let dir = tempfile::tempdir().unwrap();
    let err = trainer(&set, dir.path(), 1, 1)
        .run(&set, None, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("the loss became NaN at step 0"), "{err}");
    assert!(err.contains("none written yet"), "{err}");
}

#[test]
fn the_loss_falls_when_fitting_a_few_phantom_slices() {
    let n: usize = std::env::var("EXP_N")
        .map(|v| v.parse().unwrap())
        .unwrap_or(4);
    let set = common::t1_t2_slices(n);
    let dir = tempfile::tempdir().unwrap();
    let t = trainer(&set, dir.path(), 40, 1000);
    let trained = t.run(&set, None, &Device::flex()).unwrap();
    let losses: Vec<f64> = trained.log.iter().map(|r| r.loss).collect();
    let start: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let end: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(end < 0.5 * start, "loss {start:.4} -> {end:.4}: {losses:?}");
}

/// Optimizer steps of the overfit test. Five slices, so one batch of five per step: burn-flex
/// computes convolution weight gradients on a slow direct path when the batch is 4 or less.
const STEPS: u32 = 250;
/// Mean SSIM the overfit test's DDIM samples must reach. Measured over seeds 21, 22 and 23
/// (the test uses 21): 0.879, 0.923, 0.892; the floor leaves a margin of ~0.08 for other CPUs'
/// floating-point rounding. The same run with ε-prediction reaches 0.07.
const SSIM_FLOOR: f64 = 0.80;

/// Fits T1 -> T2 on five phantom slices and samples them back with DDIM (25 steps, x̂0 clipped
/// to the data range): the loss falls well below its start and the samples resemble the real
/// T2 (mean SSIM above the measured floor).
#[test]
fn overfitting_t1_to_t2_gives_ddim_samples_close_to_the_target() {
    use medsynth::dataset::ManifestRow;
    use medsynth::models::Guidance;
    use medsynth::models::diffusion::Sampler;
    use medsynth::synth::{DiffusionGenerator, Generator};
    let n = 5;
    let set = common::t1_t2_slices(n);
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(&set, dir.path(), STEPS, 10_000);
    t.train.batch_size = n as u32;
    t.train.lr = Some(2e-3);
    t.train.ema = 0.0;
    let device = Device::flex();
    let trained = t.run(&set, None, &device).unwrap();
    let losses: Vec<f64> = trained.log.iter().map(|r| r.loss).collect();
    let start: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let end: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    assert!(end < 0.3 * start, "loss {start:.4} -> {end:.4}");

    let generator = DiffusionGenerator {
        net: trained.model,
        schedule: t.schedule.clone(),
        conditioning: t.conditioning.clone(),
        sampler: Sampler::Ddim {
            steps: 25,
            eta: 0.0,
        },
        guidance: Guidance::default(),
        clip: Some([-1.0, 1.0]),
        device,
    };
    let rows: Vec<&ManifestRow> = set.rows.iter().collect();
    let seeds: Vec<u64> = (0..n as u64).map(|i| 3 + i).collect();
    let data = set.to_array().unwrap();
    let fake = generator.generate(&data, &rows, &seeds).unwrap();
    assert_eq!(fake.dim(), (n, 1, 32, 32));
    // A slice's sample depends on its seed, not on the batch it is drawn in.
    let alone = generator
        .generate(
            &data.slice(ndarray::s![n - 2.., .., .., ..]).to_owned(),
            &rows[n - 2..],
            &seeds[n - 2..],
        )
        .unwrap();
    let batched = fake.slice(ndarray::s![n - 2.., .., .., ..]);
    let apart = (&alone - &batched)
        .mapv(f32::abs)
        .fold(0f32, |a, &b| a.max(b));
    assert!(apart < 1e-4, "batch changes a slice's sample by {apart}");
    let ssim = common::ssim_per_slice(&fake, 0, &data, 1);
    let mean = ssim.iter().sum::<f64>() / n as f64;
    eprintln!("loss {start:.4} -> {end:.4}; SSIM {ssim:.3?} mean {mean:.3}");
    assert!(mean > SSIM_FLOOR, "SSIM {ssim:?}");
}
