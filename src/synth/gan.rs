//! The self-attention GAN as a [`Generator`]: the EMA generator of a checkpoint, fed as in
//! training without dropout (inputs with availability masks, the one-hot label map with a
//! noise image, or z with the slice's position class), running batch-norm statistics.

use burn::tensor::{Device, Tensor};
use ndarray::{Array3, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Generator, SynthError, check_batch, host, to_array, with_rows};
use crate::conditioning::{GanInputs, SliceClasses};
use crate::dataset::ManifestRow;
use crate::models::gan::{GanArch, GanGenerator, GanInput};
use crate::models::{attention_grid, received_attention};

/// A trained GAN generator ready to apply.
#[derive(Debug, Clone)]
pub struct SaganGenerator {
    pub net: GanGenerator,
    pub inputs: GanInputs,
    /// Position classes of the subjects being synthesized (class-conditional generation).
    pub classes: SliceClasses,
    /// Truncation of the latents (`synthesize.truncation`).
    pub truncation: Option<f64>,
    pub device: Device,
}

impl SaganGenerator {
    /// The generator's output and attention map `[B, N, N]` for `slices`.
    fn run(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        seeds: &[u64],
    ) -> Result<(Tensor<4>, Tensor<3>), SynthError> {
        check_batch(slices.dim().0, rows.len(), seeds.len())?;
        let values = host(slices);
        let slices = with_rows(&values, rows);
        // Each slice's noise and latent from its own seed, so its output does not depend on
        // the batch it is in.
        let parts = seeds
            .iter()
            .enumerate()
            .map(|(n, &seed)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let (_, input) = self.inputs.build(
                    &slices.item(n),
                    &self.classes,
                    false,
                    self.truncation,
                    &mut rng,
                    &self.device,
                );
                input
            })
            .collect();
        let input = GanInput::cat(parts);
        Ok(self
            .net
            .forward(&input, self.inputs.spec.output_range, false))
    }
}

impl Generator for SaganGenerator {
    fn targets(&self) -> Vec<String> {
        self.inputs
            .conditioning
            .targets
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    fn generate(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        seeds: &[u64],
    ) -> Result<Array4<f32>, SynthError> {
        let (out, _) = self.run(slices, rows, seeds)?;
        to_array(out)
    }

    /// The generator's attention block (the bottleneck of the UNet, or the configured
    /// resolution of the noise generator) on the same pass that produced `fake`: the attention
    /// each position receives, 1 = uniform, upsampled to the slice.
    fn attention(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        fake: &Array4<f32>,
        seeds: &[u64],
    ) -> Option<Result<Array3<f32>, SynthError>> {
        let run = || -> Result<Array3<f32>, SynthError> {
            let (b, _, h, w) = fake.dim();
            let (_, map) = self.run(slices, rows, seeds)?;
            let map = map.unsqueeze_dim::<4>(1);
            let grid = attention_grid(map.dims()[2], (h, w));
            let received = received_attention(&map, grid, (h, w));
            Array3::from_shape_vec((b, h, w), received.iter().map(|&r| r as f32).collect())
                .map_err(|e| SynthError::Setup(e.to_string()))
        };
        Some(run())
    }

    fn sampler(&self) -> String {
        match self.inputs.spec.arch {
            GanArch::Noise => match self.truncation {
                Some(t) => format!("gan z~N(0,I) truncation={t}"),
                None => "gan z~N(0,I)".to_owned(),
            },
            GanArch::Unet if self.inputs.spec.noise_channels > 0 => {
                "gan one pass, noise image".to_owned()
            }
            GanArch::Unet => "gan one pass (deterministic)".to_owned(),
        }
    }

    fn guidance(&self) -> String {
        "none".to_owned()
    }
}
