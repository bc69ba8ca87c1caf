//! Conditional batch normalization (de Vries et al. 2017; BigGAN, Brock et al. 2019): batch
//! statistics without an affine part, then a per-sample gain and bias that are spectrally
//! normalized linear functions of a conditioning vector (BigGAN-deep's shared class embedding
//! concatenated with z; with no classes, z alone, which is self-modulation, Chen et al. 2019).
//!
//! y = x̂ · (1 + W_g c) + W_b c, x̂ = (x - μ_batch) / √(σ²_batch + ε) while training and
//! (x - μ_run) / √(σ²_run + ε) when sampling; the running statistics are non-trainable state
//! saved with the model (momentum 0.1 as `torch.nn.BatchNorm2d`).

use burn::module::{Module, RunningState};
use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::{Device, Tensor};

use crate::models::spectral::SpectralLinear;

const MOMENTUM: f64 = 0.1;
const EPSILON: f64 = 1e-5;

/// Conditional batch norm over `channels` feature maps, conditioned on a `cond`-sized vector.
#[derive(Module, Debug)]
pub struct ConditionalBatchNorm {
    gain: SpectralLinear,
    bias: SpectralLinear,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
}

impl ConditionalBatchNorm {
    pub fn new(channels: usize, cond: usize, device: &Device) -> Self {
        ConditionalBatchNorm {
            gain: SpectralLinear::new(cond, channels, false, device),
            bias: SpectralLinear::new(cond, channels, false, device),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    /// `train` normalizes with the batch's statistics and updates the running ones (and the
    /// spectral norms' power iteration); otherwise the running statistics are used.
    ///
    /// # Shapes
    /// `x` `[B, C, H, W]`, `cond` `[B, cond]` -> `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>, cond: &Tensor<2>, train: bool) -> Tensor<4> {
        let device = x.device();
        let [_, c, _, _] = x.dims();
        let ones = Tensor::<1>::ones([c], &device);
        let zeros = Tensor::<1>::zeros([c], &device);
        let normalized = if train {
            let out = batch_norm_train(x, ones, zeros, EPSILON);
            let mean = self.running_mean.value_sync().to_device(&device) * (1.0 - MOMENTUM)
                + out.mean.detach() * MOMENTUM;
            let var = self.running_var.value_sync().to_device(&device) * (1.0 - MOMENTUM)
                + out.variance.detach() * MOMENTUM;
            self.running_mean.update(mean.detach());
            self.running_var.update(var.detach());
            out.output
        } else {
            let mean = self.running_mean.value_sync().to_device(&device);
            let var = self.running_var.value_sync().to_device(&device);
            batch_norm(x, ones, zeros, mean, var, EPSILON)
        };
        let gain = self.gain.forward(cond.clone(), train) + 1.0;
        let bias = self.bias.forward(cond.clone(), train);
        normalized * gain.unsqueeze_dims::<4>(&[2, 3]) + bias.unsqueeze_dims::<4>(&[2, 3])
    }
}
