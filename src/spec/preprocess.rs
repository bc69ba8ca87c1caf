//! `[preprocess]`: the invertible steps between the source volumes and the slice store.

use super::PipelineFile;
use super::check::{Findings, KeyPath, is_orientation, unknown_modality};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[preprocess]`: every step is recorded so synthesized data can be put back on the
/// subject's original grid and intensity scale. Steps run in the order the fields are listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSection {
    /// Target orientation code: three letters, one from each of R/L, A/P and S/I, naming the
    /// direction each voxel axis points to (NIfTI convention). Default `RAS`.
    #[serde(default = "default_orientation")]
    pub orientation: String,
    /// Target voxel size `[x, y, z]` in millimetres; absent keeps each subject's spacing.
    #[serde(default)]
    pub spacing_mm: Option<[f64; 3]>,
    /// Modality whose grid the others are resampled onto (through world coordinates) when a
    /// subject's modalities are on different grids. Default: the first modality listed.
    #[serde(default)]
    pub reference: Option<String>,
    /// `foreground` crops to the bounding box of all modalities' foreground plus
    /// `crop_margin_vox`; `none` keeps the full field of view. Default `foreground`.
    #[serde(default)]
    pub crop: CropMode,
    /// Margin in voxels kept around the foreground box. Default 4.
    #[serde(default = "default_margin")]
    pub crop_margin_vox: u32,
    /// In-plane slice size `[rows, cols]` after cropping, reached by centred padding or
    /// cropping; absent keeps the cropped size (then slices of different subjects may differ,
    /// which models refuse).
    #[serde(default)]
    pub size: Option<[u32; 2]>,
    /// Intensity normalization, per subject and modality.
    #[serde(default)]
    pub normalize: NormalizeConfig,
    /// How volumes are cut into 2-D slices.
    #[serde(default)]
    pub slices: SliceConfig,
    /// How subjects are split into train / val / test.
    #[serde(default)]
    pub split: SplitConfig,
    /// Shared slice-store cache folder, relative to the run root; absent keeps the store in
    /// the run folder. Stores are content-addressed, so runs with the same inputs and
    /// preprocessing share one.
    #[serde(default)]
    pub cache: Option<String>,
}

impl Default for PreprocessSection {
    fn default() -> Self {
        Self {
            orientation: default_orientation(),
            spacing_mm: None,
            reference: None,
            crop: CropMode::default(),
            crop_margin_vox: default_margin(),
            size: None,
            normalize: NormalizeConfig::default(),
            slices: SliceConfig::default(),
            split: SplitConfig::default(),
            cache: None,
        }
    }
}

fn default_orientation() -> String {
    "RAS".to_owned()
}
fn default_margin() -> u32 {
    4
}

/// Cropping mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CropMode {
    /// Keep the whole field of view.
    None,
    /// Crop to the union of every modality's foreground (voxels above the background level).
    #[default]
    Foreground,
}

/// Intensity normalization method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizeMethod {
    /// Leave intensities as they are.
    None,
    /// Clip to the `low` and `high` percentiles of the foreground, then map linearly to `range`.
    #[default]
    Percentile,
    /// Subtract the foreground mean and divide by its standard deviation.
    Zscore,
    /// Map the volume's minimum and maximum linearly to `range`.
    Minmax,
}

/// `preprocess.normalize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// `percentile`, `zscore`, `minmax` or `none`. Default `percentile`.
    #[serde(default)]
    pub method: NormalizeMethod,
    /// Lower percentile (0-100) for `percentile`. Default 0.5.
    #[serde(default = "default_low")]
    pub low: f64,
    /// Upper percentile (0-100) for `percentile`. Default 99.5.
    #[serde(default = "default_high")]
    pub high: f64,
    /// Output range `[min, max]` for `percentile` and `minmax`. Default `[-1.0, 1.0]`.
    #[serde(default = "default_range")]
    pub range: [f64; 2],
    /// For `percentile`: the fraction of the output range (at each end) that holds the values
    /// below `low` and above `high`, mapped linearly from the volume's minimum and maximum, so
    /// the background and the brightest voxels come back as they were when a volume is put
    /// back on its grid. `0` clips them to the bounds instead (they then come back as the
    /// percentile values: a grey background). In [0, 0.5). Default 0.1.
    #[serde(default = "default_tails")]
    pub tails: f64,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            method: NormalizeMethod::default(),
            low: default_low(),
            high: default_high(),
            range: default_range(),
            tails: default_tails(),
        }
    }
}

fn default_tails() -> f64 {
    0.1
}

fn default_low() -> f64 {
    0.5
}
fn default_high() -> f64 {
    99.5
}
fn default_range() -> [f64; 2] {
    [-1.0, 1.0]
}

/// Anatomical axis along which volumes are sliced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SliceAxis {
    /// Along superior-inferior: slices are axial planes.
    #[default]
    Axial,
    /// Along anterior-posterior.
    Coronal,
    /// Along left-right.
    Sagittal,
}

