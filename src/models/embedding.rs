//! The diffusion time step as a vector: sinusoidal features (Vaswani et al. 2017, as DDPM uses
//! them) followed by a two-layer MLP with SiLU.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

/// Sinusoidal features of time steps: for i < dim/2, `cos(t · f_i)` then `sin(t · f_i)` with
/// `f_i = exp(-ln(10000) · i / (dim/2))`, as in the reference DDPM / guided-diffusion code.
///
/// # Shapes
/// `t` `[B]` -> `[B, dim]`
pub fn timestep_embedding(t: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut values = Vec::with_capacity(t.len() * dim);
    for &step in t {
        let freqs = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp());
        let args: Vec<f64> = freqs.map(|f| step as f64 * f).collect();
        values.extend(args.iter().map(|a| a.cos() as f32));
        values.extend(args.iter().map(|a| a.sin() as f32));
        values.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Tensor::from_data(TensorData::new(values, [t.len(), dim]), device)
}

/// The time MLP: sinusoidal features of size `dim`, then Linear(dim, 4·dim), SiLU,
/// Linear(4·dim, 4·dim).
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    first: Linear,
    second: Linear,
    dim: usize,
}

impl TimeEmbedding {
    pub fn new(dim: usize, device: &Device) -> Self {
        TimeEmbedding {
            first: LinearConfig::new(dim, 4 * dim).init(device),
            second: LinearConfig::new(4 * dim, 4 * dim).init(device),
            dim,
        }
    }

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        4 * self.dim
    }

    /// # Shapes
    /// `t` `[B]` -> `[B, 4·dim]`
    pub fn forward(&self, t: &[f32], device: &Device) -> Tensor<2> {
        let x = timestep_embedding(t, self.dim, device);
        self.second.forward(silu(self.first.forward(x)))
    }
}
