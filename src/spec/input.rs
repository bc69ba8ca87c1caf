//! `[input]`: where subjects come from (NIfTI files, DICOM series, or generated phantoms).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DicomWebServer;
use super::PipelineFile;
use super::check::{
    Findings, KeyPath, check_template, is_modality_name, is_orientation, unknown_modality,
};

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
    /// Studies on a DICOMweb server (see `dicomweb`): searched with QIDO-RS, retrieved with
    /// WADO-RS into a cache, then read as `dicom` with subjects grouped by patient or study.
    Dicomweb,
    /// A BIDS dataset under `root`: `sub-*/[ses-*/]anat/*.nii[.gz]`, one subject per subject
    /// and session; `modalities` name each modality's entities and suffix (`T1w`,
    /// `ce-gd_T1w`, `acq-fast_FLAIR`), and `label` a segmentation under `derivatives/`.
    Bids,
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
    /// `nifti`: modality name -> path template relative to `root`, with `{subject}`
    /// replaced by the subject folder's name, e.g. `t1 = "{subject}/t1.nii.gz"`.
    /// `bids`: modality name -> the BIDS entities and suffix of its file, e.g. `t1 = "T1w"`,
    /// `t1ce = "ce-gd_T1w"`, `t2 = "acq-*_T2w"`: the suffix must match, every entity named must
    /// match (a value may be a glob), and an entity not named must be absent, except `run`
    /// (several runs: `prefer`). Modality names are lower-case letters, digits and `_`.
    #[serde(default)]
    pub modalities: BTreeMap<String, String>,
    /// `dicom` and `dicomweb`: modality name -> which series of a subject it is.
    #[serde(default)]
    pub series: BTreeMap<String, SeriesMatch>,
    /// Optional label volume: for `nifti` a path template, as in `modalities`; for `bids` the
    /// entities and suffix of a segmentation under `derivatives/<pipeline>/`, e.g.
    /// `"desc-tumor_dseg"`. BraTS labels for the phantom (1 necrosis, 2 oedema, 3 enhancing
    /// tumour).
    #[serde(default)]
    pub label: Option<String>,
    /// Modalities a subject must have to be used; a subject missing one is skipped and
    /// listed in the run summary. Default: every modality the model needs as input; for
    /// `missing-modality` tasks none is required.
    #[serde(default)]
    pub required: Option<Vec<String>>,
    /// `dicom` only: what one subject is. `folder` (default): each folder under `root` matching
    /// `subject_glob`. `patient`: every series under `root` (a flat tree or a DICOMDIR export,
    /// patients mixed) grouped by PatientID; `study`: grouped by StudyInstanceUID. Grouped by
    /// header, subjects are named by a keyed hash (HMAC-SHA-256) of the PatientID or
    /// StudyInstanceUID, never by the value itself: the key comes from `pseudonym_key_file`
    /// or the environment variable `MEDSYNTH_PSEUDONYM_KEY`, and is never written into a run.
    #[serde(default)]
    pub subjects: SubjectGrouping,
    /// `dicom` only: which series a modality takes when several of a subject match its
    /// pattern. `error` (default): refuse, naming them. `latest`: the latest SeriesDate and
    /// SeriesTime (then the highest SeriesNumber). `largest`: the most voxels.
    #[serde(default)]
    pub prefer: Prefer,
    /// File holding the pseudonymization key (its bytes, surrounding whitespace trimmed;
    /// relative to the run root). Default: the environment variable `MEDSYNTH_PSEUDONYM_KEY`.
    #[serde(default)]
    pub pseudonym_key_file: Option<String>,
    /// Where to write the map from real PatientID (or StudyInstanceUID) to subject id, as CSV;
    /// it must lie outside the run folder. Default: the map is not written anywhere.
    #[serde(default)]
    pub pseudonym_map: Option<String>,
    /// `dicom` only: use images whose files lack orientation, positions or pixel spacing, with
    /// the geometry assumed as dcm2niix assumes it (identity orientation, planes stacked from
    /// the origin, 1 mm pixels or ImagerPixelSpacing). Default false: such images are
    /// refused, because resampling needs real geometry.
    #[serde(default)]
    pub assume_geometry: bool,
    /// `phantom` only: how many subjects to generate and on which grid.
    #[serde(default)]
    pub phantom: Option<PhantomInput>,
    /// `dicomweb` only: the server, the study search and the cache.
    #[serde(default)]
    pub dicomweb: Option<DicomWebServer>,
}

