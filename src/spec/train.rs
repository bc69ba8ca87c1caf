//! `[train]`: how the generator is trained.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelKind;
use super::PipelineFile;
use super::check::Findings;

/// Compute device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// burn's `flex` CPU backend on every worker thread; works everywhere.
    #[default]
    Cpu,
    /// burn's wgpu backend (Vulkan on Linux and Windows, Metal on macOS); needs medsynth
    /// built with `--features gpu`.
    Gpu,
    /// burn's CUDA backend; needs medsynth built with `--features cuda`.
    Cuda,
}

impl DeviceKind {
    /// The name in pipeline files, which is also the cargo feature a GPU kind needs.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// The kinds this build can use, `cpu` first.
    pub fn built() -> Vec<DeviceKind> {
        let mut kinds = vec![DeviceKind::Cpu];
        if cfg!(feature = "gpu") {
            kinds.push(DeviceKind::Gpu);
        }
        if cfg!(feature = "cuda") {
            kinds.push(DeviceKind::Cuda);
        }
        kinds
    }

    /// Whether this build has the backend.
    pub fn is_built(self) -> bool {
        Self::built().contains(&self)
    }
}

/// Optimizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015).
    #[default]
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    Adamw,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Passes over the training slices. Default 50.
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Stop after this many optimizer steps in all, even before `epochs` are done: a budget
    /// for a large cohort, or a quick trial. The learning-rate schedule ends there too.
    /// Default: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Slices per batch. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// `adam` or `adamw`. Default `adam`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate (of the generator, for GANs). Default 2e-4 for diffusion, 1e-4 for
    /// `sagan` (TTUR, Heusel et al. 2017).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Discriminator learning rate for GANs (TTUR, Heusel et al. 2017). Default 4e-4.
    #[serde(default = "default_lr_d")]
    pub lr_d: f64,
    /// Adam betas `[beta1, beta2]`, each in [0, 1). Default `[0.9, 0.999]` for diffusion,
    /// `[0.0, 0.9]` for `sagan` (SAGAN, BigGAN).
    #[serde(default)]
    pub betas: Option<[f64; 2]>,
    /// Weight decay (decoupled for `adamw`). Default 0.0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Linear learning-rate warm-up, in optimizer steps. Default 0.
    #[serde(default)]
    pub warmup_steps: u32,
    /// Clip the gradient norm to this value; absent disables clipping. Default 1.0.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: Option<f64>,
    /// Decay of the exponential moving average of the weights, in [0, 1); 0 disables EMA.
    /// Default 0.999.
    #[serde(default = "default_ema")]
    pub ema: f64,
    /// Write a checkpoint every this many optimizer steps (and at the end). Default 500.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u32,
    /// Where training, synthesis and evaluation compute: `cpu`, `gpu` or `cuda` (the last
    /// two need builds with those features; `medsynth devices` lists what this build has).
    /// One seed gives the same initial model on every device. Default `cpu`.
    #[serde(default)]
    pub device: DeviceKind,
    /// Data augmentation, applied identically to every channel and to the label.
    #[serde(default)]
    pub augment: AugmentConfig,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            max_steps: None,
            batch_size: default_batch_size(),
            optimizer: OptimizerKind::default(),
            lr: None,
            lr_d: default_lr_d(),
            betas: None,
            weight_decay: 0.0,
            warmup_steps: 0,
            grad_clip: default_grad_clip(),
            ema: default_ema(),
            checkpoint_every: default_checkpoint_every(),
            device: DeviceKind::default(),
            augment: AugmentConfig::default(),
        }
    }
}

impl TrainSection {
    /// The (generator's) learning rate for a model of `kind`.
    pub fn lr_for(&self, kind: ModelKind) -> f64 {
        self.lr.unwrap_or(match kind {
            ModelKind::Diffusion => 2e-4,
            ModelKind::Sagan => 1e-4,
        })
    }

    /// Adam's betas for a model of `kind`.
    pub fn betas_for(&self, kind: ModelKind) -> [f64; 2] {
        self.betas.unwrap_or(match kind {
            ModelKind::Diffusion => [0.9, 0.999],
            ModelKind::Sagan => [0.0, 0.9],
        })
    }

    /// The learning rate of the supervised networks (baseline-unet, the segmentation
    /// network): the diffusion model's default, whose backbone they share.
    pub fn supervised_lr(&self) -> f64 {
        self.lr.unwrap_or(2e-4)
    }

    /// Adam's betas for the supervised networks.
    pub fn supervised_betas(&self) -> [f64; 2] {
        self.betas.unwrap_or([0.9, 0.999])
    }
}

fn default_epochs() -> u32 {
    50
}
fn default_batch_size() -> u32 {
    16
}
fn default_lr_d() -> f64 {
    4e-4
}
fn default_grad_clip() -> Option<f64> {
    Some(1.0)
}
fn default_ema() -> f64 {
    0.999
}
fn default_checkpoint_every() -> u32 {
    500
}

/// `train.augment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of a left-right flip. Default 0.0.
    #[serde(default)]
    pub flip: f64,
    /// Largest in-plane rotation in degrees (uniform in ±). Default 0.0.
    #[serde(default)]
    pub rotate_deg: f64,
    /// Largest relative scaling (uniform in 1 ± scale). Default 0.0.
    #[serde(default)]
    pub scale: f64,
    /// Largest multiplicative intensity jitter per channel (uniform in 1 ± intensity).
    /// Default 0.0.
    #[serde(default)]
    pub intensity: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            flip: 0.0,
            rotate_deg: 0.0,
            scale: 0.0,
            intensity: 0.0,
        }
    }
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, out: &mut Findings) {
    let Some(t) = &file.train else { return };
    if file.model.is_none() {
        out.add("train", "[train] needs a [model] section to train");
        return;
    }
    if file.model.as_ref().is_some_and(|m| m.checkpoint.is_some()) {
        out.add(
            "model.checkpoint",
            "set together with [train]; expected either a checkpoint to apply or a [train] section",
        );
    }
    out.at_least_one("train.epochs", t.epochs);
    out.at_least_one("train.batch_size", t.batch_size);
    out.at_least_one("train.checkpoint_every", t.checkpoint_every);
    if let Some(lr) = t.lr {
        out.positive("train.lr", lr);
    }
    out.positive("train.lr_d", t.lr_d);
    if let Some([b1, b2]) = t.betas {
        out.range("train.betas[0]", b1, 0.0, 1.0, true);
        out.range("train.betas[1]", b2, 0.0, 1.0, true);
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        out.add(
            "train.weight_decay",
            format!("{} is not allowed, expected a number >= 0", t.weight_decay),
        );
    }
    if let Some(c) = t.grad_clip {
        out.positive("train.grad_clip", c);
    }
    out.range("train.ema", t.ema, 0.0, 1.0, true);
    out.range("train.augment.flip", t.augment.flip, 0.0, 1.0, false);
    out.range(
        "train.augment.rotate_deg",
        t.augment.rotate_deg,
        0.0,
        180.0,
        false,
    );
    out.range("train.augment.scale", t.augment.scale, 0.0, 1.0, true);
    out.range(
        "train.augment.intensity",
        t.augment.intensity,
        0.0,
        1.0,
        true,
    );
    if !t.device.is_built() {
        out.add(
            "train.device",
            format!(
                "\"{kind}\" needs medsynth built with `--features {kind}` (`medsynth devices` lists what this build has)",
                kind = t.device.name()
            ),
        );
    }
}
