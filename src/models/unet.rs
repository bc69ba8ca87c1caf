//! The attention UNet (Ho et al. 2020; Dhariwal & Nichol 2021): residual blocks with GroupNorm
//! and SiLU fed the time embedding, self-attention at chosen resolutions and in the middle,
//! strided-convolution downsampling and nearest-neighbour upsampling, skip connections by
//! concatenation.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use super::{SelfAttention, SelfAttentionConfig, TimeEmbedding};

/// The UNet's shape, resolved from the pipeline file and the data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnetSpec {
    /// Input channels (noisy target, conditions, availability masks).
    pub in_channels: usize,
    pub out_channels: usize,
    pub base_channels: usize,
    pub channel_mult: Vec<usize>,
    pub res_blocks: usize,
    pub groups: usize,
    pub dropout: f64,
    /// Attention heads; 0 disables attention.
    pub heads: usize,
    /// Whether attention is time-dependent (`tmsa`).
    pub time_dependent: bool,
    /// Feature-map sizes (shorter side) with attention blocks.
    pub attention_resolutions: Vec<usize>,
    /// Shorter side of the input images.
    pub image_size: usize,
    /// Window side for windowed attention at the attention resolutions (`tmsa` with
    /// `model.attention.window`); the middle block, whose map Self-Attention Guidance reads,
    /// always attends globally.
    pub window: Option<usize>,
}

fn conv3(i: usize, o: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([i, o], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// GroupNorm, SiLU, 3×3 conv; plus the projected time embedding; GroupNorm, SiLU, dropout,
/// 3×3 conv; added to the input (through a 1×1 conv when the channel count changes).
#[derive(Module, Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(
        i: usize,
        o: usize,
        time_dim: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        ResBlock {
            norm1: GroupNormConfig::new(groups, i).init(device),
            conv1: conv3(i, o, device),
            time: LinearConfig::new(time_dim, o).init(device),
            norm2: GroupNormConfig::new(groups, o).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            conv2: conv3(o, o, device),
            skip: (i != o).then(|| Conv2dConfig::new([i, o], [1, 1]).init(device)),
        }
    }

    fn forward(&self, x: Tensor<4>, temb: &Tensor<2>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let t = self
            .time
            .forward(silu(temb.clone()))
            .unsqueeze_dims::<4>(&[2, 3]);
        let h = h + t;
        let h = self
            .conv2
            .forward(self.dropout.forward(silu(self.norm2.forward(h))));
        let skip = match &self.skip {
            Some(c) => c.forward(x),
            None => x,
        };
        skip + h
    }
}

/// One step of either path: a residual block with optional attention after it.
#[derive(Module, Debug)]
struct Stage {
    block: ResBlock,
    attention: Option<SelfAttention>,
}

/// The network and its parts.
#[derive(Module, Debug)]
pub struct Unet {
    time: TimeEmbedding,
    input: Conv2d,
    down: Vec<Stage>,
    /// Strided 3×3 convs after every level but the last.
    downsample: Vec<Conv2d>,
    mid1: ResBlock,
    mid_attention: Option<SelfAttention>,
    mid2: ResBlock,
    up: Vec<Stage>,
    /// 3×3 convs after nearest-neighbour ×2 upsampling, for every level but the first.
    upsample: Vec<Conv2d>,
    out_norm: GroupNorm,
    output: Conv2d,
    res_blocks: usize,
    levels: usize,
}

/// What one forward pass gives.
#[derive(Debug, Clone)]
pub struct UnetOutput {
    /// # Shapes
    /// `[B, out_channels, H, W]`
    pub output: Tensor<4>,
    /// Attention maps of the middle block, `[B, heads, N, N]` (when attention is on).
    pub middle_attention: Option<Tensor<4>>,
    /// Every attention map, in forward order.
    pub attention: Vec<Tensor<4>>,
}

impl UnetSpec {
    /// The backbone `model` configures, for the given channel counts and the shorter side of
    /// the stored slices.
    pub fn from_model(
        model: &crate::spec::ModelSection,
        in_channels: usize,
        out_channels: usize,
        image_size: usize,
    ) -> Self {
        let attention = &model.attention;
        let on = attention.kind != crate::spec::AttentionKind::None;
        UnetSpec {
            in_channels,
            out_channels,
            base_channels: model.unet.base_channels as usize,
            channel_mult: model.unet.multipliers(),
            res_blocks: model.unet.res_blocks as usize,
            groups: model.unet.groups as usize,
            dropout: model.unet.dropout,
            heads: if on { attention.heads as usize } else { 0 },
            time_dependent: attention.kind == crate::spec::AttentionKind::Tmsa,
            attention_resolutions: attention.resolutions.iter().map(|&r| r as usize).collect(),
            image_size,
            window: attention.window.map(|w| w as usize),
        }
    }

