//! `[model]`: which generator, for which task, with which architecture.

use std::fmt;

use super::PipelineFile;
use super::check::{Findings, KeyPath, unknown_modality};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Generator family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Denoising diffusion (Ho et al. 2020) with an attention UNet.
    Diffusion,
    /// Self-attention GAN (Zhang et al. 2019; Brock et al. 2019) with spectral normalization.
    Sagan,
}

/// What the generator is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Image-to-image translation: all `inputs` present, produce `target`.
    Translation,
    /// Produce `target` from whichever `inputs` a subject has (any subset may be missing).
    MissingModality,
    /// Produce the `target` modalities from nothing (unconditional generation).
    Generation,
    /// Produce the `target` modalities from the label map, so the images come with labels.
    LabelToImage,
}

impl Task {
    /// Whether the task conditions on input modalities.
    pub fn uses_inputs(self) -> bool {
        matches!(self, Task::Translation | Task::MissingModality)
    }
}

/// One modality name or a list of them (`target = "t2"` or `target = ["t1", "t2"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modalities(pub Vec<String>);

impl Modalities {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|m| m == name)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Modalities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Modalities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Modalities;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a modality name or an array of modality names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Modalities, E> {
                Ok(Modalities(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Modalities, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Modalities(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Modalities {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Modalities".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A modality name or an array of modality names.",
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `diffusion` or `sagan`.
    pub kind: ModelKind,
    /// `translation`, `missing-modality`, `generation` or `label-to-image`.
    pub task: Task,
    /// Modalities given to the model as conditioning channels (translation and
    /// missing-modality). Default none.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Modality (or modalities) the model produces.
    pub target: Modalities,
    /// Probability of dropping each available input channel during training, so one model
    /// serves any subset of missing inputs (missing-modality). Default 0.25.
    #[serde(default = "default_modality_dropout")]
    pub modality_dropout: f64,
    /// Probability of dropping the whole condition during training, enabling
    /// classifier-free guidance at sampling time (diffusion only; GANs have no such guidance
    /// and train with every condition). Default 0.1.
    #[serde(default = "default_cond_dropout")]
    pub cond_dropout: f64,
    /// Apply this checkpoint (relative to the run root) instead of training.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// UNet backbone (diffusion, and the SAGAN translation generator).
    #[serde(default)]
    pub unet: UnetConfig,
    /// Self-attention inside the diffusion UNet (the GANs' SAGAN blocks are placed by
    /// `model.gan.attention_resolution`).
    #[serde(default)]
    pub attention: AttentionConfig,
    /// Diffusion settings; only with `kind = "diffusion"`.
    #[serde(default)]
    pub diffusion: Option<DiffusionConfig>,
    /// GAN settings; only with `kind = "sagan"`.
    #[serde(default)]
    pub gan: Option<GanConfig>,
}

fn default_modality_dropout() -> f64 {
    0.25
}
fn default_cond_dropout() -> f64 {
    0.1
}

/// `model.unet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Channels of the first level. Default 64.
    #[serde(default = "default_base_channels")]
    pub base_channels: u32,
    /// Channel multiplier per level; each level after the first halves the resolution,
    /// so the image size must be divisible by 2^(levels - 1). Default `[1, 2, 2, 4]`.
    #[serde(default = "default_channel_mult")]
    pub channel_mult: Vec<u32>,
    /// Residual blocks per level. Default 2.
    #[serde(default = "default_res_blocks")]
    pub res_blocks: u32,
    /// GroupNorm groups; must divide every level's channel count (diffusion; the GAN UNet uses
    /// the largest divisor of each width not above it). Default 32.
    #[serde(default = "default_groups")]
    pub groups: u32,
    /// Dropout in residual blocks, in [0, 1). Default 0.0.
    #[serde(default)]
    pub dropout: f64,
}

impl UnetConfig {
    /// `channel_mult` as sizes.
    pub fn multipliers(&self) -> Vec<usize> {
        self.channel_mult.iter().map(|&m| m as usize).collect()
    }
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            base_channels: default_base_channels(),
            channel_mult: default_channel_mult(),
            res_blocks: default_res_blocks(),
            groups: default_groups(),
            dropout: 0.0,
        }
    }
}

fn default_base_channels() -> u32 {
    64
}
fn default_channel_mult() -> Vec<u32> {
    vec![1, 2, 2, 4]
}
fn default_res_blocks() -> u32 {
    2
}
fn default_groups() -> u32 {
    32
}

/// Attention kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// No self-attention (ablation).
    None,
    /// Multi-head self-attention.
    #[default]
    Mhsa,
    /// DiffiT time-dependent multi-head self-attention (arXiv 2312.02139).
    Tmsa,
}

