//! The diffusion building blocks: UNet shapes and seeded determinism, DiffiT attention reducing
//! to multi-head attention without its time terms, schedules, and DDIM with η = 1 matching the
//! DDPM posterior.

use burn::tensor::{Device, Tensor};
use medsynth::models::diffusion::{ItemNoise, NoiseSchedule, Sampler, gaussian, sample};
use medsynth::models::{SelfAttentionConfig, UnetSpec, seeded};
use medsynth::spec::{DiffusionConfig, Prediction, Schedule};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}

fn max_diff<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f32 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn spec(time_dependent: bool) -> UnetSpec {
    UnetSpec {
        in_channels: 3,
        out_channels: 1,
        base_channels: 16,
        channel_mult: vec![1, 2],
        res_blocks: 1,
        groups: 8,
        dropout: 0.0,
        heads: 2,
        time_dependent,
        attention_resolutions: vec![8],
        image_size: 16,
        window: None,
    }
}

#[test]
fn the_unet_keeps_the_image_size_exposes_attention_and_is_seeded() {
    let device = Device::flex();
    let net = seeded(&device, 3, |device| spec(true).init(device));
    let x = gaussian([2, 3, 16, 16], &mut ChaCha8Rng::seed_from_u64(1), &device);
    let out = net.forward(x.clone(), &[10.0, 500.0]);
    assert_eq!(out.output.dims(), [2, 1, 16, 16]);
    // Attention at 8 x 8 (down and up paths) and in the middle (8 x 8 too, two levels).
    let middle = out.middle_attention.clone().unwrap();
    assert_eq!(middle.dims(), [2, 2, 64, 64]);
    assert!(out.attention.len() >= 3);
    // Rows of an attention map sum to 1.
    let sums = values(&middle.sum_dim(3));
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4), "{sums:?}");
    // The same seed builds the same network; another seed another one.
    let again = seeded(&device, 3, |device| spec(true).init(device));
    assert_eq!(
        values(&again.forward(x.clone(), &[10.0, 500.0]).output),
        values(&out.output)
    );
    let other = seeded(&device, 4, |device| spec(true).init(device));
    assert!(max_diff(&other.forward(x, &[10.0, 500.0]).output, &out.output) > 1e-3);
}