    /// Builds the network (not seeded; see [`super::seeded`]).
    pub fn init(&self, device: &Device) -> Unet {
        let base = self.base_channels;
        let time = TimeEmbedding::new(base, device);
        let tdim = time.out_dim();
        let g = self.groups;
        let attention = |channels: usize, size: usize| {
            (self.heads > 0 && self.attention_resolutions.contains(&size)).then(|| {
                SelfAttentionConfig {
                    channels,
                    heads: self.heads,
                    groups: g,
                    time_dim: self.time_dependent.then_some(tdim),
                    window: self.window,
                }
                .init(device)
            })
        };
        let levels = self.channel_mult.len();
        let mut down = Vec::new();
        let mut downsample = Vec::new();
        let mut skips = vec![base];
        let mut ch = base;
        let mut size = self.image_size;
        for (l, m) in self.channel_mult.iter().enumerate() {
            let out = base * m;
            for _ in 0..self.res_blocks {
                down.push(Stage {
                    block: ResBlock::new(ch, out, tdim, g, self.dropout, device),
                    attention: attention(out, size),
                });
                ch = out;
                skips.push(ch);
            }
            if l + 1 < levels {
                downsample.push(
                    Conv2dConfig::new([ch, ch], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device),
                );
                skips.push(ch);
                size /= 2;
            }
        }
        let mid_attention = (self.heads > 0).then(|| {
            SelfAttentionConfig {
                channels: ch,
                heads: self.heads,
                groups: g,
                time_dim: self.time_dependent.then_some(tdim),
                window: None,
            }
            .init(device)
        });
        let mid1 = ResBlock::new(ch, ch, tdim, g, self.dropout, device);
        let mid2 = ResBlock::new(ch, ch, tdim, g, self.dropout, device);
        let mut up = Vec::new();
        let mut upsample = Vec::new();
        for (l, m) in self.channel_mult.iter().enumerate().rev() {
            let out = base * m;
            for _ in 0..=self.res_blocks {
                let skip = skips.pop().unwrap_or(0);
                up.push(Stage {
                    block: ResBlock::new(ch + skip, out, tdim, g, self.dropout, device),
                    attention: attention(out, size),
                });
                ch = out;
            }
            if l > 0 {
                upsample.push(conv3(ch, ch, device));
                size *= 2;
            }
        }
        Unet {
            time,
            input: conv3(self.in_channels, base, device),
            down,
            downsample,
            mid1,
            mid_attention,
            mid2,
            up,
            upsample,
            out_norm: GroupNormConfig::new(g, ch).init(device),
            output: conv3(ch, self.out_channels, device),
            res_blocks: self.res_blocks,
            levels,
        }
    }
}

impl Unet {
    /// # Shapes
    /// `x` `[B, in_channels, H, W]`, `t` `[B]` (time steps) -> output `[B, out_channels, H, W]`
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> UnetOutput {
        let device = x.device();
        let temb = self.time.forward(t, &device);
        let mut maps = Vec::new();
        let run = |stage: &Stage, h: Tensor<4>, maps: &mut Vec<Tensor<4>>| {
            let h = stage.block.forward(h, &temb);
            match &stage.attention {
                Some(a) => {
                    let (h, m) = a.forward(h, Some(&temb));
                    maps.push(m);
                    h
                }
                None => h,
            }
        };
        let mut h = self.input.forward(x);
        let mut skips = vec![h.clone()];
        let mut stages = self.down.iter();
        for l in 0..self.levels {
            for stage in stages.by_ref().take(self.res_blocks) {
                h = run(stage, h, &mut maps);
                skips.push(h.clone());
            }
            if let Some(d) = self.downsample.get(l) {
                h = d.forward(h);
                skips.push(h.clone());
            }
        }
        h = self.mid1.forward(h, &temb);
        let mut middle_attention = None;
        if let Some(a) = &self.mid_attention {
            let (out, m) = a.forward(h, Some(&temb));
            h = out;
            maps.push(m.clone());
            middle_attention = Some(m);
        }
        h = self.mid2.forward(h, &temb);
        let mut stages = self.up.iter();
        for l in 0..self.levels {
            for stage in stages.by_ref().take(self.res_blocks + 1) {
                let skip = skips.pop().expect("one skip per up block");
                h = run(stage, Tensor::cat(vec![h, skip], 1), &mut maps);
            }
            if let Some(u) = self.upsample.get(l) {
                let [_, _, hh, ww] = h.dims();
                let up = interpolate(
                    h,
                    InterpolateOptions::new(InterpolateMode::Nearest)
                        .with_output_size([2 * hh, 2 * ww]),
                );
                h = u.forward(up);
            }
        }
        let output = self.output.forward(silu(self.out_norm.forward(h)));
        UnetOutput {
            output,
            middle_attention,
            attention: maps,
        }
    }
}
