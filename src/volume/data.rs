//! [`Volume`]: voxel data on a grid, with where it came from.

use std::path::PathBuf;

use ndarray::{Array4, ArrayView3, Axis};
use serde::{Deserialize, Serialize};

use super::Affine;

/// The grid a volume lies on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Voxels along i, j, k.
    pub shape: [usize; 3],
    /// Voxel-to-world affine, RAS+ millimetres.
    pub affine: Affine,
}

impl Geometry {
    /// Voxel sizes in mm along i, j, k.
    pub fn spacing(&self) -> [f64; 3] {
        self.affine.spacing()
    }

    /// Orientation code such as `RAS` or `LPI`.
    pub fn orientation(&self) -> String {
        super::orientation_code(&self.affine)
    }
}

/// Where a volume's voxels came from. Holds no patient data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file, or the series folder for DICOM.
    pub path: PathBuf,
    /// SHA-256 (hex) of the file; for a DICOM series, of the sorted per-file digests.
    pub sha256: String,
    /// DICOM SeriesInstanceUID, when the source is a DICOM series.
    pub series_uid: Option<String>,
}

/// Non-identifying acquisition metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The file format: `nifti1`, `nifti2` or `dicom`.
    pub format: String,
    /// Stored data type before scaling, e.g. `int16`.
    pub stored_type: String,
    /// DICOM Modality, e.g. `MR`.
    pub modality: Option<String>,
    /// DICOM SeriesDescription.
    pub series_description: Option<String>,
    /// Repetition time in ms.
    pub repetition_time_ms: Option<f64>,
    /// Echo time in ms.
    pub echo_time_ms: Option<f64>,
    /// Inversion time in ms.
    pub inversion_time_ms: Option<f64>,
    /// Flip angle in degrees.
    pub flip_angle_deg: Option<f64>,
    /// Main field strength in tesla.
    pub field_strength_t: Option<f64>,
    /// What the reader noticed and worked around (header repairs, disagreeing sform and
    /// qform), each also logged as a warning when read.
    pub notes: Vec<String>,
    /// Geometry the reader assumed because the files do not give it (no orientation,
    /// positions or pixel spacing): such a volume converts, but a pipeline refuses it unless
    /// `input.assume_geometry` is set, because resampling needs real geometry.
    #[serde(default)]
    pub assumed_geometry: Vec<String>,
    /// Colour: the fourth axis holds red, green and blue (0-255), not volumes.
    #[serde(default)]
    pub rgb: bool,
}

/// Voxel data indexed `[i, j, k, frame]` (a 3-D volume has one frame), values after the
/// file's scaling (NIfTI scl_slope/scl_inter, DICOM rescale), on `geometry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub data: Array4<f32>,
    pub geometry: Geometry,
    pub source: Source,
    pub meta: Metadata,
}

impl Volume {
    /// Number of frames (4th dimension); 1 for a 3-D volume.
    pub fn frames(&self) -> usize {
        self.data.len_of(Axis(3))
    }

    /// One frame as a 3-D view.
    pub fn frame(&self, t: usize) -> ArrayView3<'_, f32> {
        self.data.index_axis(Axis(3), t)
    }

    /// Smallest and largest finite value, if any.
    pub fn value_range(&self) -> Option<(f32, f32)> {
        let mut range: Option<(f32, f32)> = None;
        for &v in self.data.iter().filter(|v| v.is_finite()) {
            range = Some(match range {
                None => (v, v),
                Some((lo, hi)) => (lo.min(v), hi.max(v)),
            });
        }
        range
    }
}

/// Lower-case hexadecimal of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