/// What one subject of a DICOM input is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectGrouping {
    /// One folder under `root` per subject, named by the folder.
    #[default]
    Folder,
    /// The series sharing a PatientID, named by its pseudonym.
    Patient,
    /// The series sharing a StudyInstanceUID, named by its pseudonym.
    Study,
}

/// Which of several matching series a modality takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Prefer {
    /// Refuse, naming the series.
    #[default]
    Error,
    /// The latest SeriesDate + SeriesTime, then the highest SeriesNumber.
    Latest,
    /// The most voxels.
    Largest,
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
    /// Voxel size in millimetres: one number (isotropic) or `[R, A, S]`, e.g. `[0.9, 0.9, 4.0]`.
    /// Default 2.0.
    #[serde(default = "default_spacing")]
    pub spacing_mm: Spacing,
    /// Fraction of subjects given a tumour, in [0, 1]. Default 0.5.
    #[serde(default = "default_tumour_fraction")]
    pub tumour_fraction: f64,
    /// How the files store the voxel axes, as an orientation code: `LAS` as FSL writes,
    /// `LPS` as DICOM, `PIR`, ... (`shape` and `spacing_mm` stay along R, A, S). Default `RAS`.
    #[serde(default = "default_orientation")]
    pub orientation: String,
    /// Oblique acquisition: the grid rotated about the world x, y and z axes, in degrees
    /// (each within ±40, so every axis keeps its orientation letter). Default `[0, 0, 0]`.
    #[serde(default)]
    pub tilt_deg: [f64; 3],
}

/// A voxel size: one number for all axes, or one per axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Spacing {
    /// The same size along every axis, in mm.
    Isotropic(f64),
    /// Sizes along R, A and S, in mm.
    PerAxis([f64; 3]),
}

impl Spacing {
    /// The size along each axis.
    pub fn per_axis(self) -> [f64; 3] {
        match self {
            Spacing::Isotropic(s) => [s; 3],
            Spacing::PerAxis(s) => s,
        }
    }
}

impl Default for PhantomInput {
    fn default() -> Self {
        Self {
            subjects: default_subjects(),
            shape: default_shape(),
            spacing_mm: default_spacing(),
            tumour_fraction: default_tumour_fraction(),
            orientation: default_orientation(),
            tilt_deg: [0.0; 3],
        }
    }
}

fn default_subjects() -> u32 {
    8
}
fn default_shape() -> [u32; 3] {
    [96, 112, 96]
}
fn default_spacing() -> Spacing {
    Spacing::Isotropic(2.0)
}
fn default_orientation() -> String {
    "RAS".to_owned()
}
fn default_tumour_fraction() -> f64 {
    0.5
}

// The semantic checks of this section (see `check.rs`).

