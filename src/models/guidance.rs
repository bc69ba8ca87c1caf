//! Guidance at sampling time: classifier-free guidance (Ho & Salimans 2022) and Self-Attention
//! Guidance (Hong et al. 2022, arXiv 2210.00939), on the ε scale.
//!
//! With the conditional prediction ε_c, the unconditional ε_u (condition zeroed, as trained
//! with condition dropout) and CFG scale w:
//!
//! ```text
//! ε = ε_u + w · (ε_c - ε_u)            (w = 1: ε = ε_c, no unconditional pass)
//! ```
//!
//! SAG, following the paper's Algorithm 1 and the reference `StableDiffusionSAGPipeline`: take
//! the branch that guidance pushes away from (ε_u when w ≠ 1, else ε_c) with its x̂0 and the
//! middle block's attention map A `[B, heads, N, N]`;
//!
//! ```text
//! m      = 1[ Σ_query mean_heads A > 1 ]          (attention a key receives, above its mean 1)
//! M      = m reshaped to the middle grid, nearest-upsampled to H × W
//! x̃0     = M · blur(x̂0) + (1 - M) · x̂0           (Gaussian blur σ = sag_blur_sigma, 1 in the reference: 9 taps, reflect)
//! x̃_t    = √ᾱ_t x̃0 + √(1 - ᾱ_t) ε                (re-noised with the branch's own ε)
//! ε      = ε + s · (ε_branch - ε(x̃_t))           (same condition as the branch)
//! ```
//!
//! With s = 0 the sampler is exactly the unguided one (the extra pass is skipped).

use burn::tensor::{Tensor, TensorData};

use super::Unet;
use super::diffusion::NoiseSchedule;
use crate::spec::Prediction;

/// Guidance scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    /// Self-Attention Guidance scale s; 0 disables it.
    pub sag: f64,
    /// Classifier-free guidance scale w; 1 disables it.
    pub cfg: f64,
    /// σ in pixels of SAG's Gaussian blur (the reference uses 1).
    pub blur_sigma: f64,
}

impl Default for Guidance {
    fn default() -> Self {
        Guidance {
            sag: 0.0,
            cfg: 1.0,
            blur_sigma: 1.0,
        }
    }
}

/// Host copy of a tensor.
fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap_or_default()
}

/// The grid (h', w') of an attention map over N positions of an `h` × `w` image: the middle
/// grid keeps the image's aspect ratio, h/f × w/f with (h/f)(w/f) = N.
pub fn attention_grid(n: usize, (h, w): (usize, usize)) -> (usize, usize) {
    let f = ((h * w) as f64 / n as f64).sqrt().round().max(1.0) as usize;
    (h / f, w / f)
}

/// The attention each position receives, `[B, H, W]` flattened: attention map `[B, heads, N,
/// N]` over a `grid` = (h, w) with N = h·w, summed over queries and averaged over heads (1 =
/// uniform), upsampled to `size` by nearest neighbour as torch's interpolate (source index
/// floor(dst · in / out)).
pub fn received_attention(
    attention: &Tensor<4>,
    grid: (usize, usize),
    size: (usize, usize),
) -> Vec<f64> {
    let [b, heads, n, _] = attention.dims();
    let a = host(attention);
    let (gh, gw) = grid;
    let (h, w) = size;
    let mut out = vec![0f64; b * h * w];
    for s in 0..b {
        let mut received = vec![0f64; n];
        for head in 0..heads {
            let base = (s * heads + head) * n * n;
            for q in 0..n {
                for (k, r) in received.iter_mut().enumerate() {
                    *r += a[base + q * n + k] as f64;
                }
            }
        }
        for y in 0..h {
            for x in 0..w {
                let k = ((y * gh / h) * gw + x * gw / w).min(n - 1);
                out[(s * h + y) * w + x] = received[k] / heads as f64;
            }
        }
    }
    out
}

