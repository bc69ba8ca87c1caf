//! Noise-to-image GAN (SAGAN, Zhang et al. 2019; BigGAN, Brock et al. 2019): a residual
//! generator from z that doubles the resolution per block from a 4-pixel-high start, with
//! conditional batch norm and a SAGAN attention block at one resolution, and a residual
//! discriminator with spectral norm, the same attention, and a projection head (Miyato &
//! Koyama 2018) when classes are given: D(x, y) = ψ(φ(x)) + ⟨e_y, φ(x)⟩.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};

use super::norm::ConditionalBatchNorm;
use super::{GanSpec, nearest, upsample};
use crate::models::sagan::SaganAttention;
use crate::models::spectral::{SpectralConv2d, SpectralLinear};

fn conv3(i: usize, o: usize, device: &Device) -> SpectralConv2d {
    SpectralConv2d::new([i, o], 3, 1, 1, true, device)
}

fn conv1(i: usize, o: usize, device: &Device) -> SpectralConv2d {
    SpectralConv2d::new([i, o], 1, 1, 0, true, device)
}

fn pool(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new([2, 2]).with_stride([2, 2]))
}

/// Generator block: CBN, ReLU, ×2 upsampling, 3×3 conv, CBN, ReLU, 3×3 conv, plus the
/// upsampled input through a 1×1 conv.
#[derive(Module, Debug)]
struct UpBlock {
    norm1: ConditionalBatchNorm,
    conv1: SpectralConv2d,
    norm2: ConditionalBatchNorm,
    conv2: SpectralConv2d,
    skip: SpectralConv2d,
}

impl UpBlock {
    fn new(i: usize, o: usize, cond: usize, device: &Device) -> Self {
        UpBlock {
            norm1: ConditionalBatchNorm::new(i, cond, device),
            conv1: conv3(i, o, device),
            norm2: ConditionalBatchNorm::new(o, cond, device),
            conv2: conv3(o, o, device),
            skip: conv1(i, o, device),
        }
    }

    fn forward(&self, x: Tensor<4>, cond: &Tensor<2>, train: bool) -> Tensor<4> {
        let h = relu(self.norm1.forward(x.clone(), cond, train));
        let h = self.conv1.forward(upsample(h), train);
        let h = self
            .conv2
            .forward(relu(self.norm2.forward(h, cond, train)), train);
        h + self.skip.forward(upsample(x), train)
    }
}

/// The generator from z (and a class).
#[derive(Module, Debug)]
pub struct NoiseGenerator {
    /// Shared class embedding (one-hot → vector), when classes are given.
    embed: Option<burn::nn::Linear>,
    input: SpectralLinear,
    blocks: Vec<UpBlock>,
    /// Index of the block after which the attention sits.
    attention_after: usize,
    attention: SaganAttention,
    out_norm: ConditionalBatchNorm,
    output: SpectralConv2d,
    start: [usize; 3],
}

/// Output channels of each generator block, from the 4-pixel start: 8·base halving down to
/// base at full size (for `n` blocks).
fn generator_channels(base: usize, n: usize) -> Vec<usize> {
    (0..=n).map(|k| base << (n - k).min(3)).collect()
}

/// The embedding width of the shared class embedding.
const EMBED: usize = 64;

impl NoiseGenerator {
    pub fn new(spec: &GanSpec, device: &Device) -> Self {
        let n = spec.noise_blocks();
        let ch = generator_channels(spec.base_channels, n);
        let [h, w] = spec.image_size;
        let start = [ch[0], h >> n, w >> n];
        let cond = spec.z_dim + if spec.classes > 0 { EMBED } else { 0 };
        let blocks: Vec<UpBlock> = (0..n)
            .map(|k| UpBlock::new(ch[k], ch[k + 1], cond, device))
            .collect();
        let sizes: Vec<usize> = (0..n).map(|k| start[1].min(start[2]) << (k + 1)).collect();
        let attention_after = nearest(&sizes, spec.attention_resolution);
        NoiseGenerator {
            embed: (spec.classes > 0).then(|| {
                burn::nn::LinearConfig::new(spec.classes, EMBED)
                    .with_bias(false)
                    .init(device)
            }),
            input: SpectralLinear::new(spec.z_dim, start.iter().product(), true, device),
            attention: SaganAttention::new(ch[attention_after + 1], device),
            attention_after,
            blocks,
            out_norm: ConditionalBatchNorm::new(ch[n], cond, device),
            output: conv3(ch[n], spec.out_channels, device),
            start,
        }
    }

