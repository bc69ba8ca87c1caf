//! `[evaluate]`: metrics comparing synthesized and real images.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PipelineFile;
use super::check::{Findings, KeyPath};
use super::synthesize::SplitName;

/// A metric.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Structural similarity (Wang et al. 2004): Gaussian window 11, σ 1.5, K1 0.01, K2 0.03.
    Ssim,
    /// Multi-scale SSIM (Wang et al. 2003) with the standard five weights.
    MsSsim,
    /// Peak signal-to-noise ratio in dB.
    Psnr,
    /// Mean absolute error.
    Mae,
    /// Mean squared error.
    Mse,
    /// Fréchet Inception distance (Heusel et al. 2017), computed as pytorch-fid does.
    Fid,
    /// Kernel Inception distance (Bińkowski et al. 2018).
    Kid,
}

/// How images are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Whole volumes on the original grid, intensities as written.
    #[default]
    Volume,
    /// Each 2-D slice of the slice store, in normalized intensities.
    Slice,
    /// BraSyn: per-volume 0.5/99.5 percentile clip to [0, 1], 3-D SSIM inside and outside the
    /// tumour mask.
    Brasyn,
}

/// `[evaluate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSection {
    /// Metrics to compute. Default `["ssim", "psnr", "mae"]`.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// `volume`, `slice` or `brasyn`. Default `volume`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Subjects to evaluate. Default `test`.
    #[serde(default)]
    pub split: SplitName,
    /// Data range for SSIM and PSNR; absent uses the range of the real image.
    #[serde(default)]
    pub data_range: Option<f64>,
    /// Path of the FID Inception weights `pt_inception-2015-12-05-6726825d.pth` (relative to
    /// the run root); the environment variable MEDSYNTH_FID_WEIGHTS is used when absent.
    /// Without weights the report says FID was not computed.
    #[serde(default)]
    pub fid_weights: Option<String>,
    /// Folders of earlier runs (relative to the run root, e.g. `runs/demo`) on the same data and
    /// split: their models' scores on this run's subjects are shown beside this model in the
    /// report and the summary, named `method [folder]` (metrics.parquet keeps this run's own).
    /// Default none.
    #[serde(default)]
    pub compare: Vec<String>,
    /// KID subsets and subset size. Default `[100, 1000]`.
    #[serde(default = "default_kid_subsets")]
    pub kid_subsets: [u32; 2],
    /// Baselines scored beside the model (tasks with input modalities only): `histogram`
    /// (histogram matching of the first available input), `regression` (per-voxel linear
    /// regression on the inputs) and `unet` (the model's UNet trained as a deterministic L1
    /// regressor on the same slices, epochs and optimizer). Default
    /// `["histogram", "regression"]`.
    #[serde(default = "default_baselines")]
    pub baselines: Vec<Baseline>,
    /// Downstream segmentation: a UNet trained on the real training split with every
    /// modality, then run per test subject with the real target, the synthesized one (of
    /// every method) and the target missing; Dice per label region goes to the metrics.
    /// Needs labels. Default off.
    #[serde(default)]
    pub segmentation: Option<SegmentationConfig>,
}

/// A baseline method.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    Histogram,
    Regression,
    Unet,
}

impl Baseline {
    /// Its method name in metrics.
    pub fn method(self) -> &'static str {
        match self {
            Baseline::Histogram => "baseline-histogram",
            Baseline::Regression => "baseline-regression",
            Baseline::Unet => "baseline-unet",
        }
    }
}

/// `evaluate.segmentation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentationConfig {
    /// Training epochs; default `train.epochs`. Batch size, learning rate and warm-up are
    /// `[train]`'s; the backbone is the model's UNet without attention.
    #[serde(default)]
    pub epochs: Option<u32>,
}

fn default_baselines() -> Vec<Baseline> {
    vec![Baseline::Histogram, Baseline::Regression]
}

impl Default for EvaluateSection {
    fn default() -> Self {
        Self {
            metrics: default_metrics(),
            protocol: Protocol::default(),
            split: SplitName::default(),
            data_range: None,
            compare: Vec::new(),
            fid_weights: None,
            kid_subsets: default_kid_subsets(),
            baselines: default_baselines(),
            segmentation: None,
        }
    }
}

fn default_metrics() -> Vec<Metric> {
    vec![Metric::Ssim, Metric::Psnr, Metric::Mae]
}
fn default_kid_subsets() -> [u32; 2] {
    [100, 1000]
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, out: &mut Findings) {
    let Some(e) = &file.evaluate else { return };
    if file.synthesize.is_none() {
        out.add("evaluate", "[evaluate] compares synthesized images with real ones and needs a [synthesize] section");
    }
    if e.metrics.is_empty() {
        out.add("evaluate.metrics", "empty, expected at least one metric");
    }
    let mut seen = BTreeSet::new();
    for (i, m) in e.metrics.iter().enumerate() {
        if !seen.insert(*m) {
            out.add_at(
                KeyPath::parse("evaluate.metrics").index(i),
                format!("{m:?} is listed twice"),
            );
        }
    }
    if e.protocol == Protocol::Brasyn && !file.has_label() {
        out.add(
            "evaluate.protocol",
            "\"brasyn\" measures SSIM inside and outside the tumour and needs input.label",
        );
    }
    if let Some(r) = e.data_range {
        out.positive("evaluate.data_range", r);
    }
    out.at_least_one("evaluate.kid_subsets[0]", e.kid_subsets[0]);
    out.at_least_one("evaluate.kid_subsets[1]", e.kid_subsets[1]);
    let mut seen = BTreeSet::new();
    for (i, b) in e.baselines.iter().enumerate() {
        if !seen.insert(*b) {
            out.add_at(
                KeyPath::parse("evaluate.baselines").index(i),
                format!("{b:?} is listed twice"),
            );
        }
    }
    if e.baselines.contains(&super::Baseline::Unet) && file.train.is_none() {
        out.add(
            "evaluate.baselines",
            "\"unet\" trains the model's UNet as the model is trained ([train]: epochs, batch, optimizer); add a [train] section or leave \"unet\" out",
        );
    }
    if let Some(seg) = &e.segmentation {
        if !file.has_label() {
            out.add(
                "evaluate.segmentation",
                "downstream segmentation trains on the labels and needs input.label",
            );
        }
        if file
            .model
            .as_ref()
            .is_some_and(|m| m.task == crate::spec::Task::Generation)
        {
            out.add(
                "evaluate.segmentation",
                "task \"generation\" makes no image to segment a subject with; expected \"missing-modality\", \"translation\" or \"label-to-image\"",
            );
        }
        let split = file.synthesize.as_ref().map(|s| s.split);
        if file
            .model
            .as_ref()
            .is_some_and(|m| m.task == crate::spec::Task::LabelToImage)
            && !matches!(split, Some(SplitName::Train | SplitName::All))
        {
            out.add(
                "evaluate.segmentation",
                "for label-to-image it compares a network trained on real slices with one trained on real plus synthetic ones, which needs synthetic training subjects: set synthesize.split = \"train\" or \"all\"",
            );
        }
        if file.train.is_none() && seg.epochs.is_none() {
            out.add(
                "evaluate.segmentation.epochs",
                "missing, required when the file has no [train] to take the epochs from",
            );
        }
        if let Some(n) = seg.epochs {
            out.at_least_one("evaluate.segmentation.epochs", n);
        }
    }
}
