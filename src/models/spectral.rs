//! Spectral normalization (Miyato et al. 2018) for convolutions and linear layers, as
//! `torch.nn.utils.spectral_norm` does it: the weight, viewed as a matrix W `[out, in·k·k]`,
//! is divided by σ ≈ its largest singular value, estimated by power iteration with a vector
//! u kept between steps as non-trainable state (saved with the model):
//!
//! v = normalize(Wᵀu), u ← normalize(Wv), σ = uᵀWv
//!
//! One iteration per training forward pass; u and v carry no gradient, σ does through W.

use burn::module::{Module, Param, RunningState};
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

/// x / max(‖x‖, 1e-12), as `torch.nn.functional.normalize`.
fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powf_scalar(2.0).sum().sqrt().clamp_min(1e-12);
    x / norm.unsqueeze()
}

/// One power iteration on `w` `[out, in]` from `u` `[out]`; returns σ (with gradient through
/// `w`) and the new u.
pub fn power_iteration(w: Tensor<2>, u: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
    let [out, _] = w.dims();
    let fixed = w.clone().detach();
    let u = u.detach().reshape([1, out]);
    let v = normalize(u.matmul(fixed.clone())); // [1, in]
    let u = normalize(v.clone().matmul(fixed.transpose())); // [1, out]
    let sigma = u.clone().matmul(w).matmul(v.transpose()).reshape([1]);
    (sigma, u.reshape([out]))
}

fn start_vector(n: usize, device: &Device) -> Tensor<1> {
    let u = Tensor::<2>::random([1, n], Distribution::Normal(0.0, 1.0), device);
    normalize(u).reshape([n])
}

/// A spectrally normalized 2-D convolution.
#[derive(Module, Debug)]
pub struct SpectralConv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// The power-iteration vector, `[out]`.
    pub u: RunningState<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
}

impl SpectralConv2d {
    /// `[in, out]` channels, a `k` × `k` kernel; weights uniform in ±1/√fan_in as PyTorch's
    /// default.
    pub fn new(
        channels: [usize; 2],
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        device: &Device,
    ) -> Self {
        let [i, o] = channels;
        let bound = 1.0 / ((i * k * k) as f64).sqrt();
        let dist = Distribution::Uniform(-bound, bound);
        SpectralConv2d {
            weight: Param::from_tensor(Tensor::random([o, i, k, k], dist, device)),
            bias: bias.then(|| Param::from_tensor(Tensor::random([o], dist, device))),
            u: RunningState::new(start_vector(o, device)),
            stride: [stride, stride],
            padding: [padding, padding],
        }
    }

    /// σ of the current weight; with `update` the power iteration advances (training).
    pub fn sigma(&self, update: bool) -> Tensor<1> {
        let w = self.weight.val();
        let [o, i, kh, kw] = w.dims();
        let (sigma, u) = power_iteration(w.reshape([o, i * kh * kw]), self.u.value_sync());
        if update {
            self.u.update(u);
        }
        sigma
    }

    /// The convolution with W / σ.
    pub fn forward(&self, x: Tensor<4>, update: bool) -> Tensor<4> {
        let sigma = self.sigma(update);
        let w = self.weight.val() / sigma.reshape([1, 1, 1, 1]);
        let [ph, pw] = self.padding;
        conv2d(
            x,
            w,
            self.bias.as_ref().map(Param::val),
            ConvOptions::new(self.stride, [ph, pw], [1, 1], 1),
        )
    }
}

/// A spectrally normalized linear layer (weight `[in, out]`, burn's layout).
#[derive(Module, Debug)]
pub struct SpectralLinear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub u: RunningState<Tensor<1>>,
}

impl SpectralLinear {
    pub fn new(i: usize, o: usize, bias: bool, device: &Device) -> Self {
        let bound = 1.0 / (i as f64).sqrt();
        let dist = Distribution::Uniform(-bound, bound);
        SpectralLinear {
            weight: Param::from_tensor(Tensor::random([i, o], dist, device)),
            bias: bias.then(|| Param::from_tensor(Tensor::random([o], dist, device))),
            u: RunningState::new(start_vector(o, device)),
        }
    }

    /// σ of the current weight; with `update` the power iteration advances.
    pub fn sigma(&self, update: bool) -> Tensor<1> {
        // PyTorch's matrix is [out, in], the transpose of burn's storage.
        let (sigma, u) = power_iteration(self.weight.val().transpose(), self.u.value_sync());
        if update {
            self.u.update(u);
        }
        sigma
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>, update: bool) -> Tensor<D> {
        let sigma = self.sigma(update);
        let w = self.weight.val() / sigma.reshape([1, 1]);
        linear(x, w, self.bias.as_ref().map(Param::val))
    }
}
