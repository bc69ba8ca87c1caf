//! The self-attention GANs: [`noise`] (SAGAN / BigGAN-style generation from z, optionally
//! class-conditional) and [`paired`] (a UNet generator and a PatchGAN discriminator for
//! translation, missing-modality synthesis and label-to-image), both built from the SAGAN
//! attention block and spectral normalization. [`GanSpec`] says which, and how large.

pub mod noise;
mod norm;
pub mod paired;

pub use noise::{NoiseGenerator, ProjectionDiscriminator};
pub use norm::ConditionalBatchNorm;
pub use paired::{PatchDiscriminator, UnetGenerator};

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Nearest-neighbour ×2 upsampling.
pub(crate) fn upsample(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]),
    )
}

/// Index of the feature-map size in `sizes` closest to `target` (ties to the first): where an
/// attention block sits.
pub(crate) fn nearest(sizes: &[usize], target: usize) -> usize {
    sizes
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.abs_diff(target))
        .map_or(0, |(i, _)| i)
}

/// Which pair of networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanArch {
    /// Residual generator from z and a projection discriminator (`generation`).
    Noise,
    /// UNet generator and PatchGAN discriminator (paired tasks).
    Unet,
}

/// The networks' shape, resolved from the pipeline file and the data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GanSpec {
    pub arch: GanArch,
    /// Generator input channels (paired: the condition, then `noise_channels` of noise).
    pub in_channels: usize,
    /// Channels of Gaussian noise appended to the generator's input (label-to-image, so
    /// variants differ).
    pub noise_channels: usize,
    pub out_channels: usize,
    pub base_channels: usize,
    /// Width multiplier per UNet level (paired).
    pub channel_mult: Vec<usize>,
    /// Largest GroupNorm group count (paired).
    pub groups: usize,
    pub z_dim: usize,
    /// Classes of the class-conditional generator; 0 for none.
    pub classes: usize,
    /// `[H, W]` of the slices.
    pub image_size: [usize; 2],
    /// Feature-map size the attention blocks sit closest to.
    pub attention_resolution: usize,
    /// The data range the output is mapped into with a tanh; `None` leaves it unbounded.
    pub output_range: Option<[f32; 2]>,
}

impl GanSpec {
    /// Up (and down) blocks of the noise networks: the resolution doubles from the largest
    /// start of at least 4 pixels (shorter side) that divides both sides.
    pub fn noise_blocks(&self) -> usize {
        let [h, w] = self.image_size;
        let mut n = 0;
        while (h.min(w) >> (n + 1)) >= 4
            && h.is_multiple_of(1 << (n + 1))
            && w.is_multiple_of(1 << (n + 1))
        {
            n += 1;
        }
        n
    }

    /// Builds the generator (not seeded; see [`crate::models::seeded`]).
    pub fn generator(&self, device: &Device) -> GanGenerator {
        match self.arch {
            GanArch::Noise => GanGenerator::Noise(NoiseGenerator::new(self, device)),
            GanArch::Unet => GanGenerator::Unet(UnetGenerator::new(self, device)),
        }
    }

    /// Builds the discriminator.
    pub fn discriminator(&self, device: &Device) -> GanDiscriminator {
        match self.arch {
            GanArch::Noise => {
                GanDiscriminator::Projection(ProjectionDiscriminator::new(self, device))
            }
            GanArch::Unet => GanDiscriminator::Patch(PatchDiscriminator::new(self, device)),
        }
    }
}

/// What a generator and its discriminator are given besides images.
#[derive(Debug, Clone, Default)]
pub struct GanInput {
    /// Latents `[B, z_dim]` (noise networks).
    pub z: Option<Tensor<2>>,
    /// One-hot classes `[B, K]` (class-conditional noise networks).
    pub classes: Option<Tensor<2>>,
    /// The condition `[B, cond, H, W]` (paired networks).
    pub cond: Option<Tensor<4>>,
    /// Noise images appended to the condition for the generator (`[B, noise, H, W]`).
    pub noise: Option<Tensor<4>>,
}

