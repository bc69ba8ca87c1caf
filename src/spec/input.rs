//! `[input]`: where subjects come from (NIfTI files, DICOM series, or generated phantoms).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of data a pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// One folder per subject holding NIfTI volumes, found by `subject_glob` and `modalities`.
    Nifti,
    /// A folder tree of DICOM files; series are grouped by SeriesInstanceUID and matched to
    /// modalities by `series`.
    Dicom,
    /// Procedural multi-contrast head phantoms generated into the run folder (see `phantom`).
    Phantom,
}

/// `[input]`: which subjects a run reads and which modality each file or series is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// `nifti`, `dicom` or `phantom`.
    pub format: InputFormat,
    /// Folder holding the subjects, relative to the run root. Required for `nifti` and
    /// `dicom`; not allowed for `phantom`.
    #[serde(default)]
    pub root: Option<String>,
    /// Glob (`*`, `?`, `[abc]`) matched against the names of the folders directly under `root`;
    /// each match is one subject. Default `*`.
    #[serde(default = "default_subject_glob")]
    pub subject_glob: String,
    /// `nifti` only: modality name -> path template relative to `root`, with `{subject}`
    /// replaced by the subject folder's name, e.g. `t1 = "{subject}/t1.nii.gz"`.
    /// Modality names are lower-case letters, digits and `_`.
    #[serde(default)]
    pub modalities: BTreeMap<String, String>,
    /// `dicom` only: modality name -> which series of a subject it is.
    #[serde(default)]
    pub series: BTreeMap<String, SeriesMatch>,
    /// Optional label volume (NIfTI path template, as in `modalities`); BraTS labels for the
    /// phantom (1 necrosis, 2 oedema, 3 enhancing tumour).
    #[serde(default)]
    pub label: Option<String>,
    /// Modalities a subject must have to be used; a subject missing one is skipped and
    /// listed in the run summary. Default: every modality the model needs as input; for
    /// `missing-modality` tasks none is required.
    #[serde(default)]
    pub required: Option<Vec<String>>,
    /// `phantom` only: how many subjects to generate and on which grid.
    #[serde(default)]
    pub phantom: Option<PhantomInput>,
}

fn default_subject_glob() -> String {
    "*".to_owned()
}

/// Matches a DICOM series to a modality by its header; every given pattern must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesMatch {
    /// DICOM Modality (0008,0060), e.g. `MR` or `CT`. Default: any.
    #[serde(default)]
    pub modality: Option<String>,
    /// Case-insensitive glob matched against SeriesDescription (0008,103E), e.g. `*t1*post*`.
    #[serde(default)]
    pub description: Option<String>,
}

/// Procedural phantom subjects generated at the start of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhantomInput {
    /// Number of subjects. Default 8.
    #[serde(default = "default_subjects")]
    pub subjects: u32,
    /// Grid size in voxels `[x, y, z]`. Default `[96, 112, 96]`.
    #[serde(default = "default_shape")]
    pub shape: [u32; 3],
    /// Isotropic voxel size in millimetres. Default 2.0.
    #[serde(default = "default_spacing")]
    pub spacing_mm: f64,
    /// Fraction of subjects given a tumour, in [0, 1]. Default 0.5.
    #[serde(default = "default_tumour_fraction")]
    pub tumour_fraction: f64,
}

impl Default for PhantomInput {
    fn default() -> Self {
        Self {
            subjects: default_subjects(),
            shape: default_shape(),
            spacing_mm: default_spacing(),
            tumour_fraction: default_tumour_fraction(),
        }
    }
}

fn default_subjects() -> u32 {
    8
}
fn default_shape() -> [u32; 3] {
    [96, 112, 96]
}
fn default_spacing() -> f64 {
    2.0
}
fn default_tumour_fraction() -> f64 {
    0.5
}
