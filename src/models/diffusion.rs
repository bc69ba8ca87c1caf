//! Denoising diffusion (Ho et al. 2020): noise schedules, the forward process, the training
//! target, and the DDPM ancestral and DDIM (Song et al. 2021) reverse steps. Schedules are kept
//! in f64 on the host; noise for sampling comes from a seeded ChaCha generator, so a seed gives
//! the same images on any backend.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::spec::{DiffusionConfig, Prediction, Schedule};

/// β_t and ᾱ_t = Π (1 - β_s) for t = 0 .. T-1.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alpha_bars: Vec<f64>,
    pub prediction: Prediction,
}

/// Gaussian noise of `shape` from `rng`, as a tensor.
pub fn gaussian(shape: [usize; 4], rng: &mut ChaCha8Rng, device: &Device) -> Tensor<4> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A per-sample scale `[B, 1, 1, 1]`.
fn per_sample(values: &[f64], device: &Device) -> Tensor<4> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [values.len(), 1, 1, 1]), device)
}

impl NoiseSchedule {
    /// The schedule as checkpoints record it: the digest of its betas and what the network
    /// predicts, so a model is never sampled with another schedule than it was trained on.
    pub fn fingerprint(&self) -> serde_json::Value {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for b in &self.betas {
            h.update(b.to_le_bytes());
        }
        serde_json::json!({
            "betas_sha256": crate::volume::hex(&h.finalize()),
            "prediction": self.prediction,
        })
    }

