//! `[preprocess]`: the invertible steps between the source volumes and the slice store.

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
