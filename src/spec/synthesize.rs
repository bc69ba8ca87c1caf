//! `[synthesize]`: applying a trained generator.

use super::check::Findings;
use super::{AttentionKind, ModelKind, PipelineFile, Task};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which subjects a stage works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SplitName {
    /// The training subjects.
    Train,
    /// The validation subjects.
    Val,
    /// The test subjects.
    #[default]
    Test,
    /// Every subject.
    All,
}

impl SplitName {
    /// The name as written in pipeline files and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
            SplitName::All => "all",
        }
    }
}

/// Diffusion sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDPM ancestral sampling over every step (Ho et al. 2020).
    Ddpm,
    /// DDIM (Song et al. 2021) over `steps` evenly spaced steps with stochasticity `eta`.
    #[default]
    Ddim,
}

/// `synthesize.sampler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// `ddpm` or `ddim`. Default `ddim`.
    #[serde(default)]
    pub kind: SamplerKind,
    /// DDIM steps; at most `model.diffusion.timesteps`. Default 50.
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// DDIM stochasticity η in [0, 1]: 0 is deterministic DDIM, 1 matches DDPM. Default 0.0.
    #[serde(default)]
    pub eta: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::default(),
            steps: default_steps(),
            eta: 0.0,
        }
    }
}

fn default_steps() -> u32 {
    50
}

/// `synthesize.guidance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuidanceConfig {
    /// Self-Attention Guidance scale s (Hong et al. 2022, arXiv 2210.00939); 0 disables it.
    /// Default 0.0.
    #[serde(default)]
    pub sag: f64,
    /// Standard deviation in pixels of the Gaussian blur SAG applies under the attention mask.
    /// Default 1.0.
    #[serde(default = "default_sag_blur")]
    pub sag_blur_sigma: f64,
    /// Classifier-free guidance scale w (Ho & Salimans 2022); 1 is the plain conditional model.
    /// Default 1.0.
    #[serde(default = "default_cfg")]
    pub cfg: f64,
}

impl Default for GuidanceConfig {
    fn default() -> Self {
        Self {
            sag: 0.0,
            sag_blur_sigma: default_sag_blur(),
            cfg: default_cfg(),
        }
    }
}

fn default_sag_blur() -> f64 {
    1.0
}
fn default_cfg() -> f64 {
    1.0
}

/// `[synthesize]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesizeSection {
    /// Subjects to synthesize for: `train`, `val`, `test` or `all`. Default `test`.
    #[serde(default)]
    pub split: SplitName,
    /// Sampler for diffusion models.
    #[serde(default)]
    pub sampler: SamplerConfig,
    /// Guidance for diffusion models.
    #[serde(default)]
    pub guidance: GuidanceConfig,
    /// Synthetic variants per subject (augmentation), each with its own recorded seed.
    /// Default 1.
    #[serde(default = "default_variants")]
    pub variants: u32,
    /// Slices per batch while sampling. Default 16.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// GAN truncation trick: resample latent entries beyond this magnitude; absent disables it.
    #[serde(default)]
    pub truncation: Option<f64>,
}

impl Default for SynthesizeSection {
    fn default() -> Self {
        Self {
            split: SplitName::default(),
            sampler: SamplerConfig::default(),
            guidance: GuidanceConfig::default(),
            variants: default_variants(),
            batch_size: default_batch(),
            truncation: None,
        }
    }
}

fn default_variants() -> u32 {
    1
}
fn default_batch() -> u32 {
    16
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, out: &mut Findings) {
    let Some(s) = &file.synthesize else { return };
    let Some(model) = &file.model else {
        out.add("synthesize", "[synthesize] needs a [model] section");
        return;
    };
    if file.train.is_none() && model.checkpoint.is_none() {
        out.add("model", "missing field \"checkpoint\": [synthesize] needs a trained model, from [train] or model.checkpoint");
    }
    let timesteps = model.diffusion.as_ref().map_or(1000, |d| d.timesteps);
    if s.sampler.steps == 0 || s.sampler.steps > timesteps {
        out.add(
            "synthesize.sampler.steps",
            format!(
                "{} is out of range, expected 1 to model.diffusion.timesteps = {timesteps}",
                s.sampler.steps
            ),
        );
    }
    out.range("synthesize.sampler.eta", s.sampler.eta, 0.0, 1.0, false);
    if !(s.guidance.sag.is_finite() && s.guidance.sag >= 0.0) {
        out.add(
            "synthesize.guidance.sag",
            format!("{} is not allowed, expected a scale >= 0", s.guidance.sag),
        );
    }
    out.positive(
        "synthesize.guidance.sag_blur_sigma",
        s.guidance.sag_blur_sigma,
    );
    if !(s.guidance.cfg.is_finite() && s.guidance.cfg >= 0.0) {
        out.add(
            "synthesize.guidance.cfg",
            format!("{} is not allowed, expected a scale >= 0", s.guidance.cfg),
        );
    }
    if s.guidance.sag > 0.0 {
        if model.kind != ModelKind::Diffusion {
            out.add(
                "synthesize.guidance.sag",
                "Self-Attention Guidance needs model.kind = \"diffusion\"",
            );
        } else if model.attention.kind == AttentionKind::None {
            out.add("synthesize.guidance.sag", "Self-Attention Guidance reads attention maps, but model.attention.kind is \"none\"");
        }
    }
    if s.guidance.cfg != 1.0 {
        if model.task == Task::Generation {
            out.add(
                "synthesize.guidance.cfg",
                "classifier-free guidance needs a condition, but task \"generation\" has none",
            );
        } else if model.cond_dropout == 0.0 {
            out.add("synthesize.guidance.cfg", "classifier-free guidance needs a model trained with condition dropout, but model.cond_dropout is 0");
        }
    }
    out.at_least_one("synthesize.variants", s.variants);
    out.at_least_one("synthesize.batch_size", s.batch_size);
    if let Some(t) = s.truncation {
        if model.kind != ModelKind::Sagan {
            out.add(
                "synthesize.truncation",
                "the truncation trick is for model.kind = \"sagan\"",
            );
        }
        out.positive("synthesize.truncation", t);
    }
}
