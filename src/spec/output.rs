//! `[output]`: what a run writes besides its slice store and checkpoints.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DicomWebServer;

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
    /// A BIDS derivatives dataset of the synthesized images (`export/bids/`): each image as
    /// `sub-<label>/[ses-<label>/]anat/sub-<label>_..._desc-synth_<suffix>.nii.gz` with a
    /// JSON sidecar (Sources, provenance digest), and `dataset_description.json` with
    /// GeneratedBy.
    Bids,
}

/// `output.bids`: how synthesized images are named in the BIDS derivatives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BidsOutput {
    /// Modality -> BIDS entities and suffix of its file, e.g. `t1ce = "ce-gd_T1w"`. Default:
    /// for `bids` input the modality's `input.modalities` entry; else `t1` T1w,
    /// `t1ce` ce-gadolinium_T1w, `t2` T2w, `flair` FLAIR, `pd` PDw, `t2star` T2starw.
    #[serde(default)]
    pub suffixes: std::collections::BTreeMap<String, String>,
    /// The sidecars' SkullStripped, which BIDS requires of anatomical derivatives: whether
    /// the images have non-brain voxels set to zero (as their sources have). Default false.
    #[serde(default)]
    pub skull_stripped: bool,
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
    /// What to write: `nifti`, `dicom`, `png`, `nnunet`, `bids`. Default `["nifti"]`.
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
    /// BIDS naming; used when `formats` has `bids`.
    #[serde(default)]
    pub bids: Option<BidsOutput>,
    /// Store every synthesized DICOM series on this DICOMweb server with STOW-RS (the series
    /// are written as with `dicom` in `formats`). A series counts as stored once the server
    /// has acknowledged each of its instances; a re-run stores only what the server lacks.
    #[serde(default)]
    pub dicomweb: Option<DicomWebServer>,
}

impl OutputSection {
    /// The formats synthesized volumes are written in: `formats`, with NIfTI when `bids`
    /// needs it and DICOM when `dicomweb` stores series.
    pub fn volume_formats(&self) -> Vec<WriteFormat> {
        let mut f = self.formats.clone();
        if f.contains(&WriteFormat::Bids) && !f.contains(&WriteFormat::Nifti) {
            f.push(WriteFormat::Nifti);
        }
        if self.dicomweb.is_some() && !f.contains(&WriteFormat::Dicom) {
            f.push(WriteFormat::Dicom);
        }
        f
    }
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            formats: default_formats(),
            nnunet: None,
            dicom_uid_root: None,
            report: true,
            attention_maps: false,
            bids: None,
            dicomweb: None,
        }
    }
}

fn default_formats() -> Vec<WriteFormat> {
    vec![WriteFormat::Nifti]
}
fn default_true() -> bool {
    true
}
