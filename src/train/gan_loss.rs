//! The adversarial losses of the self-attention GANs: the hinge loss of SAGAN and BigGAN
//! (Lim & Ye 2017; Zhang et al. 2019, eq. 4) and the L1 reconstruction term of paired
//! translation (pix2pix):
//!
//! L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))], L_G = −E[D(G(z))] (+ λ·E|G(z) − y|).

use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// The discriminator's hinge loss from its scores on real and generated samples (any shape:
/// one score per sample, or per patch for PatchGAN).
pub fn discriminator_hinge<const D: usize>(real: Tensor<D>, fake: Tensor<D>) -> Tensor<1> {
    relu(real.neg().add_scalar(1.0)).mean() + relu(fake.add_scalar(1.0)).mean()
}

/// The generator's hinge loss from the discriminator's scores on its samples.
pub fn generator_hinge<const D: usize>(fake: Tensor<D>) -> Tensor<1> {
    fake.mean().neg()
}

/// λ · mean |fake − target|, the paired-translation term.
pub fn l1<const D: usize>(fake: Tensor<D>, target: Tensor<D>, lambda: f64) -> Tensor<1> {
    (fake - target).abs().mean().mul_scalar(lambda)
}
