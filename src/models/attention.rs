//! Self-attention over the pixels of a feature map, pre-normalized with GroupNorm and added
//! back residually: `x + W_o · attention(GN(x))`.
//!
//! Multi-head self-attention (`mhsa`): `q = x·W_q`, `k = x·W_k`, `v = x·W_v` per token,
//! `softmax(q kᵀ / √d_head) v` per head. DiffiT's time-dependent self-attention (`tmsa`,
//! Hatamizadeh et al. 2023, arXiv 2312.02139, eq. 3-5) adds a term from the time embedding
//! to each projection: `q = x·W_qs + t·W_qt`, `k = x·W_ks + t·W_kt`, `v = x·W_vs + t·W_vt`, so
//! the attention pattern can change over the denoising trajectory. With the time weights at
//! zero it is exactly `mhsa`. The attention map (`[B, heads, N, N]`, rows summing to 1) is
//! returned beside the output: Self-Attention Guidance masks from it, and reports show it.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// How to build a [`SelfAttention`].
#[derive(Debug, Clone, PartialEq)]
pub struct SelfAttentionConfig {
    pub channels: usize,
    pub heads: usize,
    pub groups: usize,
    /// Width of the time embedding for `tmsa`; `None` builds `mhsa`.
    pub time_dim: Option<usize>,
}

/// Multi-head or time-dependent self-attention block.
#[derive(Module, Debug)]
pub struct SelfAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    /// Time terms of q, k, v (`tmsa` only).
    q_t: Option<Linear>,
    k_t: Option<Linear>,
    v_t: Option<Linear>,
    out: Linear,
    heads: usize,
}

impl SelfAttentionConfig {
    pub fn init(&self, device: &Device) -> SelfAttention {
        let c = self.channels;
        let linear = |i: usize| LinearConfig::new(i, c).init(device);
        SelfAttention {
            norm: GroupNormConfig::new(self.groups, c).init(device),
            q: linear(c),
            k: linear(c),
            v: linear(c),
            q_t: self.time_dim.map(linear),
            k_t: self.time_dim.map(linear),
            v_t: self.time_dim.map(linear),
            out: linear(c),
            heads: self.heads,
        }
    }
}

impl SelfAttention {
    /// Whether the block has time terms (`tmsa`).
    pub fn time_dependent(&self) -> bool {
        self.q_t.is_some()
    }

    /// Sets the time weights and biases to zero (making `tmsa` compute `mhsa`).
    pub fn without_time_terms(mut self) -> Self {
        let zero = |l: Option<Linear>| {
            l.map(|mut l| {
                l.weight = l.weight.map(|w| w.zeros_like());
                l.bias = l.bias.map(|b| b.map(|b| b.zeros_like()));
                l
            })
        };
        self.q_t = zero(self.q_t);
        self.k_t = zero(self.k_t);
        self.v_t = zero(self.v_t);
        self
    }

    /// Drops the time terms, keeping every other weight (the equivalent `mhsa` block).
    pub fn as_mhsa(mut self) -> Self {
        self.q_t = None;
        self.k_t = None;
        self.v_t = None;
        self
    }

    /// # Shapes
    /// `x` `[B, C, H, W]`, `time` `[B, D]` -> (`[B, C, H, W]`, attention `[B, heads, HW, HW]`)
    pub fn forward(&self, x: Tensor<4>, time: Option<&Tensor<2>>) -> (Tensor<4>, Tensor<4>) {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let heads = self.heads;
        let d = c / heads;
        // Tokens [B, N, C].
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([b, c, n])
            .swap_dims(1, 2);
        let project = |s: &Linear, t: &Option<Linear>| -> Tensor<4> {
            let mut y = s.forward(tokens.clone());
            if let (Some(t), Some(time)) = (t, time) {
                y = y + t.forward(time.clone()).unsqueeze_dim::<3>(1);
            }
            // [B, N, heads, d] -> [B, heads, N, d]
            y.reshape([b, n, heads, d]).swap_dims(1, 2)
        };
        let q = project(&self.q, &self.q_t);
        let k = project(&self.k, &self.k_t);
        let v = project(&self.v, &self.v_t);
        let scores = q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
        let attention = softmax(scores, 3);
        let mixed = attention.clone().matmul(v); // [B, heads, N, d]
        let mixed = mixed.swap_dims(1, 2).reshape([b, n, c]);
        let y = self
            .out
            .forward(mixed)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        (x + y, attention)
    }
}
