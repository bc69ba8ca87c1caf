//! `[output]`: what a run writes besides its slice store and checkpoints.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DicomWebServer;
use super::PipelineFile;
use super::check::{Findings, KeyPath, is_name};
use crate::names::bids::{Pattern, default_suffix};

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

impl super::PipelineFile {
    /// The BIDS entities and suffix a synthesized `modality` is written with:
    /// `output.bids.suffixes`, else for BIDS input the modality's own pattern (when it has no
    /// glob), else the usual one ([`default_suffix`]).
    pub fn bids_suffix(&self, modality: &str) -> Option<String> {
        if let Some(s) = self
            .output
            .bids
            .as_ref()
            .and_then(|b| b.suffixes.get(modality))
        {
            return Some(s.clone());
        }
        if self.input.format == super::InputFormat::Bids
            && let Some(p) = self.input.modalities.get(modality)
            && let Some(literal) = Pattern::parse(p).ok().and_then(|p| p.literal())
        {
            return Some(literal);
        }
        default_suffix(modality).map(str::to_owned)
    }
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, out: &mut Findings) {
    let o = &file.output;
    let mut seen = BTreeSet::new();
    for (i, f) in o.formats.iter().enumerate() {
        if !seen.insert(format!("{f:?}")) {
            out.add_at(
                KeyPath::parse("output.formats").index(i),
                format!("{f:?} is listed twice"),
            );
        }
    }
    let wants_nnunet = o.formats.contains(&WriteFormat::Nnunet);
    match (&o.nnunet, wants_nnunet) {
        (None, true) => out.add("output", "missing field \"nnunet\", required when output.formats has \"nnunet\" (e.g. nnunet = { id = 501, name = \"Phantom\" })"),
        (Some(_), false) => out.add("output.nnunet", "set, but output.formats does not include \"nnunet\""),
        _ => {}
    }
    if let Some(n) = &o.nnunet {
        if !(1..=999).contains(&n.id) {
            out.add(
                "output.nnunet.id",
                format!(
                    "{} is out of range, expected a dataset number 1 to 999",
                    n.id
                ),
            );
        }
        if !is_name(&n.name, &['-', '_']) {
            out.add(
                "output.nnunet.name",
                format!(
                    "{:?} is not a valid dataset name, expected letters, digits, '-' and '_'",
                    n.name
                ),
            );
        }
    }
    if let Some(server) = &o.dicomweb {
        super::dicomweb::check("output.dicomweb", server, false, out);
    }
    let wants_bids = o.formats.contains(&WriteFormat::Bids);
    if o.bids.is_some() && !wants_bids {
        out.add(
            "output.bids",
            "set, but output.formats does not include \"bids\"",
        );
    }
    if let Some(bids) = &o.bids {
        for (m, pattern) in &bids.suffixes {
            match crate::names::bids::Pattern::parse(pattern) {
                Ok(p) if p.literal().is_none() => out.add(
                    &format!("output.bids.suffixes.{m}"),
                    format!("{pattern:?} has a glob; a file name needs plain labels"),
                ),
                Ok(_) => {}
                Err(e) => out.add(&format!("output.bids.suffixes.{m}"), e),
            }
        }
    }
    if wants_bids && let Some(model) = &file.model {
        for target in model.target.iter() {
            if file.bids_suffix(target).is_none() {
                out.add(
                    "output.bids.suffixes",
                    format!("no BIDS suffix for the synthesized modality {target:?}; add {target} = \"<entities>_<suffix>\" (e.g. \"T2w\")"),
                );
            }
        }
    }
    if let Some(root) = &o.dicom_uid_root
        && !is_uid_root(root)
    {
        out.add("output.dicom_uid_root", format!("{root:?} is not a UID root, expected digits and dots, no empty or zero-padded component, at most 40 characters"));
    }
}

fn is_uid_root(root: &str) -> bool {
    !root.is_empty()
        && root.len() <= 40
        && root.split('.').all(|c| {
            !c.is_empty()
                && c.chars().all(|d| d.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::is_uid_root;

    #[test]
    fn uid_roots() {
        assert!(is_uid_root("1.2.826.0.1.3680043.10.543"));
        assert!(!is_uid_root("1.02.3"));
        assert!(!is_uid_root("1..2"));
        assert!(!is_uid_root("1.2.a"));
    }
}
