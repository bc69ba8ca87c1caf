//! Training `baseline-unet`: the model's UNet as a deterministic L1 regressor from the
//! model's condition to its target, on the same training slices, epochs and optimizer as the
//! model. The condition is the model's (inputs with availability masks and modality dropout,
//! or the one-hot label), so a missing input is handled as the model handles it.

use std::path::Path;

use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;

use super::supervised::{Examples, Objective, SupervisedTrainer};
use super::{Checkpoints, TrainError};
use crate::conditioning::Conditioning;
use crate::dataset::{ManifestRow, SliceSet, Slices};
use crate::models::{Unet, UnetSpec};
use crate::spec::{ModelSection, TrainSection};

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
    fn split(&self, slices: &Slices, dropout: Option<&mut ChaCha8Rng>) -> (Vec<f32>, Vec<f32>) {
        let (target, cond) = self.0.split(slices, dropout);
        (cond, target)
    }
    fn fingerprint(&self) -> serde_json::Value {
        self.0.fingerprint()
    }
}

/// Trains (or resumes, or reloads when finished) the regressor on `train`, validating on
/// `val`, with checkpoints under `dir` and every draw from `seed`. Returns the averaged
/// network and the conditioning it takes.
pub fn fit(
    model: &ModelSection,
    train_section: &TrainSection,
    seed: u64,
    (train, val): (&SliceSet, Option<&SliceSet>),
    dir: &Path,
    device: &Device,
) -> Result<(Unet, Conditioning), TrainError> {
    let conditioning = Conditioning::new(model, train).map_err(TrainError::Setup)?;
    if conditioning.cond_channels() == 0 {
        return Err(TrainError::Setup(
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
        seed,
        checkpoints: Checkpoints::new(dir.join("checkpoints")),
        log: dir.join("train_log.parquet"),
        max_steps: None,
        progress: true,
    };
    tracing::info!(
        slices = train.len(),
        "training baseline-unet (L1 regressor)"
    );
    let (net, _) = trainer.run(train, val, device)?;
    Ok((net, conditioning))
}
