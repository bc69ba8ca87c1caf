//! The diffusion model as a [`Generator`]: the EMA weights of a checkpoint, sampled with the
//! spec's sampler and guidance, conditioned as in training (inputs with their availability
//! masks, or the one-hot label map).

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array4;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Generator, SynthError};
use crate::dataset::ManifestRow;
use crate::models::diffusion::{NoiseSchedule, Sampler, sample};
use crate::models::{Guidance, Unet, UnetSpec, guided_output};
use crate::spec::{SamplerKind, SynthesizeSection};
use crate::train::diffusion::Conditioning;

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
    /// Loads the EMA weights (`ema.bpk`) of the checkpoint folder `checkpoint` into a network
    /// of shape `spec`.
    pub fn load_weights(
        spec: &UnetSpec,
        checkpoint: &Path,
        device: &Device,
    ) -> Result<Unet, SynthError> {
        let path = checkpoint.join("ema.bpk");
        if !path.is_file() {
            return Err(SynthError::Checkpoint {
                path,
                what: "no EMA weights here; expected a checkpoint folder written by medsynth \
                       training (step-NNNNNNNN/)"
                    .into(),
            });
        }
        let record = ModuleRecord::load(&path).map_err(|e| SynthError::Checkpoint {
            path: path.clone(),
            what: format!("{e:?}"),
        })?;
        let net = spec.init(device);
        net.try_load_record(record)
            .map_err(|e| SynthError::Checkpoint {
                path,
                what: format!(
                    "the weights do not fit the model the pipeline file describes: {e:?}"
                ),
            })
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
        seed: u64,
    ) -> Result<Array4<f32>, SynthError> {
        let (b, c, h, w) = slices.dim();
        if rows.len() != b {
            return Err(SynthError::Setup(format!(
                "{b} slices but {} manifest rows",
                rows.len()
            )));
        }
        let available: Vec<Vec<bool>> = rows
            .iter()
            .map(|r| self.conditioning.available(r))
            .collect();
        let host: Vec<f32> = slices.iter().copied().collect();
        // No dropout at sampling, so the generator is not used.
        let mut unused = ChaCha8Rng::seed_from_u64(0);
        let (_, cond) =
            self.conditioning
                .split(&host, [b, c, h, w], &available, false, &mut unused);
        let k = self.conditioning.cond_channels();
        let cond = (k > 0)
            .then(|| Tensor::<4>::from_data(TensorData::new(cond, [b, k, h, w]), &self.device));
        let null = cond.as_ref().map(Tensor::zeros_like);
        let outputs = self.conditioning.targets.len();
        let result = sample(
            &self.schedule,
            self.sampler,
            self.clip,
            [b, outputs, h, w],
            seed,
            &self.device,
            |x, t| {
                guided_output(
                    &self.net,
                    &self.schedule,
                    self.guidance,
                    x,
                    t,
                    cond.as_ref(),
                    null.as_ref(),
                )
            },
        );
        let values = result
            .to_data()
            .try_to_vec::<f32>()
            .map_err(|e| SynthError::Setup(format!("reading samples back: {e:?}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(SynthError::Setup(
                "the sampler produced non-finite values; the checkpoint may be from a diverged run"
                    .into(),
            ));
        }
        Array4::from_shape_vec((b, outputs, h, w), values)
            .map_err(|e| SynthError::Setup(e.to_string()))
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
