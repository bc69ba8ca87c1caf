//! The diffusion model as a [`Generator`]: the EMA weights of a checkpoint, sampled with the
//! spec's sampler and guidance, conditioned as in training (inputs with their availability
//! masks, or the one-hot label map).

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array4};

use super::{Generator, SynthError, check_batch, host, to_array, with_rows};
use crate::conditioning::Conditioning;
use crate::dataset::ManifestRow;
use crate::device::sampling_parts;
use crate::models::diffusion::{ItemNoise, NoiseSchedule, Sampler, sample_chunked};
use crate::models::{Guidance, Unet, attention_grid, guided_output, received_attention};
use crate::spec::{SamplerKind, SynthesizeSection};

/// A trained diffusion model ready to sample.
#[derive(Debug, Clone)]
pub struct DiffusionGenerator {
    pub net: Unet,
    pub schedule: NoiseSchedule,
    pub conditioning: Conditioning,
    pub sampler: Sampler,
    pub guidance: Guidance,
    /// The data range x̂0 is clamped to, when normalization bounds it.
    pub clip: Option<[f32; 2]>,
    pub device: Device,
}

/// The sampler and guidance `[synthesize]` asks for.
pub fn sampling(section: &SynthesizeSection) -> (Sampler, Guidance) {
    let sampler = match section.sampler.kind {
        SamplerKind::Ddpm => Sampler::Ddpm,
        SamplerKind::Ddim => Sampler::Ddim {
            steps: section.sampler.steps as usize,
            eta: section.sampler.eta,
        },
    };
    let guidance = Guidance {
        sag: section.guidance.sag,
        cfg: section.guidance.cfg,
        blur_sigma: section.guidance.sag_blur_sigma,
    };
    (sampler, guidance)
}

impl DiffusionGenerator {
    /// The condition tensor for `slices` (inputs with availability masks, or the one-hot
    /// label), as in training without dropout; `None` for unconditional models.
    fn condition(&self, slices: &Array4<f32>, rows: &[&ManifestRow]) -> Option<Tensor<4>> {
        let values = host(slices);
        self.conditioning
            .tensors(&with_rows(&values, rows), None, &self.device)
            .cond
    }
}

impl Generator for DiffusionGenerator {
    fn targets(&self) -> Vec<String> {
        self.conditioning
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
        let (b, _, h, w) = slices.dim();
        check_batch(b, rows.len(), seeds.len())?;
        let cond = self.condition(slices, rows);
        let null = cond.as_ref().map(Tensor::zeros_like);
        let outputs = self.conditioning.targets.len();
        let part = |t: &Option<Tensor<4>>, items: &std::ops::Range<usize>| {
            t.as_ref()
                .map(|t| t.clone().narrow(0, items.start, items.len()))
        };
        let result = sample_chunked(
            &self.schedule,
            self.sampler,
            self.clip,
            [outputs, h, w],
            seeds,
            sampling_parts(&self.device, b),
            &self.device,
            |x, t, items| {
                guided_output(
                    &self.net,
                    &self.schedule,
                    self.guidance,
                    x,
                    t,
                    part(&cond, &items).as_ref(),
                    part(&null, &items).as_ref(),
                )
            },
        );
        to_array(result)
    }

    /// The middle block's attention when the network denoises `fake` noised to t = T/2:
    /// the attention each position receives, averaged over heads and queries (1 = uniform),
    /// upsampled to the slice (nearest, as SAG's mask).
    fn attention(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        fake: &Array4<f32>,
        seeds: &[u64],
    ) -> Option<Result<Array3<f32>, SynthError>> {
        let run = || -> Result<Option<Array3<f32>>, SynthError> {
            let (b, o, h, w) = fake.dim();
            check_batch(b, rows.len(), seeds.len())?;
            let cond = self.condition(slices, rows);
            let x0 = Tensor::<4>::from_data(
                TensorData::new(fake.iter().copied().collect::<Vec<f32>>(), [b, o, h, w]),
                &self.device,
            );
            let t = self.schedule.len() / 2;
            let noise = ItemNoise::new(seeds).gaussian([o, h, w], &self.device);
            let x_t = self.schedule.q_sample(x0, noise, &vec![t; b]);
            let input = match cond {
                Some(c) => Tensor::cat(vec![x_t, c], 1),
                None => x_t,
            };
            let Some(map) = self.net.forward(input, &vec![t as f32; b]).middle_attention else {
                return Ok(None);
            };
            let grid = attention_grid(map.dims()[2], (h, w));
            let received = received_attention(&map, grid, (h, w));
            let out =
                Array3::from_shape_vec((b, h, w), received.iter().map(|&r| r as f32).collect())
                    .map_err(|e| SynthError::Setup(e.to_string()))?;
            Ok(Some(out))
        };
        run().transpose()
    }

    fn sampler(&self) -> String {
        match self.sampler {
            Sampler::Ddpm => format!("ddpm steps={}", self.schedule.len()),
            Sampler::Ddim { steps, eta } => format!("ddim steps={steps} eta={eta}"),
        }
    }

    fn guidance(&self) -> String {
        format!(
            "sag={} sag_blur_sigma={} cfg={}",
            self.guidance.sag, self.guidance.blur_sigma, self.guidance.cfg
        )
    }
}