impl GanInput {
    /// The inputs of several batches as one, in order (every part built alike).
    pub fn cat(parts: Vec<GanInput>) -> GanInput {
        fn join<const D: usize>(parts: Vec<Option<Tensor<D>>>) -> Option<Tensor<D>> {
            let parts: Option<Vec<Tensor<D>>> = parts.into_iter().collect();
            parts.filter(|p| !p.is_empty()).map(|p| Tensor::cat(p, 0))
        }
        let mut z = Vec::new();
        let mut classes = Vec::new();
        let mut cond = Vec::new();
        let mut noise = Vec::new();
        for p in parts {
            z.push(p.z);
            classes.push(p.classes);
            cond.push(p.cond);
            noise.push(p.noise);
        }
        GanInput {
            z: join(z),
            classes: join(classes),
            cond: join(cond),
            noise: join(noise),
        }
    }
}

/// The generator of either architecture (built once per run, so the variants' size
/// difference does not matter).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GanGenerator {
    Noise(NoiseGenerator),
    Unet(UnetGenerator),
}

/// The discriminator of either architecture.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GanDiscriminator {
    Projection(ProjectionDiscriminator),
    Patch(PatchDiscriminator),
}

/// Maps raw generator output into `range` with a tanh.
fn to_range(x: Tensor<4>, range: Option<[f32; 2]>) -> Tensor<4> {
    match range {
        Some([lo, hi]) => (x.tanh() + 1.0) * (0.5 * (hi - lo)) + lo,
        None => x,
    }
}

impl GanGenerator {
    /// Images `[B, out, H, W]` in the data range and the attention map `[B, N, N]`. `train`
    /// uses batch statistics and advances the spectral norms.
    pub fn forward(
        &self,
        input: &GanInput,
        range: Option<[f32; 2]>,
        train: bool,
    ) -> (Tensor<4>, Tensor<3>) {
        let (raw, map) = match self {
            GanGenerator::Noise(g) => {
                let z = input.z.clone().expect("the noise generator is given z");
                g.forward(z, input.classes.clone(), train)
            }
            GanGenerator::Unet(g) => {
                let cond = input
                    .cond
                    .clone()
                    .expect("the UNet generator is given a condition");
                let x = match &input.noise {
                    Some(n) => Tensor::cat(vec![cond, n.clone()], 1),
                    None => cond,
                };
                g.forward(x, train)
            }
        };
        (to_range(raw, range), map)
    }

    /// γ of the attention block (on the device).
    pub fn gamma(&self) -> Tensor<1> {
        match self {
            GanGenerator::Noise(g) => g.gamma(),
            GanGenerator::Unet(g) => g.gamma(),
        }
    }
}

impl GanDiscriminator {
    /// Scores (any shape; hinge losses average them) and the attention map.
    pub fn forward(
        &self,
        image: Tensor<4>,
        input: &GanInput,
        train: bool,
    ) -> (Tensor<2>, Tensor<3>) {
        match self {
            GanDiscriminator::Projection(d) => d.forward(image, input.classes.clone(), train),
            GanDiscriminator::Patch(d) => {
                let cond = input
                    .cond
                    .clone()
                    .expect("the PatchGAN is given the condition");
                let (scores, map) = d.forward(cond, image, train);
                let [b, _, h, w] = scores.dims();
                (scores.reshape([b, h * w]), map)
            }
        }
    }

    /// γ of the attention block (on the device).
    pub fn gamma(&self) -> Tensor<1> {
        match self {
            GanDiscriminator::Projection(d) => d.gamma(),
            GanDiscriminator::Patch(d) => d.gamma(),
        }
    }
}

/// Standard normal latents `[b, z_dim]`; with `truncation` t, entries beyond ±t are drawn again
/// (the truncation trick, Brock et al. 2019).
pub fn latents(
    b: usize,
    z_dim: usize,
    truncation: Option<f64>,
    rng: &mut impl Rng,
    device: &Device,
) -> Tensor<2> {
    let values: Vec<f32> = (0..b * z_dim)
        .map(|_| {
            loop {
                let v: f64 = StandardNormal.sample(rng);
                match truncation {
                    Some(t) if v.abs() > t => continue,
                    _ => break v as f32,
                }
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [b, z_dim]), device)
}

/// One-hot rows `[classes.len(), k]`.
pub fn one_hot(classes: &[usize], k: usize, device: &Device) -> Tensor<2> {
    let mut values = vec![0f32; classes.len() * k];
    for (i, &c) in classes.iter().enumerate() {
        values[i * k + c.min(k.saturating_sub(1))] = 1.0;
    }
    Tensor::from_data(TensorData::new(values, [classes.len(), k]), device)
}
