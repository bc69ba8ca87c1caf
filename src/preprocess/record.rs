//! The record of applied steps and their inversion.

use serde::{Deserialize, Serialize};

use crate::volume::Volume;

/// What a step did, with exactly the parameters its inverse needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Applied {
    /// Output axis t is input axis `perm[t]`, then reversed where `flip[t]`.
    Reorient { perm: [usize; 3], flip: [bool; 3] },
    /// Output voxel v is input voxel v + `start` (outside the input: `fill`); the input had
    /// `from_shape`.
    CropPad {
        start: [i64; 3],
        from_shape: [usize; 3],
        fill: f32,
    },
    /// Resampled from the grid `from` with `interpolation`.
    Resample {
        from: crate::volume::Geometry,
        interpolation: super::Interpolation,
    },
    /// y = x · scale + offset between `low` and `high` (unbounded where `None`). Below `low`,
    /// x runs linearly from `below = [x, y]` (the volume's minimum and where it maps) to
    /// `low`; above `high`, from `high` to `above`. Without `below`/`above` the values beyond
    /// a bound were clipped to it (records written before the tails existed).
    Normalize {
        scale: f64,
        offset: f64,
        low: Option<f64>,
        high: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<[f64; 2]>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<[f64; 2]>,
    },
}

impl Applied {
    /// The step's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Applied::Reorient { .. } => "reorient",
            Applied::CropPad { .. } => "crop-pad",
            Applied::Normalize { .. } => "normalize",
            Applied::Resample { .. } => "resample",
        }
    }

    /// Undoes this step.
    pub fn invert(&self, v: Volume) -> Result<Volume, PreprocessError> {
        match self {
            Applied::Reorient { .. } => super::reorient::invert(self, v),
            Applied::CropPad { .. } => super::crop::invert(self, v),
            Applied::Normalize { .. } => super::normalize::invert(self, v),
            Applied::Resample { .. } => super::resample::invert(self, v),
        }
    }
}

/// Why a step could not be applied or inverted.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("{step}: {what}")]
    Config { step: &'static str, what: String },
    #[error("{step}: {what}")]
    Apply { step: &'static str, what: String },
    #[error("cannot invert {step}: {what}")]
    RecordMismatch { step: &'static str, what: String },
}

/// The steps applied to a volume, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record(pub Vec<Applied>);

impl Record {
    /// Keeps a step's record and hands back its volume.
    pub fn push(&mut self, (v, applied): (Volume, Applied)) -> Volume {
        self.0.push(applied);
        v
    }

    /// Undoes every step, newest first.
    pub fn invert_all(&self, mut v: Volume) -> Result<Volume, PreprocessError> {
        for applied in self.0.iter().rev() {
            v = applied.invert(v)?;
        }
        Ok(v)
    }
}
