//! `[output]`: what a run writes besides its slice store and checkpoints.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind of written artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WriteFormat {
    /// NIfTI volumes (`.nii.gz`) on each subject's original grid.
    Nifti,
    /// DICOM derived series (explicit VR little endian, new UIDs, no patient data).
    Dicom,
    /// A PNG mosaic of every written volume's planes beside it (`<name>.png`).
    Png,
    /// An nnU-Net v2 raw dataset (needs `nnunet`).
    Nnunet,
}

/// `output.nnunet`: the nnU-Net v2 dataset identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NnunetConfig {
    /// Dataset number, 1-999 (nnU-Net reserves 1-500 for its own benchmarks; use 501+).
    pub id: u32,
    /// Dataset name: letters, digits, `_` and `-`; the folder is `DatasetNNN_<name>`.
    pub name: String,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// What to write: `nifti`, `dicom`, `png`, `nnunet`. Default `["nifti"]`.
    #[serde(default = "default_formats")]
    pub formats: Vec<WriteFormat>,
    /// nnU-Net export settings; required when `formats` has `nnunet`.
    #[serde(default)]
    pub nnunet: Option<NnunetConfig>,
    /// UID root for written DICOM series (digits and dots, at most 40 characters).
    /// Default: medsynth's root derived from a UUID (2.25...).
    #[serde(default)]
    pub dicom_uid_root: Option<String>,
    /// Write `report.md` and `report.html`. Default true.
    #[serde(default = "default_true")]
    pub report: bool,
    /// Show the model's attention maps over its synthetic slices in the report. Default false.
    #[serde(default)]
    pub attention_maps: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            formats: default_formats(),
            nnunet: None,
            dicom_uid_root: None,
            report: true,
            attention_maps: false,
        }
    }
}

fn default_formats() -> Vec<WriteFormat> {
    vec![WriteFormat::Nifti]
}
fn default_true() -> bool {
    true
}