#[test]
fn time_dependent_attention_without_its_time_terms_is_multi_head_attention() {
    let device = Device::flex();
    let block = seeded(&device, 9, |device| {
        SelfAttentionConfig {
            channels: 16,
            heads: 4,
            groups: 4,
            time_dim: Some(32),
            window: None,
        }
        .init(device)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = gaussian([2, 16, 6, 5], &mut rng, &device);
    let time: Tensor<2> = gaussian([2, 32, 1, 1], &mut rng, &device).reshape([2, 32]);
    // With its time weights the block depends on t.
    let (with_t, _) = block.forward(x.clone(), Some(&time));
    let (no_t, _) = block.forward(x.clone(), Some(&time.clone().zeros_like()));
    assert!(
        max_diff(&with_t, &no_t) > 1e-3,
        "tmsa must depend on the time embedding"
    );
    // Zero time weights: exactly the mhsa block with the same spatial weights.
    let zeroed = block.clone().without_time_terms();
    let mhsa = block.as_mhsa();
    let (a, map_a) = zeroed.forward(x.clone(), Some(&time));
    let (b, map_b) = mhsa.forward(x, None);
    assert!(max_diff(&a, &b) < 1e-6);
    assert!(max_diff(&map_a, &map_b) < 1e-6);
}

#[test]
fn schedules_follow_their_definitions() {
    let linear = NoiseSchedule::new(&DiffusionConfig::default());
    assert_eq!(linear.len(), 1000);
    assert!((linear.betas[0] - 1e-4).abs() < 1e-12 && (linear.betas[999] - 0.02).abs() < 1e-12);
    // ᾱ_T of the DDPM linear schedule (Ho et al. 2020 report about 4e-5).
    assert!(
        (linear.alpha_bars[999] - 4.036e-5).abs() < 1e-7,
        "{}",
        linear.alpha_bars[999]
    );
    let cosine = NoiseSchedule::new(&DiffusionConfig {
        schedule: Schedule::Cosine,
        ..DiffusionConfig::default()
    });
    // ᾱ_t = f(t + 1) / f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), where β is not clipped.
    let f = |t: f64| {
        ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    for t in [0usize, 10, 250, 500, 900] {
        assert!(
            (cosine.alpha_bars[t] - f(t as f64 + 1.0) / f(0.0)).abs() < 1e-9,
            "t = {t}"
        );
    }
    assert!(cosine.betas.iter().all(|b| *b <= 0.999));
}

#[test]
fn ddim_with_eta_one_over_every_step_is_the_ddpm_posterior() {
    let device = Device::flex();
    let schedule = NoiseSchedule::new(&DiffusionConfig {
        timesteps: 60,
        ..DiffusionConfig::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let shape = [2, 1, 4, 4];
    // One step, for several t: the same mean and the same noise scale.
    for t in [59usize, 30, 5, 1] {
        let x_t = gaussian(shape, &mut rng, &device);
        let out = gaussian(shape, &mut rng, &device);
        let z = gaussian(shape, &mut rng, &device);
        let (eps, x0) = schedule.split(x_t.clone(), out, t);
        let ddpm = schedule.ddpm_step(x_t, x0.clone(), t, z.clone());
        let ddim = schedule.ddim_step(eps, x0, t, Some(t - 1), 1.0, z);
        assert!(max_diff(&ddpm, &ddim) < 1e-5, "t = {t}");
    }
    // Whole trajectories with the same seed and a fixed "network".
    let net = |x: Tensor<4>, t: usize| x * (0.3 + t as f64 / 200.0);
    let a = sample(
        &schedule,
        Sampler::Ddpm,
        None,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    let b = sample(
        &schedule,
        Sampler::Ddim {
            steps: 60,
            eta: 1.0,
        },
        None,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    assert!(max_diff(&a, &b) < 1e-4, "{}", max_diff(&a, &b));
    // Still with x̂0 clipped to the data range (ε̂ recomputed from the clipped x̂0), and the
    // clipping does act: this network's x̂0 leaves [-1, 1].
    let ddim = Sampler::Ddim {
        steps: 60,
        eta: 1.0,
    };
    let clip = Some([-1.0, 1.0]);
    let a_clip = sample(
        &schedule,
        Sampler::Ddpm,
        clip,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    let b_clip = sample(
        &schedule,
        ddim,
        clip,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    assert!(max_diff(&a_clip, &b_clip) < 1e-4);
    assert!(max_diff(&a, &a_clip) > 1e-2);
    // A seed fixes the samples; DDIM with η = 0 is deterministic given the start noise.
    let c = sample(
        &schedule,
        Sampler::Ddim {
            steps: 10,
            eta: 0.0,
        },
        None,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    let d = sample(
        &schedule,
        Sampler::Ddim {
            steps: 10,
            eta: 0.0,
        },
        None,
        [1, 4, 4],
        ItemNoise::from_seed(8, 2),
        &device,
        net,
    );
    assert_eq!(values(&c), values(&d));
}

#[test]
fn v_prediction_recovers_x0_and_epsilon() {
    let device = Device::flex();
    let schedule = NoiseSchedule::new(&DiffusionConfig {
        prediction: Prediction::V,
        ..DiffusionConfig::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x0 = gaussian([1, 1, 3, 3], &mut rng, &device);
    let noise = gaussian([1, 1, 3, 3], &mut rng, &device);
    let t = 400;
    let x_t = schedule.q_sample(x0.clone(), noise.clone(), &[t]);
    let v = schedule.target(x0.clone(), noise.clone(), &[t]);
    let (eps, x0_hat) = schedule.split(x_t, v, t);
    assert!(max_diff(&eps, &noise) < 1e-5 && max_diff(&x0_hat, &x0) < 1e-5);
}

/// Sampling in parts side by side gives what one batch gives: each item's noise is its own.
#[test]
fn sampling_in_parallel_parts_equals_one_batch() {
    let device = Device::flex();
    let net = seeded(&device, 3, |device| spec(true).init(device));
    let schedule = NoiseSchedule::new(&DiffusionConfig {
        timesteps: 50,
        ..DiffusionConfig::default()
    });
    let cond = gaussian([5, 2, 16, 16], &mut ChaCha8Rng::seed_from_u64(4), &device);
    let seeds = [11, 12, 13, 14, 15];
    let sampler = Sampler::Ddim { steps: 3, eta: 0.5 };
    let whole = sample(
        &schedule,
        sampler,
        None,
        [1, 16, 16],
        ItemNoise::new(&seeds),
        &device,
        |x, t| {
            net.forward(Tensor::cat(vec![x, cond.clone()], 1), &[t as f32; 5])
                .output
        },
    );
    for parts in [2, 3, 5] {
        let split = medsynth::models::diffusion::sample_chunked(
            &schedule,
            sampler,
            None,
            [1, 16, 16],
            &seeds,
            parts,
            &device,
            |x, t, items| {
                let c = cond.clone().narrow(0, items.start, items.len());
                net.forward(Tensor::cat(vec![x, c], 1), &vec![t as f32; items.len()])
                    .output
            },
        );
        assert_eq!(split.dims(), [5, 1, 16, 16]);
        assert!(max_diff(&whole, &split) < 1e-4, "{parts} parts");
    }
}

mod guidance {
    use super::*;
    use medsynth::models::{Guidance, blur, guided_output, sag_mask};

    fn setup() -> (medsynth::models::Unet, NoiseSchedule, Tensor<4>, Device) {
        let device = Device::flex();
        let net = seeded(&device, 3, |device| spec(true).init(device));
        let schedule = NoiseSchedule::new(&DiffusionConfig {
            timesteps: 50,
            ..DiffusionConfig::default()
        });
        let cond = gaussian([2, 2, 16, 16], &mut ChaCha8Rng::seed_from_u64(4), &device);
        (net, schedule, cond, device)
    }

    #[test]
    fn sag_at_scale_zero_and_cfg_at_one_are_the_unguided_sampler() {
        let (net, schedule, cond, device) = setup();
        let null = cond.zeros_like();
        let sampler = Sampler::Ddim { steps: 4, eta: 0.0 };
        let plain = sample(
            &schedule,
            sampler,
            None,
            [1, 16, 16],
            ItemNoise::from_seed(5, 2),
            &device,
            |x, t| {
                net.forward(Tensor::cat(vec![x, cond.clone()], 1), &[t as f32; 2])
                    .output
            },
        );
        let guided = sample(
            &schedule,
            sampler,
            None,
            [1, 16, 16],
            ItemNoise::from_seed(5, 2),
            &device,
            |x, t| {
                guided_output(
                    &net,
                    &schedule,
                    Guidance {
                        sag: 0.0,
                        cfg: 1.0,
                        ..Guidance::default()
                    },
                    x,
                    t,
                    Some(&cond),
                    Some(&null),
                )
            },
        );
        assert_eq!(values(&plain), values(&guided));
        // Non-zero scales change the samples.
        let sag = sample(
            &schedule,
            sampler,
            None,
            [1, 16, 16],
            ItemNoise::from_seed(5, 2),
            &device,
            |x, t| {
                guided_output(
                    &net,
                    &schedule,
                    Guidance {
                        sag: 0.8,
                        cfg: 1.0,
                        ..Guidance::default()
                    },
                    x,
                    t,
                    Some(&cond),
                    Some(&null),
                )
            },
        );
        assert!(max_diff(&sag, &plain) > 1e-4);
        let cfg = sample(
            &schedule,
            sampler,
            None,
            [1, 16, 16],
            ItemNoise::from_seed(5, 2),
            &device,
            |x, t| {
                guided_output(
                    &net,
                    &schedule,
                    Guidance {
                        sag: 0.0,
                        cfg: 2.0,
                        ..Guidance::default()
                    },
                    x,
                    t,
                    Some(&cond),
                    Some(&null),
                )
            },
        );
        assert!(max_diff(&cfg, &plain) > 1e-4);
    }

    #[test]
    fn cfg_is_the_unconditional_prediction_plus_w_times_the_difference() {
        let (net, schedule, cond, device) = setup();
        let null = cond.zeros_like();
        let x = gaussian([2, 1, 16, 16], &mut ChaCha8Rng::seed_from_u64(9), &device);
        let t = 20;
        let c = net
            .forward(Tensor::cat(vec![x.clone(), cond.clone()], 1), &[20.0; 2])
            .output;
        let u = net
            .forward(Tensor::cat(vec![x.clone(), null.clone()], 1), &[20.0; 2])
            .output;
        let want = u.clone() + (c - u) * 3.0;
        let got = guided_output(
            &net,
            &schedule,
            Guidance {
                sag: 0.0,
                cfg: 3.0,
                ..Guidance::default()
            },
            x,
            t,
            Some(&cond),
            Some(&null),
        );
        assert!(max_diff(&want, &got) < 1e-5);
    }

    #[test]
    fn the_sag_mask_marks_keys_that_receive_more_than_their_share_of_attention() {
        let device = Device::flex();
        // Grid 2 x 2 (N = 4), one head: every query attends 70 % to key 1, 10 % to the others.
        let row = [0.1f32, 0.7, 0.1, 0.1];
        let map: Tensor<4> = Tensor::from_data(
            burn::tensor::TensorData::new(row.repeat(4), [1, 1, 4, 4]),
            &device,
        );
        let mask = values(&sag_mask(&map, (2, 2), (4, 4)));
        // Key 1 is the top-right cell; upsampled to 4 x 4 it covers rows 0-1, columns 2-3.
        let want: Vec<f32> = (0..16)
            .map(|i| if i / 4 < 2 && i % 4 >= 2 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(mask, want);
    }

    #[test]
    fn the_blur_keeps_constants_and_mass_and_spreads_a_point() {
        let device = Device::flex();
        let flat: Tensor<4> = Tensor::ones([1, 1, 12, 10], &device) * 3.0;
        assert!(
            values(&blur(&flat, 1.0))
                .iter()
                .all(|v| (v - 3.0).abs() < 1e-5)
        );
        let mut point = vec![0f32; 400];
        point[10 * 20 + 10] = 1.0;
        let p: Tensor<4> = Tensor::from_data(
            burn::tensor::TensorData::new(point, [1, 1, 20, 20]),
            &device,
        );
        let b = values(&blur(&p, 1.0));
        assert!(
            (b.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "away from edges mass is kept"
        );
        // Separable Gaussian with σ = 1: the centre weight is (1 / Σ_k e^{-k²/2})², k = -4..4.
        let z: f64 = (-4i32..=4).map(|k| (-(k * k) as f64 / 2.0).exp()).sum();
        assert!((b[210] as f64 - 1.0 / (z * z)).abs() < 1e-6);
        assert!((b[209] - b[211]).abs() < 1e-7 && (b[190] - b[230]).abs() < 1e-7);
        // σ = 2 reaches 8 pixels out, as scipy.ndimage.gaussian_filter's truncate = 4 does.
        let b2 = values(&blur(&p, 2.0));
        let z2: f64 = (-8i32..=8).map(|k| (-(k * k) as f64 / 8.0).exp()).sum();
        assert!((b2[210] as f64 - 1.0 / (z2 * z2)).abs() < 1e-6);
        assert!(b2[210 + 8] > 0.0 && b2[210 + 9] == 0.0);
    }
}

#[test]
fn windowed_attention_is_global_attention_restricted_to_each_window() {
    use medsynth::models::relative_index;
    let device = Device::flex();
    let block = seeded(&device, 11, |device| {
        SelfAttentionConfig {
            channels: 8,
            heads: 2,
            groups: 4,
            time_dim: Some(16),
            window: Some(4),
        }
        .init(device)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = gaussian([2, 8, 8, 12], &mut rng, &device);
    let time: Tensor<2> = gaussian([2, 16, 1, 1], &mut rng, &device).reshape([2, 16]);
    let (out, local) = block.forward(x.clone(), Some(&time));
    assert_eq!(out.dims(), [2, 8, 8, 12]);
    // 2 samples x (2 x 3) windows, 2 heads, 16 tokens per window.
    assert_eq!(local.dims(), [12, 2, 16, 16]);
    let (_, global) = block.clone().as_global().forward(x, Some(&time));
    let (l, g) = (values(&local), values(&global));
    // With the bias at zero, each window's map is the global map's rows restricted to the
    // window's keys and renormalized; tokens and windows are in row-major order.
    for s in 0..2 {
        for (wy, wx) in [(0, 0), (0, 2), (1, 1)] {
            let window = s * 6 + wy * 3 + wx;
            let token = |i: usize| (wy * 4 + i / 4) * 12 + wx * 4 + i % 4;
            for head in 0..2 {
                for qi in 0..16 {
                    let row = |k: usize| g[((s * 2 + head) * 96 + token(qi)) * 96 + token(k)];
                    let total: f32 = (0..16).map(row).sum();
                    for ki in 0..16 {
                        let want = row(ki) / total;
                        let got = l[((window * 2 + head) * 16 + qi) * 16 + ki];
                        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
                    }
                }
            }
        }
    }
    // The relative position table index for a 2 x 2 window (3 x 3 offsets): query (0, 0)
    // sees keys at offsets (0,0), (0,-1), (-1,0), (-1,-1) -> entries 4, 3, 1, 0.
    let index = relative_index(2, &device)
        .to_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(&index[..4], &[4, 3, 1, 0]);
    assert_eq!(&index[12..], &[8, 7, 5, 4]);
}