/// The SAG mask at image size `[B, 1, H, W]` (1 where the key's received attention is above
/// its mean), from an attention map `[B, heads, N, N]` over a `grid` = (h, w) with N = h·w.
pub fn sag_mask(attention: &Tensor<4>, grid: (usize, usize), size: (usize, usize)) -> Tensor<4> {
    let b = attention.dims()[0];
    let (h, w) = size;
    let out: Vec<f32> = received_attention(attention, grid, size)
        .into_iter()
        .map(|r| if r > 1.0 { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(out, [b, 1, h, w]), &attention.device())
}

/// Gaussian blur with standard deviation `sigma` pixels (kernel radius ⌈4σ⌉, reflect padding)
/// of every channel; σ = 1 gives the kernel of 9 taps the reference SAG code applies to x̂0.
pub fn blur(x: &Tensor<4>, sigma: f64) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let v = host(x);
    let sigma = sigma.max(1e-3);
    let radius = (4.0 * sigma).ceil() as i64;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    let reflect = |i: i64, n: usize| -> usize {
        let n = n as i64;
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as usize
    };
    let mut tmp = vec![0f32; v.len()];
    let mut out = vec![0f32; v.len()];
    for p in 0..b * c {
        let plane = &v[p * h * w..(p + 1) * h * w];
        for y in 0..h {
            for xx in 0..w {
                let s: f64 = kernel
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        k * plane[y * w + reflect(xx as i64 + i as i64 - radius, w)] as f64
                    })
                    .sum();
                tmp[p * h * w + y * w + xx] = s as f32;
            }
        }
        for y in 0..h {
            for xx in 0..w {
                let s: f64 = kernel
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        k * tmp[p * h * w + reflect(y as i64 + i as i64 - radius, h) * w + xx]
                            as f64
                    })
                    .sum();
                out[p * h * w + y * w + xx] = s as f32;
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [b, c, h, w]), &x.device())
}

/// Network input: the noisy image and the condition (if any).
fn input(x: Tensor<4>, cond: Option<&Tensor<4>>) -> Tensor<4> {
    match cond {
        Some(c) => Tensor::cat(vec![x, c.clone()], 1),
        None => x,
    }
}

/// ε from a network output at step `t`.
fn epsilon(schedule: &NoiseSchedule, x_t: &Tensor<4>, out: Tensor<4>, t: usize) -> Tensor<4> {
    schedule.split(x_t.clone(), out, t).0
}

/// The guided network output at step `t`, in the schedule's prediction space (so the
/// samplers use it as they use a plain output). `cond` is the condition, `null` the zeroed
/// condition of the unconditional branch.
pub fn guided_output(
    net: &Unet,
    schedule: &NoiseSchedule,
    guidance: Guidance,
    x_t: Tensor<4>,
    t: usize,
    cond: Option<&Tensor<4>>,
    null: Option<&Tensor<4>>,
) -> Tensor<4> {
    let [b, _, h, w] = x_t.dims();
    let times = vec![t as f32; b];
    let conditional = net.forward(input(x_t.clone(), cond), &times);
    let use_cfg = guidance.cfg != 1.0 && cond.is_some();
    if !use_cfg && guidance.sag == 0.0 {
        // Unguided: the network's own output, untouched by a round trip through ε.
        return conditional.output;
    }
    let eps_c = epsilon(schedule, &x_t, conditional.output, t);
    let (mut eps, branch) = if use_cfg {
        let unconditional = net.forward(input(x_t.clone(), null), &times);
        let eps_u = epsilon(schedule, &x_t, unconditional.output, t);
        let eps = eps_u.clone() + (eps_c - eps_u.clone()) * guidance.cfg;
        (eps, (eps_u, unconditional.middle_attention, null))
    } else {
        (eps_c.clone(), (eps_c, conditional.middle_attention, cond))
    };
    if guidance.sag != 0.0
        && let (eps_b, Some(map), branch_cond) = branch
    {
        let ab = schedule.alpha_bars[t];
        let x0 = (x_t.clone() - eps_b.clone() * (1.0 - ab).sqrt()) / ab.sqrt();
        let mask = sag_mask(&map, attention_grid(map.dims()[2], (h, w)), (h, w));
        let degraded =
            blur(&x0, guidance.blur_sigma) * mask.clone() + x0 * (mask.ones_like() - mask);
        let x_tilde = degraded * ab.sqrt() + eps_b.clone() * (1.0 - ab).sqrt();
        let out = net
            .forward(input(x_tilde.clone(), branch_cond), &times)
            .output;
        let eps_tilde = epsilon(schedule, &x_tilde, out, t);
        eps = eps + (eps_b - eps_tilde) * guidance.sag;
    }
    match schedule.prediction {
        Prediction::Epsilon => eps,
        Prediction::V => {
            let ab = schedule.alpha_bars[t];
            (eps - x_t * (1.0 - ab).sqrt()) / ab.sqrt()
        }
    }
}