    /// The schedule a pipeline's `model.diffusion` names: linear β from `beta_start` to
    /// `beta_end`, or the cosine ᾱ of Nichol & Dhariwal 2021 (s = 0.008, β clipped at 0.999).
    ///
    /// `beta_start` and `beta_end` are the values for T = 1000 and are scaled by 1000 / T, as
    /// improved-diffusion's `get_named_beta_schedule("linear")` does: ᾱ_{T-1} then stays near
    /// 4e-5 for any T, so sampling from pure noise matches the end of the forward process.
    /// (Unscaled, T = 200 would end at ᾱ ≈ 0.13, a third of the signal still there.)
    pub fn new(cfg: &DiffusionConfig) -> Self {
        let t = cfg.timesteps.max(1) as usize;
        let scale = 1000.0 / t as f64;
        let betas: Vec<f64> = match cfg.schedule {
            Schedule::Linear => (0..t)
                .map(|i| {
                    let f = if t > 1 {
                        i as f64 / (t - 1) as f64
                    } else {
                        0.0
                    };
                    (scale * (cfg.beta_start + f * (cfg.beta_end - cfg.beta_start))).min(0.999)
                })
                .collect(),
            Schedule::Cosine => {
                let s = 0.008;
                let f = |i: f64| {
                    ((i / t as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..t)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999))
                    .collect()
            }
        };
        let mut alpha_bars = Vec::with_capacity(t);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alpha_bars.push(acc);
        }
        NoiseSchedule {
            betas,
            alpha_bars,
            prediction: cfg.prediction,
        }
    }

    /// T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// ᾱ at step `t`, with ᾱ_{-1} = 1 (`t = None`).
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alpha_bars[t])
    }

    /// x_t = √ᾱ_t x0 + √(1 - ᾱ_t) ε, per sample.
    ///
    /// # Shapes
    /// `x0`, `noise` `[B, C, H, W]`, `t` `[B]`
    pub fn q_sample(&self, x0: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        let device = x0.device();
        let a: Vec<f64> = t.iter().map(|&t| self.alpha_bars[t].sqrt()).collect();
        let s: Vec<f64> = t
            .iter()
            .map(|&t| (1.0 - self.alpha_bars[t]).sqrt())
            .collect();
        x0 * per_sample(&a, &device) + noise * per_sample(&s, &device)
    }

    /// What the network learns to output for (x0, ε, t): ε, or v = √ᾱ ε - √(1-ᾱ) x0.
    pub fn target(&self, x0: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        match self.prediction {
            Prediction::Epsilon => noise,
            Prediction::V => {
                let device = x0.device();
                let a: Vec<f64> = t.iter().map(|&t| self.alpha_bars[t].sqrt()).collect();
                let s: Vec<f64> = t
                    .iter()
                    .map(|&t| (1.0 - self.alpha_bars[t]).sqrt())
                    .collect();
                noise * per_sample(&a, &device) - x0 * per_sample(&s, &device)
            }
        }
    }

    /// The network output at step `t` (all samples) turned into (ε̂, x̂0).
    pub fn split(&self, x_t: Tensor<4>, output: Tensor<4>, t: usize) -> (Tensor<4>, Tensor<4>) {
        let ab = self.alpha_bars[t];
        match self.prediction {
            Prediction::Epsilon => {
                let x0 = (x_t - output.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
                (output, x0)
            }
            Prediction::V => {
                let eps = output.clone() * ab.sqrt() + x_t.clone() * (1.0 - ab).sqrt();
                let x0 = x_t * ab.sqrt() - output * (1.0 - ab).sqrt();
                (eps, x0)
            }
        }
    }

    /// The DDPM posterior q(x_{t-1} | x_t, x0): (coefficient of x0, coefficient of x_t,
    /// variance β̃_t), eq. 7 of Ho et al. 2020.
    pub fn posterior(&self, t: usize) -> (f64, f64, f64) {
        let ab = self.alpha_bars[t];
        let ab_prev = self.alpha_bar(t.checked_sub(1));
        let beta = self.betas[t];
        (
            beta * ab_prev.sqrt() / (1.0 - ab),
            (1.0 - ab_prev) * (1.0 - beta).sqrt() / (1.0 - ab),
            beta * (1.0 - ab_prev) / (1.0 - ab),
        )
    }

    /// One DDPM ancestral step: the posterior mean from x̂0, plus √β̃_t z (no noise at t = 0).
    pub fn ddpm_step(&self, x_t: Tensor<4>, x0: Tensor<4>, t: usize, z: Tensor<4>) -> Tensor<4> {
        let (c0, ct, var) = self.posterior(t);
        let mean = x0 * c0 + x_t * ct;
        if t == 0 { mean } else { mean + z * var.sqrt() }
    }

    /// One DDIM step from `t` to `prev` (`None`: to x0), eq. 12 of Song et al. 2021:
    /// x_prev = √ᾱ_prev x̂0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z, with
    /// σ = η √((1 - ᾱ_prev)/(1 - ᾱ_t)) √(1 - ᾱ_t/ᾱ_prev).
    pub fn ddim_step(
        &self,
        eps: Tensor<4>,
        x0: Tensor<4>,
        t: usize,
        prev: Option<usize>,
        eta: f64,
        z: Tensor<4>,
    ) -> Tensor<4> {
        let ab = self.alpha_bars[t];
        let ab_prev = self.alpha_bar(prev);
        let sigma =
            eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt();
        let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
        let out = x0 * ab_prev.sqrt() + eps * dir;
        if sigma > 0.0 { out + z * sigma } else { out }
    }

    /// `steps` time steps spaced evenly from T-1 down to 0 (DDIM's "uniform" skipping).
    pub fn ddim_times(&self, steps: usize) -> Vec<usize> {
        let t = self.len();
        let steps = steps.clamp(1, t);
        let mut out: Vec<usize> = (0..steps)
            .map(|i| ((i as f64 * (t - 1) as f64) / (steps.max(2) - 1) as f64).round() as usize)
            .collect();
        if steps == 1 {
            out = vec![t - 1];
        }
        out.dedup();
        out.reverse();
        out
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling over every step.
    Ddpm,
    /// DDIM over `steps` evenly spaced steps with stochasticity `eta`.
    Ddim { steps: usize, eta: f64 },
}

/// Independent Gaussian noise for each item of a batch: item `i` draws from `ChaCha8(seeds[i])`
/// alone, so a slice's noise, and with it its sample, does not depend on which other slices
/// share its batch (synthesis fills batches across subjects; runs resume and shard).
#[derive(Debug, Clone)]
pub struct ItemNoise(Vec<ChaCha8Rng>);

impl ItemNoise {
    /// One stream per seed.
    pub fn new(seeds: &[u64]) -> Self {
        Self(
            seeds
                .iter()
                .map(|&s| ChaCha8Rng::seed_from_u64(s))
                .collect(),
        )
    }

    /// `n` streams seeded `seed`, `seed + 1`, ... (tests and benchmarks).
    pub fn from_seed(seed: u64, n: usize) -> Self {
        Self(
            (0..n as u64)
                .map(|i| ChaCha8Rng::seed_from_u64(seed.wrapping_add(i)))
                .collect(),
        )
    }

    /// Noise `[items, C, H, W]` for `item_shape = [C, H, W]`, each item from its own stream.
    pub fn gaussian(&mut self, item_shape: [usize; 3], device: &Device) -> Tensor<4> {
        let per_item: usize = item_shape.iter().product();
        let mut values = Vec::with_capacity(per_item * self.0.len());
        for rng in &mut self.0 {
            values.extend((0..per_item).map(|_| -> f32 { StandardNormal.sample(rng) }));
        }
        let [c, h, w] = item_shape;
        Tensor::from_data(TensorData::new(values, [self.0.len(), c, h, w]), device)
    }
}

/// Runs the reverse process from pure noise. `predict(x_t, t)` returns the network output
/// for every sample at step `t`. Item `i`'s noise comes from `noise`'s stream `i`
/// ([`ItemNoise`]), so its seed fixes its result whatever batch it is sampled in.
///
/// With `clip = Some([lo, hi])` (the data range, when normalization bounds it) each x̂0 is
/// clamped to it and ε̂ recomputed from the clamped x̂0, as guided-diffusion's `clip_denoised`
/// and diffusers' `clip_sample` do; this keeps early, poorly predicted steps from throwing the
/// trajectory out of the data range.
pub fn sample(
    schedule: &NoiseSchedule,
    sampler: Sampler,
    clip: Option<[f32; 2]>,
    item_shape: [usize; 3],
    mut noise: ItemNoise,
    device: &Device,
    mut predict: impl FnMut(Tensor<4>, usize) -> Tensor<4>,
) -> Tensor<4> {
    let mut x = noise.gaussian(item_shape, device);
    let times: Vec<usize> = match sampler {
        Sampler::Ddpm => (0..schedule.len()).rev().collect(),
        Sampler::Ddim { steps, .. } => schedule.ddim_times(steps),
    };
    for (i, &t) in times.iter().enumerate() {
        let output = predict(x.clone(), t);
        let (mut eps, mut x0) = schedule.split(x.clone(), output, t);
        if let Some([lo, hi]) = clip {
            x0 = x0.clamp(lo, hi);
            let ab = schedule.alpha_bars[t];
            eps = (x.clone() - x0.clone() * ab.sqrt()) / (1.0 - ab).sqrt();
        }
        let z = noise.gaussian(item_shape, device);
        x = match sampler {
            Sampler::Ddpm => schedule.ddpm_step(x, x0, t, z),
            Sampler::Ddim { eta, .. } => {
                schedule.ddim_step(eps, x0, t, times.get(i + 1).copied(), eta, z)
            }
        };
    }
    x
}

/// [`sample`] for the items of `seeds` in `chunks` contiguous parts run side by side on the
/// worker pool, concatenated in order. burn's CPU backend runs convolutions and GEMM on every
/// thread but its elementwise kernels on one; parts sampled in parallel fill the threads that
/// one batch leaves idle. Each item's noise comes from its own seed, so the result is that of
/// one [`sample`] over all items. `predict(x_t, t, items)` gets the part's item range.
#[allow(clippy::too_many_arguments)]
pub fn sample_chunked(
    schedule: &NoiseSchedule,
    sampler: Sampler,
    clip: Option<[f32; 2]>,
    item_shape: [usize; 3],
    seeds: &[u64],
    chunks: usize,
    device: &Device,
    predict: impl Fn(Tensor<4>, usize, std::ops::Range<usize>) -> Tensor<4> + Sync,
) -> Tensor<4> {
    use rayon::prelude::*;
    let n = seeds.len();
    let chunks = chunks.clamp(1, n.max(1));
    let per = n.div_ceil(chunks);
    let ranges: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(per.max(1))
        .map(|a| a..(a + per).min(n))
        .collect();
    let parts: Vec<Tensor<4>> = ranges
        .into_par_iter()
        .map(|r| {
            sample(
                schedule,
                sampler,
                clip,
                item_shape,
                ItemNoise::new(&seeds[r.clone()]),
                device,
                |x, t| predict(x, t, r.clone()),
            )
        })
        .collect();
    Tensor::cat(parts, 0)
}
