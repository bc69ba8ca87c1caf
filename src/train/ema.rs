//! Exponential moving average of a model's weights (Polyak averaging), the weights diffusion
//! models are usually sampled with: ema ← d · ema + (1 - d) · current after every optimizer
//! step, with the warm-up of latent diffusion's `LitEma` and TensorFlow's
//! `ExponentialMovingAverage(num_updates)`: d = min(decay, (1 + n) / (10 + n)) at update n
//! (counted from 0). Without it a short run's average stays near the random initialization
//! (0.995¹⁵⁰ ≈ 0.47 of the weight after 150 steps).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Flattened float parameters, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

struct Blend {
    current: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.next() else {
            return param;
        };
        let decay = self.decay;
        param.map(|ema| {
            let dims = ema.dims();
            ema * decay + current.reshape(dims) * (1.0 - decay)
        })
    }
}

/// The averaged copy of a model (on a plain, non-autodiff device).
#[derive(Debug, Clone)]
pub struct Ema<M> {
    pub model: M,
    pub decay: f64,
}

impl<M: Module> Ema<M> {
    /// Starts from `model` (usually `training_model.valid()`).
    pub fn new(model: M, decay: f64) -> Self {
        Ema { model, decay }
    }

    /// The decay used at update `n` (0 for the first update).
    pub fn decay_at(&self, n: u64) -> f64 {
        self.decay.min((1.0 + n as f64) / (10.0 + n as f64))
    }

    /// Blends in the current weights (`current` with the same structure, plain tensors) as
    /// update `n` (0 for the first).
    pub fn update(&mut self, current: &M, n: u64) {
        let mut collect = Collect(Vec::new());
        current.visit(&mut collect);
        let mut blend = Blend {
            current: collect.0.into_iter(),
            decay: self.decay_at(n),
        };
        self.model = self.model.clone().map(&mut blend);
    }
}