/// `model.attention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    /// `none`, `mhsa` or `tmsa`. Default `mhsa`.
    #[serde(default)]
    pub kind: AttentionKind,
    /// Feature-map sizes (in pixels, along the shorter side) at which attention blocks sit;
    /// each must be one of the UNet's level resolutions. Default `[16, 8]`.
    #[serde(default = "default_resolutions")]
    pub resolutions: Vec<u32>,
    /// Attention heads; must divide the channel count at every attention level. Default 4.
    #[serde(default = "default_heads")]
    pub heads: u32,
    /// Window size for windowed attention with a relative position bias (tmsa); absent
    /// attends globally.
    #[serde(default)]
    pub window: Option<u32>,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            kind: AttentionKind::default(),
            resolutions: default_resolutions(),
            heads: default_heads(),
            window: None,
        }
    }
}

fn default_resolutions() -> Vec<u32> {
    vec![16, 8]
}
fn default_heads() -> u32 {
    4
}

/// Noise schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Linear betas from `beta_start` to `beta_end` (Ho et al. 2020).
    #[default]
    Linear,
    /// Cosine schedule (Nichol & Dhariwal 2021).
    Cosine,
}

/// What the network predicts.
///
/// The default is `v`: at high noise an ε-predicting network's x̂0 = (x_t - √(1-ᾱ) ε̂)/√ᾱ
/// amplifies small errors, and with short training it ignores the condition there. On the
/// T1 → T2 overfit test (5 phantom slices, 250 steps) DDIM samples reach SSIM 0.88-0.92 with
/// `v` over three seeds and 0.07 with `epsilon`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Prediction {
    /// The added noise ε (Ho et al. 2020).
    Epsilon,
    /// The velocity v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0 (Salimans & Ho 2022).
    #[default]
    V,
}

/// `model.diffusion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// `linear` or `cosine`. Default `linear`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Number of diffusion steps T. Default 1000.
    #[serde(default = "default_timesteps")]
    pub timesteps: u32,
    /// First beta of the linear schedule, as for T = 1000 (scaled by 1000 / T). Default 1e-4.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta of the linear schedule, as for T = 1000 (scaled by 1000 / T). Default 0.02.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// `epsilon` or `v`. Default `v`.
    #[serde(default)]
    pub prediction: Prediction,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule::default(),
            timesteps: default_timesteps(),
            beta_start: default_beta_start(),
            beta_end: default_beta_end(),
            prediction: Prediction::default(),
        }
    }
}

fn default_timesteps() -> u32 {
    1000
}
fn default_beta_start() -> f64 {
    1e-4
}
fn default_beta_end() -> f64 {
    0.02
}

/// `model.gan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    /// Latent size for noise-to-image generation. Default 128.
    #[serde(default = "default_z_dim")]
    pub z_dim: u32,
    /// Weight λ of the L1 term for paired tasks (loss = hinge + λ·L1). Default 100.
    #[serde(default = "default_l1_weight")]
    pub l1_weight: f64,
    /// Discriminator steps per generator step. Default 1.
    #[serde(default = "default_n_dis")]
    pub n_dis: u32,
    /// Feature-map size at which the generator's and discriminator's self-attention sits
    /// (the closest one the network has; the paired generator's sits at its bottleneck).
    /// Default 32.
    #[serde(default = "default_attention_resolution")]
    pub attention_resolution: u32,
    /// `generation` only: condition on K slice-position classes (each subject's slices split
    /// into K equal bands), BigGAN-style (conditional batch norm from a shared class
    /// embedding, projection discriminator). Default 0: unconditional.
    #[serde(default)]
    pub classes: u32,
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            z_dim: default_z_dim(),
            l1_weight: default_l1_weight(),
            n_dis: default_n_dis(),
            attention_resolution: default_attention_resolution(),
            classes: 0,
        }
    }
}