    /// # Shapes
    /// `z` `[B, z_dim]`, `classes` one-hot `[B, K]` -> `[B, out, H, W]` (before the output
    /// mapping) and the attention map `[B, N, N]`.
    pub fn forward(
        &self,
        z: Tensor<2>,
        classes: Option<Tensor<2>>,
        train: bool,
    ) -> (Tensor<4>, Tensor<3>) {
        let [b, _] = z.dims();
        let cond = match (&self.embed, classes) {
            (Some(e), Some(y)) => Tensor::cat(vec![z.clone(), e.forward(y)], 1),
            _ => z.clone(),
        };
        let [c, h, w] = self.start;
        let mut x = self.input.forward(z, train).reshape([b, c, h, w]);
        let mut map = None;
        for (k, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, &cond, train);
            if k == self.attention_after {
                let (y, m) = self.attention.forward(x, train);
                x = y;
                map = Some(m);
            }
        }
        let x = relu(self.out_norm.forward(x, &cond, train));
        let out = self.output.forward(x, train);
        let map = map.expect("the attention block sits after one of the blocks");
        (out, map)
    }

    pub fn gamma(&self) -> Tensor<1> {
        self.attention.gamma.val()
    }
}

/// Discriminator block: (ReLU,) 3×3 conv, ReLU, 3×3 conv, (2×2 average pool), plus a 1×1
/// conv shortcut; the first block skips the leading ReLU and pools before its shortcut conv.
#[derive(Module, Debug)]
struct DownBlock {
    conv1: SpectralConv2d,
    conv2: SpectralConv2d,
    skip: Option<SpectralConv2d>,
    first: bool,
    down: bool,
}

impl DownBlock {
    fn new(i: usize, o: usize, first: bool, down: bool, device: &Device) -> Self {
        DownBlock {
            conv1: conv3(i, o, device),
            conv2: conv3(o, o, device),
            skip: (i != o || down).then(|| conv1(i, o, device)),
            first,
            down,
        }
    }

    fn forward(&self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let h = if self.first {
            x.clone()
        } else {
            relu(x.clone())
        };
        let h = self
            .conv2
            .forward(relu(self.conv1.forward(h, train)), train);
        let h = if self.down { pool(h) } else { h };
        let skip = match (&self.skip, self.first) {
            (Some(c), true) => c.forward(if self.down { pool(x) } else { x }, train),
            (Some(c), false) => {
                let s = c.forward(x, train);
                if self.down { pool(s) } else { s }
            }
            (None, _) => x,
        };
        h + skip
    }
}

/// The residual discriminator with a projection head.
#[derive(Module, Debug)]
pub struct ProjectionDiscriminator {
    blocks: Vec<DownBlock>,
    attention_after: usize,
    attention: SaganAttention,
    linear: SpectralLinear,
    /// Class embedding e_y (one-hot → feature), spectrally normalized as BigGAN's.
    embed: Option<SpectralLinear>,
}

impl ProjectionDiscriminator {
    pub fn new(spec: &GanSpec, device: &Device) -> Self {
        let n = spec.noise_blocks();
        let base = spec.base_channels;
        // Output channels per block: base doubling to 8·base; the last block keeps the size.
        let ch: Vec<usize> = (0..=n).map(|k| base << k.min(3)).collect();
        let mut blocks = Vec::new();
        let mut sizes = Vec::new();
        let short = spec.image_size[0].min(spec.image_size[1]);
        let mut inc = spec.out_channels;
        for (k, &o) in ch.iter().enumerate() {
            let down = k < n;
            blocks.push(DownBlock::new(inc, o, k == 0, down, device));
            sizes.push(if down { short >> (k + 1) } else { short >> n });
            inc = o;
        }
        let attention_after = nearest(&sizes[..n.max(1)], spec.attention_resolution);
        ProjectionDiscriminator {
            attention: SaganAttention::new(ch[attention_after], device),
            attention_after,
            blocks,
            linear: SpectralLinear::new(inc, 1, true, device),
            embed: (spec.classes > 0)
                .then(|| SpectralLinear::new(spec.classes, inc, false, device)),
        }
    }

    /// # Shapes
    /// `x` `[B, out, H, W]`, `classes` one-hot `[B, K]` -> scores `[B, 1]` and the attention
    /// map `[B, N, N]`.
    pub fn forward(
        &self,
        x: Tensor<4>,
        classes: Option<Tensor<2>>,
        train: bool,
    ) -> (Tensor<2>, Tensor<3>) {
        let mut h = x;
        let mut map = None;
        for (k, block) in self.blocks.iter().enumerate() {
            h = block.forward(h, train);
            if k == self.attention_after {
                let (y, m) = self.attention.forward(h, train);
                h = y;
                map = Some(m);
            }
        }
        let [b, c, _, _] = h.dims();
        let features = relu(h).sum_dim(3).sum_dim(2).reshape([b, c]);
        let mut score = self.linear.forward(features.clone(), train);
        if let (Some(e), Some(y)) = (&self.embed, classes) {
            let proj = (e.forward(y, train) * features).sum_dim(1);
            score = score + proj;
        }
        (
            score,
            map.expect("the attention block sits after one of the blocks"),
        )
    }

    pub fn gamma(&self) -> Tensor<1> {
        self.attention.gamma.val()
    }
}