/// `preprocess.slices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SliceConfig {
    /// `axial`, `coronal` or `sagittal`. Default `axial`.
    #[serde(default)]
    pub axis: SliceAxis,
    /// Keep a slice only if at least this fraction (0-1) of its pixels is foreground. Default 0.05.
    #[serde(default = "default_min_foreground")]
    pub min_foreground: f64,
    /// 2.5-D context: this many neighbouring slices on each side are added as extra channels.
    /// Default 0 (plain 2-D).
    #[serde(default)]
    pub context: u32,
}

impl Default for SliceConfig {
    fn default() -> Self {
        Self {
            axis: SliceAxis::default(),
            min_foreground: default_min_foreground(),
            context: 0,
        }
    }
}

fn default_min_foreground() -> f64 {
    0.05
}

/// `preprocess.split`: fractions of subjects per split; they must add up to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of subjects for training. Default 0.8.
    #[serde(default = "default_train")]
    pub train: f64,
    /// Fraction of subjects for validation. Default 0.1.
    #[serde(default = "default_val")]
    pub val: f64,
    /// Fraction of subjects for testing. Default 0.1.
    #[serde(default = "default_test")]
    pub test: f64,
    /// A CSV or parquet file (relative to the run root) with columns `subject` and `split`
    /// that fixes the split instead of the fractions.
    #[serde(default)]
    pub list: Option<String>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            train: default_train(),
            val: default_val(),
            test: default_test(),
            list: None,
        }
    }
}

fn default_train() -> f64 {
    0.8
}
fn default_val() -> f64 {
    0.1
}
fn default_test() -> f64 {
    0.1
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, declared: &[String], out: &mut Findings) {
    let p = &file.preprocess;
    if !is_orientation(&p.orientation) {
        out.add(
            "preprocess.orientation",
            format!("{:?} is not an orientation code, expected three letters with one of R/L, one of A/P and one of S/I, such as \"RAS\" or \"LPS\"", p.orientation),
        );
    }
    if let Some(spacing) = p.spacing_mm {
        for (i, s) in spacing.iter().enumerate() {
            if !(s.is_finite() && *s > 0.0) {
                out.add_at(
                    KeyPath::parse("preprocess.spacing_mm").index(i),
                    format!("{s} mm is not allowed, expected a positive voxel size"),
                );
            }
        }
    }
    if let Some(reference) = &p.reference
        && !declared.contains(reference)
    {
        out.add(
            "preprocess.reference",
            unknown_modality(reference, declared),
        );
    }
    if let Some(size) = p.size {
        for (i, &n) in size.iter().enumerate() {
            if !(8..=4096).contains(&n) {
                out.add_at(
                    KeyPath::parse("preprocess.size").index(i),
                    format!("{n} pixels is out of range, expected 8 to 4096"),
                );
            }
        }
    }
    let n = &p.normalize;
    if n.method == NormalizeMethod::Percentile {
        out.range("preprocess.normalize.low", n.low, 0.0, 100.0, false);
        out.range("preprocess.normalize.high", n.high, 0.0, 100.0, false);
        out.range("preprocess.normalize.tails", n.tails, 0.0, 0.5, true);
        if n.low >= n.high {
            out.add(
                "preprocess.normalize.high",
                format!(
                    "{} is not above low = {}, expected low < high",
                    n.high, n.low
                ),
            );
        }
    }
    if !(n.range[0].is_finite() && n.range[1].is_finite() && n.range[0] < n.range[1]) {
        out.add(
            "preprocess.normalize.range",
            format!(
                "[{}, {}] is empty, expected [min, max] with min < max",
                n.range[0], n.range[1]
            ),
        );
    }
    out.range(
        "preprocess.slices.min_foreground",
        p.slices.min_foreground,
        0.0,
        1.0,
        false,
    );
    if p.slices.context > 8 {
        out.add(
            "preprocess.slices.context",
            format!(
                "{} neighbours per side is too many, expected 0 to 8",
                p.slices.context
            ),
        );
    }
    let s = &p.split;
    out.range("preprocess.split.train", s.train, 0.0, 1.0, false);
    out.range("preprocess.split.val", s.val, 0.0, 1.0, false);
    out.range("preprocess.split.test", s.test, 0.0, 1.0, false);
    let sum = s.train + s.val + s.test;
    if s.list.is_none() && (sum - 1.0).abs() > 1e-6 {
        out.add(
            "preprocess.split",
            format!(
                "train + val + test = {}, expected the fractions to add up to 1",
                (sum * 1e6).round() / 1e6
            ),
        );
    }
    if file.train.is_some() && s.list.is_none() && s.train <= 0.0 {
        out.add(
            "preprocess.split.train",
            "0 leaves no subject to train on, but [train] is present",
        );
    }
}