fn default_z_dim() -> u32 {
    128
}
fn default_l1_weight() -> f64 {
    100.0
}
fn default_n_dis() -> u32 {
    1
}
fn default_attention_resolution() -> u32 {
    32
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(
    file: &PipelineFile,
    model: &ModelSection,
    declared: &[String],
    out: &mut Findings,
) {
    for (i, name) in model.inputs.iter().enumerate() {
        if !declared.contains(name) {
            out.add_at(
                KeyPath::parse("model.inputs").index(i),
                unknown_modality(name, declared),
            );
        }
    }
    if model.target.is_empty() {
        out.add(
            "model.target",
            "empty, expected the modality (or modalities) to produce",
        );
    }
    for (i, name) in model.target.iter().enumerate() {
        let key = if model.target.0.len() == 1 {
            KeyPath::parse("model.target")
        } else {
            KeyPath::parse("model.target").index(i)
        };
        if !declared.contains(&name.to_owned()) {
            out.add_at(key, unknown_modality(name, declared));
        } else if model.inputs.iter().any(|m| m == name) {
            out.add_at(
                key,
                format!(
                    "{name:?} is also among model.inputs, expected the target not to be an input"
                ),
            );
        }
    }
    match model.task {
        Task::Translation | Task::MissingModality => {
            if model.inputs.is_empty() {
                out.add(
                    "model.inputs",
                    format!(
                        "empty, expected at least one input modality for task {:?}",
                        task_name(model.task)
                    ),
                );
            }
            if model.target.0.len() > 1 {
                out.add("model.target", "expected one target modality for this task");
            }
        }
        Task::Generation | Task::LabelToImage => {
            if !model.inputs.is_empty() {
                out.add(
                    "model.inputs",
                    format!(
                        "not used by task {:?}, which takes no input modality",
                        task_name(model.task)
                    ),
                );
            }
        }
    }
    if model.task == Task::LabelToImage && !file.has_label() {
        out.add(
            "model.task",
            "\"label-to-image\" needs a label volume, but input.label is not set",
        );
    }
    out.range(
        "model.modality_dropout",
        model.modality_dropout,
        0.0,
        1.0,
        true,
    );
    out.range("model.cond_dropout", model.cond_dropout, 0.0, 1.0, true);
    match (model.kind, &model.diffusion, &model.gan) {
        (ModelKind::Sagan, Some(_), _) => out.add(
            "model.diffusion",
            "only used with kind \"diffusion\", but model.kind is \"sagan\"",
        ),
        (ModelKind::Diffusion, _, Some(_)) => out.add(
            "model.gan",
            "only used with kind \"sagan\", but model.kind is \"diffusion\"",
        ),
        _ => {}
    }
    if let Some(d) = &model.diffusion {
        if d.timesteps == 0 || d.timesteps > 10_000 {
            out.add(
                "model.diffusion.timesteps",
                format!("{} is out of range, expected 1 to 10000", d.timesteps),
            );
        }
        out.range("model.diffusion.beta_start", d.beta_start, 0.0, 1.0, true);
        out.range("model.diffusion.beta_end", d.beta_end, 0.0, 1.0, true);
        if d.beta_start >= d.beta_end {
            out.add(
                "model.diffusion.beta_end",
                format!(
                    "{} is not above beta_start = {}, expected beta_start < beta_end",
                    d.beta_end, d.beta_start
                ),
            );
        }
    }
    if let Some(g) = &model.gan {
        out.at_least_one("model.gan.z_dim", g.z_dim);
        out.at_least_one("model.gan.n_dis", g.n_dis);
        if !(g.l1_weight.is_finite() && g.l1_weight >= 0.0) {
            out.add(
                "model.gan.l1_weight",
                format!("{} is not allowed, expected a number >= 0", g.l1_weight),
            );
        }
        out.at_least_one("model.gan.attention_resolution", g.attention_resolution);
        if g.classes > 0 && model.task != Task::Generation {
            out.add(
                "model.gan.classes",
                format!(
                    "slice-position classes condition task \"generation\", but model.task is {:?}",
                    task_name(model.task)
                ),
            );
        }
    }
    if model.kind == ModelKind::Sagan && model.attention != crate::spec::AttentionConfig::default()
    {
        out.add(
            "model.attention",
            "configures the diffusion UNet's attention; with kind \"sagan\" the SAGAN attention blocks are placed by model.gan.attention_resolution",
        );
    }
    if model.kind == ModelKind::Sagan
        && let Some(size) = file.preprocess.size
    {
        let short = size[0].min(size[1]);
        // The noise generator doubles the resolution at least once from a start of 4 pixels
        // or more, so both sides must be even.
        let even = size.iter().all(|n| n.is_multiple_of(2));
        if model.task == Task::Generation && (short < 8 || !even) {
            out.add(
                "preprocess.size",
                format!(
                    "{size:?} does not suit the GAN generator, which doubles the resolution from a start of at least 4 pixels: expected both sides even and >= 8"
                ),
            );
        } else if model.task != Task::Generation && short < 32 {
            out.add(
                "preprocess.size",
                format!("{size:?} is too small for the PatchGAN discriminator (three stride-2 convs, then two 4x4 ones), expected both sides >= 32"),
            );
        }
    }
    check_unet(file, model, out);
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Translation => "translation",
        Task::MissingModality => "missing-modality",
        Task::Generation => "generation",
        Task::LabelToImage => "label-to-image",
    }
}

