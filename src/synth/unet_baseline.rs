//! `baseline-unet`: the model's UNet trained as a deterministic regressor (L1) from the
//! condition to the target, on the same training slices, epochs and optimizer as the model.
//! It is the comparison every synthesis paper makes: a generative model is worth its cost
//! only where it beats this network.
//!
//! The condition is the model's (inputs with availability masks and modality dropout, or the
//! one-hot label), so a missing input is handled as the model handles it.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array4;
use rand_chacha::ChaCha8Rng;

use super::{Generator, SynthError, check_batch, to_array};
use crate::dataset::{ManifestRow, SliceSet};
use crate::models::{Unet, UnetSpec};
use crate::spec::{ModelSection, TrainSection};
use crate::train::Checkpoints;
use crate::train::diffusion::Conditioning;
use crate::train::supervised::{Examples, Objective, SupervisedTrainer};

/// Condition -> target pairs, as the model's conditioning makes them.
pub struct Regression(pub Conditioning);

impl Examples for Regression {
    fn in_channels(&self) -> usize {
        self.0.cond_channels()
    }
    fn out_channels(&self) -> usize {
        self.0.targets.len()
    }
    fn usable(&self, row: &ManifestRow) -> bool {
        self.0.trains_on(row)
    }
    fn split(
        &self,
        slices: &[f32],
        dims: [usize; 4],
        rows: &[&ManifestRow],
        train: bool,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<f32>) {
        let available: Vec<Vec<bool>> = rows.iter().map(|r| self.0.available(r)).collect();
        let (target, cond) = self.0.split(slices, dims, &available, train, rng);
        (cond, target)
    }
    fn fingerprint(&self) -> serde_json::Value {
        self.0.fingerprint()
    }
}

/// The trained regressor, applied like a model.
pub struct UnetBaseline {
    net: Unet,
    conditioning: Conditioning,
    device: Device,
}

impl UnetBaseline {
    /// Trains (or resumes, or reloads when finished) the regressor on `train`, validating on
    /// `val`, with checkpoints under `dir`.
    pub fn fit(
        model: &ModelSection,
        train_section: &TrainSection,
        seed: u64,
        (train, val): (&SliceSet, Option<&SliceSet>),
        dir: &Path,
        device: &Device,
    ) -> Result<Self, SynthError> {
        let setup = |e: crate::train::TrainError| SynthError::Setup(format!("baseline-unet: {e}"));
        let conditioning = Conditioning::new(model, train).map_err(setup)?;
        if conditioning.cond_channels() == 0 {
            return Err(SynthError::Setup(
                "baseline-unet needs a condition (a task with inputs or labels)".into(),
            ));
        }
        let (_, _, h, w) = train.dim();
        let mut spec = UnetSpec::from_model(
            model,
            conditioning.cond_channels(),
            conditioning.targets.len(),
            h.min(w),
        );
        // A regressor's attention cannot depend on a time step it does not have.
        spec.time_dependent = false;
        let examples = Regression(conditioning.clone());
        let trainer = SupervisedTrainer {
            spec,
            objective: Objective::L1,
            examples: &examples,
            train: train_section.clone(),
            seed: crate::synth::unit_seed(seed, "baseline-unet"),
            checkpoints: Checkpoints::new(dir.join("checkpoints")),
            log: dir.join("train_log.parquet"),
            progress: true,
        };
        tracing::info!(
            slices = train.len(),
            "training baseline-unet (L1 regressor)"
        );
        let (net, _) = trainer.run(train, val, device).map_err(setup)?;
        Ok(UnetBaseline {
            net,
            conditioning,
            device: device.clone(),
        })
    }
}

impl Generator for UnetBaseline {
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
        let (b, c, h, w) = slices.dim();
        check_batch(b, rows.len(), seeds.len())?;
        let host: Vec<f32> = slices.iter().copied().collect();
        let available: Vec<Vec<bool>> = rows
            .iter()
            .map(|r| self.conditioning.available(r))
            .collect();
        let mut unused = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let (_, cond) =
            self.conditioning
                .split(&host, [b, c, h, w], &available, false, &mut unused);
        let cond = Tensor::<4>::from_data(
            TensorData::new(cond, [b, self.conditioning.cond_channels(), h, w]),
            &self.device,
        );
        to_array(self.net.forward(cond, &vec![0.0; b]).output)
    }

    fn sampler(&self) -> String {
        "deterministic".into()
    }

    fn guidance(&self) -> String {
        "none".into()
    }
}