pub(super) fn check(file: &PipelineFile, out: &mut Findings) -> Vec<String> {
    let input = &file.input;
    let format = input.format;
    let needs_root = matches!(
        format,
        InputFormat::Nifti | InputFormat::Dicom | InputFormat::Bids
    );
    match (&input.root, needs_root) {
        (None, true) => out.add(
            "input",
            format!(
                "missing field \"root\", required for format {:?}",
                format_name(format)
            ),
        ),
        (Some(_), false) => out.add(
            "input.root",
            match format {
                InputFormat::Dicomweb => "not used with format \"dicomweb\", whose series come from input.dicomweb.url",
                _ => "not used with format \"phantom\", which generates its subjects into the run folder",
            },
        ),
        _ => {}
    }
    if input.subject_glob.trim().is_empty() {
        out.add(
            "input.subject_glob",
            "empty glob, expected a pattern such as \"sub-*\"",
        );
    }
    let dicom = matches!(format, InputFormat::Dicom | InputFormat::Dicomweb);
    if !dicom && input.subjects != crate::spec::SubjectGrouping::Folder {
        out.add(
            "input.subjects",
            "only used with formats \"dicom\" and \"dicomweb\"; other inputs have one folder per subject",
        );
    }
    if format == InputFormat::Dicomweb && input.subjects == crate::spec::SubjectGrouping::Folder {
        out.add(
            "input.subjects",
            "format \"dicomweb\" groups its series into subjects by header: expected \"patient\" or \"study\"",
        );
    }
    if !dicom && format != InputFormat::Bids && input.prefer != crate::spec::Prefer::Error {
        out.add(
            "input.prefer",
            "only used with formats \"dicom\", \"dicomweb\" and \"bids\"",
        );
    }
    match (&input.dicomweb, format == InputFormat::Dicomweb) {
        (None, true) => out.add(
            "input",
            "missing field \"dicomweb\", required for format \"dicomweb\" (e.g. dicomweb = { url = \"http://127.0.0.1:8042/dicom-web\" })",
        ),
        (Some(_), false) => out.add("input.dicomweb", "only used with format \"dicomweb\""),
        (Some(server), true) => super::dicomweb::check("input.dicomweb", server, true, out),
        (None, false) => {}
    }
    if input.subjects == crate::spec::SubjectGrouping::Folder {
        for (key, set) in [
            (
                "input.pseudonym_key_file",
                input.pseudonym_key_file.is_some(),
            ),
            ("input.pseudonym_map", input.pseudonym_map.is_some()),
        ] {
            if set {
                out.add(key, "only used when input.subjects is \"patient\" or \"study\" (subjects named by pseudonym)");
            }
        }
    }
    if let Some(map) = &input.pseudonym_map
        && std::path::Path::new(map).starts_with(file.output_dir())
    {
        out.add("input.pseudonym_map", format!("{map:?} lies inside the run folder {:?}; the map links pseudonyms to real identities, so it must be kept elsewhere", file.output_dir()));
    }
    if input.assume_geometry && !dicom {
        out.add(
            "input.assume_geometry",
            "only used with formats \"dicom\" and \"dicomweb\"; NIfTI files and phantoms always carry geometry",
        );
    }
    match format {
        InputFormat::Nifti => {
            if input.modalities.is_empty() {
                out.add("input", "missing field \"modalities\", expected a table of modality = \"path template\" for format \"nifti\"");
            }
            if !input.series.is_empty() {
                out.add(
                    "input.series",
                    "only used with format \"dicom\"; NIfTI modalities go in input.modalities",
                );
            }
            for (name, template) in &input.modalities {
                check_template(&format!("input.modalities.{name}"), template, out);
            }
        }
        InputFormat::Bids => {
            if input.modalities.is_empty() {
                out.add("input", "missing field \"modalities\", expected a table of modality = \"entities_suffix\" (e.g. t1 = \"T1w\", t1ce = \"ce-gd_T1w\") for format \"bids\"");
            }
            if !input.series.is_empty() {
                out.add(
                    "input.series",
                    "only used with formats \"dicom\" and \"dicomweb\"; BIDS modalities go in input.modalities",
                );
            }
            for (name, pattern) in &input.modalities {
                if let Err(e) = crate::names::bids::Pattern::parse(pattern) {
                    out.add(&format!("input.modalities.{name}"), e);
                }
            }
        }
        InputFormat::Dicom | InputFormat::Dicomweb => {
            if input.series.is_empty() {
                out.add("input", format!("missing field \"series\", expected a table of modality = {{ modality, description }} for format {:?}", format_name(format)));
            }
            if !input.modalities.is_empty() {
                out.add(
                    "input.modalities",
                    "only used with formats \"nifti\" and \"bids\"; DICOM series are matched by input.series",
                );
            }
            for (name, m) in &input.series {
                if m.modality.is_none() && m.description.is_none() {
                    out.add(
                        &format!("input.series.{name}"),
                        "matches every series, expected \"modality\" and/or \"description\"",
                    );
                }
            }
        }
        InputFormat::Phantom => {
            if !input.modalities.is_empty() || !input.series.is_empty() || input.label.is_some() {
                let key = if !input.modalities.is_empty() {
                    "input.modalities"
                } else if !input.series.is_empty() {
                    "input.series"
                } else {
                    "input.label"
                };
                out.add(key, "not used with format \"phantom\", which provides t1, t1ce, t2, flair and a BraTS label");
            }
            if let Some(ph) = &input.phantom {
                out.at_least_one("input.phantom.subjects", ph.subjects);
                for (i, &n) in ph.shape.iter().enumerate() {
                    if !(16..=1024).contains(&n) {
                        out.add_at(
                            KeyPath::parse("input.phantom.shape").index(i),
                            format!("{n} voxels is out of range, expected 16 to 1024"),
                        );
                    }
                }
                match ph.spacing_mm {
                    Spacing::Isotropic(s) => out.positive("input.phantom.spacing_mm", s),
                    Spacing::PerAxis(s) => {
                        for (i, v) in s.into_iter().enumerate() {
                            if !(v.is_finite() && v > 0.0) {
                                out.add_at(
                                    KeyPath::parse("input.phantom.spacing_mm").index(i),
                                    format!("{v} mm, expected a positive size"),
                                );
                            }
                        }
                    }
                }
                if !is_orientation(&ph.orientation) {
                    out.add(
                        "input.phantom.orientation",
                        format!("{:?} is not an orientation code, expected three letters with one of R/L, one of A/P and one of S/I, such as \"LAS\" or \"LPS\"", ph.orientation),
                    );
                }
                for (i, &t) in ph.tilt_deg.iter().enumerate() {
                    if !(t.is_finite() && t.abs() <= 40.0) {
                        out.add_at(
                            KeyPath::parse("input.phantom.tilt_deg").index(i),
                            format!("{t} degrees, expected -40 to 40 (past 45 an axis changes its orientation letter)"),
                        );
                    }
                }
                out.range(
                    "input.phantom.tumour_fraction",
                    ph.tumour_fraction,
                    0.0,
                    1.0,
                    false,
                );
            }
        }
    }
    if format != InputFormat::Phantom && input.phantom.is_some() {
        out.add("input.phantom", "only used with format \"phantom\"");
    }
    match (&input.label, format) {
        (Some(label), InputFormat::Bids) => {
            if let Err(e) = crate::names::bids::Pattern::parse(label) {
                out.add("input.label", e);
            }
        }
        (Some(_), InputFormat::Dicom | InputFormat::Dicomweb) => out.add(
            "input.label",
            "not used with DICOM input; labels are read from NIfTI (format \"nifti\" or \"bids\")",
        ),
        (Some(label), _) => check_template("input.label", label, out),
        (None, _) => {}
    }
    let declared = file.declared_modalities();
    let table = match format {
        InputFormat::Dicom | InputFormat::Dicomweb => "input.series",
        _ => "input.modalities",
    };
    for name in &declared {
        if !is_modality_name(name) {
            out.add(&format!("{table}.{name}"), format!("{name:?} is not a valid modality name, expected lower-case letters, digits and '_'"));
        }
    }
    if let Some(required) = &input.required {
        for (i, name) in required.iter().enumerate() {
            if !declared.contains(name) {
                out.add_at(
                    KeyPath::parse("input.required").index(i),
                    unknown_modality(name, &declared),
                );
            }
        }
    }
    declared
}

fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Nifti => "nifti",
        InputFormat::Dicom => "dicom",
        InputFormat::Phantom => "phantom",
        InputFormat::Dicomweb => "dicomweb",
        InputFormat::Bids => "bids",
    }
}
