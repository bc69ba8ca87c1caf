//! `baseline-unet` applied: the model's UNet trained as a deterministic regressor (L1) from
//! the condition to the target (trained by `train::regression`), applied like a
//! model. It is the comparison every synthesis paper makes: a generative model is worth its
//! cost only where it beats this network.

use burn::tensor::Device;
use ndarray::Array4;

use super::{Generator, SynthError, check_batch, host, to_array, with_rows};
use crate::conditioning::Conditioning;
use crate::dataset::ManifestRow;
use crate::models::Unet;

/// The trained regressor, applied like a model.
pub struct UnetBaseline {
    pub net: Unet,
    pub conditioning: Conditioning,
    pub device: Device,
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
        let b = slices.dim().0;
        check_batch(b, rows.len(), seeds.len())?;
        let values = host(slices);
        let Some(cond) = self
            .conditioning
            .tensors(&with_rows(&values, rows), None, &self.device)
            .cond
        else {
            return Err(SynthError::Setup(
                "baseline-unet needs a condition (a task with inputs or labels)".into(),
            ));
        };
        to_array(self.net.forward(cond, &vec![0.0; b]).output)
    }

    fn sampler(&self) -> String {
        "deterministic".into()
    }

    fn guidance(&self) -> String {
        "none".into()
    }
}
