//! Paired image-to-image GAN (pix2pix, Isola et al. 2017, with SAGAN's spectral norm and
//! attention): a UNet generator whose encoder halves the resolution per level with 4×4
//! strided convolutions and whose decoder doubles it back (nearest upsampling and a 3×3 conv,
//! which avoids transposed-convolution checkerboards), skip connections by concatenation and a
//! SAGAN attention block at the bottleneck; and a 70×70 PatchGAN discriminator on the
//! condition and the image together, spectrally normalized, with SAGAN attention.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{Device, Tensor};

use super::{GanSpec, nearest, upsample};
use crate::models::sagan::SaganAttention;
use crate::models::spectral::SpectralConv2d;

/// The largest divisor of `channels` not above `groups`.
fn groups_for(channels: usize, groups: usize) -> usize {
    (1..=groups.max(1).min(channels))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

/// Spectrally normalized conv, GroupNorm, activation (leaky ReLU 0.2 in the encoder, ReLU in
/// the decoder).
#[derive(Module, Debug)]
struct ConvBlock {
    conv: SpectralConv2d,
    norm: GroupNorm,
    leaky: bool,
}

impl ConvBlock {
    fn new(i: usize, o: usize, k: usize, stride: usize, spec: &GanSpec, device: &Device) -> Self {
        let padding = if k == 4 { 1 } else { k / 2 };
        ConvBlock {
            conv: SpectralConv2d::new([i, o], k, stride, padding, true, device),
            norm: GroupNormConfig::new(groups_for(o, spec.groups), o).init(device),
            leaky: stride > 1,
        }
    }

    fn forward(&self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let h = self.norm.forward(self.conv.forward(x, train));
        if self.leaky {
            leaky_relu(h, 0.2)
        } else {
            relu(h)
        }
    }
}

/// One decoder level: upsample, conv to the skip's width, concatenate the skip, fuse.
#[derive(Module, Debug)]
struct UpLevel {
    up: ConvBlock,
    fuse: ConvBlock,
}

/// The UNet generator.
#[derive(Module, Debug)]
pub struct UnetGenerator {
    stem: ConvBlock,
    down: Vec<ConvBlock>,
    mid1: ConvBlock,
    attention: SaganAttention,
    mid2: ConvBlock,
    up: Vec<UpLevel>,
    output: SpectralConv2d,
}

impl UnetGenerator {
    pub fn new(spec: &GanSpec, device: &Device) -> Self {
        let ch: Vec<usize> = spec
            .channel_mult
            .iter()
            .map(|m| spec.base_channels * m)
            .collect();
        let last = *ch.last().expect("at least one level");
        let block = |i, o, k, s| ConvBlock::new(i, o, k, s, spec, device);
        UnetGenerator {
            stem: block(spec.in_channels, ch[0], 3, 1),
            down: ch.windows(2).map(|p| block(p[0], p[1], 4, 2)).collect(),
            mid1: block(last, last, 3, 1),
            attention: SaganAttention::new(last, device),
            mid2: block(last, last, 3, 1),
            up: ch
                .windows(2)
                .rev()
                .map(|p| UpLevel {
                    up: block(p[1], p[0], 3, 1),
                    fuse: block(2 * p[0], p[0], 3, 1),
                })
                .collect(),
            output: SpectralConv2d::new([ch[0], spec.out_channels], 3, 1, 1, true, device),
        }
    }

    /// # Shapes
    /// `input` `[B, in, H, W]` -> `[B, out, H, W]` (before the output mapping) and the
    /// bottleneck attention map `[B, N, N]`.
    pub fn forward(&self, input: Tensor<4>, train: bool) -> (Tensor<4>, Tensor<3>) {
        let mut h = self.stem.forward(input, train);
        let mut skips = Vec::with_capacity(self.down.len());
        for d in &self.down {
            skips.push(h.clone());
            h = d.forward(h, train);
        }
        let h = self.mid1.forward(h, train);
        let (h, map) = self.attention.forward(h, train);
        let mut h = self.mid2.forward(h, train);
        for level in &self.up {
            let skip = skips.pop().expect("one skip per level");
            let up = level.up.forward(upsample(h), train);
            h = level.fuse.forward(Tensor::cat(vec![up, skip], 1), train);
        }
        (self.output.forward(h, train), map)
    }

    pub fn gamma(&self) -> Tensor<1> {
        self.attention.gamma.val()
    }
}

/// The PatchGAN discriminator: three 4×4 stride-2 convs (base, 2·base, 4·base), then two
/// stride-1 ones (8·base, 1), leaky ReLU 0.2 between, every conv spectrally normalized; the
/// attention block follows the stride-2 conv whose output size is closest to the configured
/// attention resolution.
#[derive(Module, Debug)]
pub struct PatchDiscriminator {
    convs: Vec<SpectralConv2d>,
    attention_after: usize,
    attention: SaganAttention,
}

impl PatchDiscriminator {
    pub fn new(spec: &GanSpec, device: &Device) -> Self {
        let b = spec.base_channels;
        let widths = [
            spec.in_channels - spec.noise_channels + spec.out_channels,
            b,
            2 * b,
            4 * b,
            8 * b,
            1,
        ];
        let convs = widths
            .windows(2)
            .enumerate()
            .map(|(k, p)| {
                SpectralConv2d::new([p[0], p[1]], 4, if k < 3 { 2 } else { 1 }, 1, true, device)
            })
            .collect();
        let short = spec.image_size[0].min(spec.image_size[1]);
        let attention_after = nearest(
            &[short >> 1, short >> 2, short >> 3],
            spec.attention_resolution,
        );
        PatchDiscriminator {
            convs,
            attention: SaganAttention::new(widths[attention_after + 1], device),
            attention_after,
        }
    }

    /// # Shapes
    /// `cond` `[B, cond, H, W]`, `image` `[B, out, H, W]` -> patch scores
    /// `[B, 1, H/8 - 2, W/8 - 2]` and the attention map `[B, N, N]`.
    pub fn forward(
        &self,
        cond: Tensor<4>,
        image: Tensor<4>,
        train: bool,
    ) -> (Tensor<4>, Tensor<3>) {
        let mut h = Tensor::cat(vec![cond, image], 1);
        let mut map = None;
        let last = self.convs.len() - 1;
        for (k, conv) in self.convs.iter().enumerate() {
            h = conv.forward(h, train);
            if k < last {
                h = leaky_relu(h, 0.2);
            }
            if k == self.attention_after {
                let (y, m) = self.attention.forward(h, train);
                h = y;
                map = Some(m);
            }
        }
        (
            h,
            map.expect("the attention block sits after one of the convs"),
        )
    }

    pub fn gamma(&self) -> Tensor<1> {
        self.attention.gamma.val()
    }
}