fn check_unet(file: &PipelineFile, model: &ModelSection, out: &mut Findings) {
    let u = &model.unet;
    out.at_least_one("model.unet.base_channels", u.base_channels);
    out.at_least_one("model.unet.res_blocks", u.res_blocks);
    out.at_least_one("model.unet.groups", u.groups);
    out.range("model.unet.dropout", u.dropout, 0.0, 1.0, true);
    if u.channel_mult.is_empty() || u.channel_mult.len() > 7 {
        out.add("model.unet.channel_mult", "expected 1 to 7 levels");
        return;
    }
    for (i, &m) in u.channel_mult.iter().enumerate() {
        let channels = u.base_channels * m;
        if m == 0 {
            out.add_at(
                KeyPath::parse("model.unet.channel_mult").index(i),
                "0 is not allowed, expected at least 1",
            );
        } else if model.kind == ModelKind::Diffusion
            && u.groups > 0
            && !channels.is_multiple_of(u.groups)
        {
            out.add_at(
                KeyPath::parse("model.unet.channel_mult").index(i),
                format!("level {i} has {channels} channels, which model.unet.groups = {} does not divide", u.groups),
            );
        }
    }
    // The GAN's noise generator doubles from a 4-pixel start instead of using the UNet levels.
    let factor = if model.kind == ModelKind::Sagan && model.task == Task::Generation {
        1
    } else {
        1u32 << (u.channel_mult.len() - 1)
    };
    let Some(size) = file.preprocess.size else {
        out.add("preprocess", "missing field \"size\", required when [model] is present: every slice must have the same [rows, cols]");
        return;
    };
    for (i, &n) in size.iter().enumerate() {
        if !n.is_multiple_of(factor) {
            out.add_at(
                KeyPath::parse("preprocess.size").index(i),
                format!(
                    "{n} is not divisible by {factor}, the UNet's downsampling factor (2^{} for {} levels in model.unet.channel_mult)",
                    u.channel_mult.len() - 1,
                    u.channel_mult.len()
                ),
            );
        }
    }
    let a = &model.attention;
    // The GANs' attention is the SAGAN block, placed by model.gan.attention_resolution.
    if a.kind == AttentionKind::None || model.kind == ModelKind::Sagan {
        return;
    }
    out.at_least_one("model.attention.heads", a.heads);
    let short = size[0].min(size[1]);
    let levels: Vec<(u32, u32)> = u
        .channel_mult
        .iter()
        .enumerate()
        .map(|(i, &m)| (short >> i, u.base_channels * m))
        .collect();
    for (i, &r) in a.resolutions.iter().enumerate() {
        let key = KeyPath::parse("model.attention.resolutions").index(i);
        match levels.iter().find(|(res, _)| *res == r) {
            None => out.add_at(
                key,
                format!(
                    "{r} is not a UNet level resolution, expected one of {}",
                    levels
                        .iter()
                        .map(|(res, _)| res.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some((_, channels)) => {
                if a.heads > 0 && !channels.is_multiple_of(a.heads) {
                    out.add(
                        "model.attention.heads",
                        format!(
                            "{} heads do not divide the {channels} channels at resolution {r}",
                            a.heads
                        ),
                    );
                }
                // Both sides of the feature map at this level must split into windows.
                let f = short / r.max(1);
                let (rh, rw) = (size[0] / f.max(1), size[1] / f.max(1));
                if let Some(w) = a.window
                    && (w == 0 || !rh.is_multiple_of(w) || !rw.is_multiple_of(w))
                {
                    out.add(
                        "model.attention.window",
                        format!(
                            "window {w} does not divide the {rh} x {rw} feature map at attention resolution {r}"
                        ),
                    );
                }
            }
        }
    }
    if a.window.is_some() && a.kind != AttentionKind::Tmsa {
        out.add(
            "model.attention.window",
            "windowed attention is only available with kind \"tmsa\"",
        );
    }
}
