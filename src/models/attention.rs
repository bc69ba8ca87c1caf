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
//!
//! Windowed attention (DiffiT's local variant, after Swin, Liu et al. 2021): the feature map
//! is cut into non-overlapping `w × w` windows, tokens attend only within their window, and a
//! learned relative position bias `B[head, Δy + w - 1, Δx + w - 1]` (one table of
//! `(2w - 1)²` entries per head, initialised to zero) is added to the scores:
//! `softmax(q kᵀ / √d + B) v`. Its map is `[B · windows, heads, w², w²]`, windows in row-major
//! order. With the bias at zero and one window covering the map it is global attention.

use burn::module::{Module, Param};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// How to build a [`SelfAttention`].
#[derive(Debug, Clone, PartialEq)]
pub struct SelfAttentionConfig {
    pub channels: usize,
    pub heads: usize,
    pub groups: usize,
    /// Width of the time embedding for `tmsa`; `None` builds `mhsa`.
    pub time_dim: Option<usize>,
    /// Window side for windowed attention with a relative position bias; `None` is global.
    pub window: Option<usize>,
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
    /// Relative position bias `[heads, (2w - 1)²]` (windowed attention only).
    bias: Option<Param<Tensor<2>>>,
    heads: usize,
    /// Window side; 0 is global attention.
    window: usize,
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
            bias: self.window.map(|w| {
                Param::from_tensor(Tensor::zeros([self.heads, (2 * w - 1).pow(2)], device))
            }),
            heads: self.heads,
            window: self.window.unwrap_or(0),
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

    /// The same weights attending globally (the relative position bias is not used).
    pub fn as_global(mut self) -> Self {
        self.window = 0;
        self
    }

    /// Window side, when the block attends within windows.
    pub fn window(&self) -> Option<usize> {
        (self.window > 0).then_some(self.window)
    }

    /// # Shapes
    /// `x` `[B, C, H, W]`, `time` `[B, D]` -> (`[B, C, H, W]`, attention `[B, heads, HW, HW]`,
    /// or `[B · windows, heads, w², w²]` for windowed attention)
    pub fn forward(&self, x: Tensor<4>, time: Option<&Tensor<2>>) -> (Tensor<4>, Tensor<4>) {
        let [b, c, h, w] = x.dims();
        let win = self.window;
        let windowed = win > 0 && h % win == 0 && w % win == 0 && (h > win || w > win);
        let (side_h, side_w) = if windowed { (win, win) } else { (h, w) };
        let (gh, gw) = (h / side_h, w / side_w);
        let (groups, n) = (b * gh * gw, side_h * side_w);
        let heads = self.heads;
        let d = c / heads;
        // Tokens [B · windows, n, C]; one window is the whole map when not windowed.
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([b, c, gh, side_h, gw, side_w])
            .permute([0, 2, 4, 3, 5, 1])
            .reshape([groups, n, c]);
        let project = |s: &Linear, t: &Option<Linear>| -> Tensor<4> {
            let mut y = s.forward(tokens.clone());
            if let (Some(t), Some(time)) = (t, time) {
                // [B, C] -> [B · windows, 1, C], each window of a sample with its time term.
                let term = t
                    .forward(time.clone())
                    .unsqueeze_dim::<3>(1)
                    .repeat_dim(1, gh * gw)
                    .reshape([groups, 1, c]);
                y = y + term;
            }
            // [G, n, heads, d] -> [G, heads, n, d]
            y.reshape([groups, n, heads, d]).swap_dims(1, 2)
        };
        let q = project(&self.q, &self.q_t);
        let k = project(&self.k, &self.k_t);
        let v = project(&self.v, &self.v_t);
        let mut scores = q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
        if let (Some(bias), true) = (&self.bias, windowed) {
            let index = relative_index(win, &x.device());
            let table = bias.val().select(1, index).reshape([1, heads, n, n]);
            scores = scores + table;
        }
        let attention = softmax(scores, 3);
        let mixed = attention.clone().matmul(v); // [G, heads, n, d]
        let mixed = mixed.swap_dims(1, 2).reshape([groups, n, c]);
        let y = self
            .out
            .forward(mixed)
            .reshape([b, gh, gw, side_h, side_w, c])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([b, c, h, w]);
        (x + y, attention)
    }
}

/// For every (query, key) pair of a `w × w` window, in row-major token order, the entry of the
/// relative position table: `(Δy + w - 1) · (2w - 1) + (Δx + w - 1)`.
pub fn relative_index(w: usize, device: &Device) -> Tensor<1, Int> {
    let span = 2 * w as i64 - 1;
    let mut out = Vec::with_capacity(w.pow(4));
    for qi in 0..w * w {
        for ki in 0..w * w {
            let dy = (qi / w) as i64 - (ki / w) as i64 + w as i64 - 1;
            let dx = (qi % w) as i64 - (ki % w) as i64 + w as i64 - 1;
            out.push(dy * span + dx);
        }
    }
    Tensor::from_data(TensorData::new(out, [w.pow(4)]), device)
}
