//! The SAGAN self-attention block (Zhang et al. 2019, "Self-Attention Generative Adversarial
//! Networks", eq. 1-3), with spectrally normalized 1×1 convolutions as SAGAN uses in both
//! the generator and the discriminator:
//!
//! f(x) = W_f x, g(x) = W_g x (C → C/8), h(x) = W_h x (C → C),
//! β_{j,i} = softmax_i(f(x_i)ᵀ g(x_j)), o_j = W_v Σ_i β_{j,i} h(x_i), y = x + γ·o,
//!
//! with γ a learned scalar initialised to 0, so the block starts as the identity and the
//! network learns how much non-local evidence to use.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::spectral::SpectralConv2d;

/// SAGAN's attention block over `channels` feature maps (at least 8).
#[derive(Module, Debug)]
pub struct SaganAttention {
    f: SpectralConv2d,
    g: SpectralConv2d,
    h: SpectralConv2d,
    v: SpectralConv2d,
    /// The residual gate γ (starts at 0).
    pub gamma: Param<Tensor<1>>,
}

impl SaganAttention {
    pub fn new(channels: usize, device: &Device) -> Self {
        let c8 = (channels / 8).max(1);
        let conv = |i, o| SpectralConv2d::new([i, o], 1, 1, 0, false, device);
        SaganAttention {
            f: conv(channels, c8),
            g: conv(channels, c8),
            h: conv(channels, channels),
            v: conv(channels, channels),
            gamma: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }

    /// y = x + γ·o and the attention map β `[B, N, N]` (row j: where output position j
    /// looks; N = H·W, row-major positions). `update` advances the spectral norms' power
    /// iteration (training passes).
    pub fn forward(&self, x: Tensor<4>, update: bool) -> (Tensor<4>, Tensor<3>) {
        let [b, c, hh, ww] = x.dims();
        let n = hh * ww;
        let f = self.f.forward(x.clone(), update);
        let c8 = f.dims()[1];
        let f = f.reshape([b, c8, n]);
        let g = self.g.forward(x.clone(), update).reshape([b, c8, n]);
        let h = self.h.forward(x.clone(), update).reshape([b, c, n]);
        // scores[b, j, i] = g_jᵀ f_i; softmax over the keys i.
        let beta = softmax(g.swap_dims(1, 2).matmul(f), 2);
        let o = h
            .matmul(beta.clone().swap_dims(1, 2))
            .reshape([b, c, hh, ww]);
        let o = self.v.forward(o, update);
        let y = x + o * self.gamma.val().reshape([1, 1, 1, 1]);
        (y, beta)
    }
}
