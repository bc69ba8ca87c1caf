//! Reorienting a volume to an orientation code (`RAS`, `LPS`, ...) by permuting and flipping
//! voxel axes: no interpolation, exactly invertible. The world positions of voxels do not
//! change; only their order and the affine do.

use super::{Applied, PreprocessError};
use crate::volume::{AxisOrder, Volume, parse_orientation};

/// Reorients to a target orientation code.
#[derive(Debug, Clone, PartialEq)]
pub struct Reorient {
    target: String,
}

impl Reorient {
    /// `code`: three letters, one each of R/L, A/P, S/I.
    pub fn new(code: &str) -> Result<Self, PreprocessError> {
        parse_orientation(code).ok_or_else(|| PreprocessError::Config {
            step: "reorient",
            what: format!("{code:?} is not an orientation code, expected e.g. \"RAS\" or \"LPS\""),
        })?;
        Ok(Self {
            target: code.to_owned(),
        })
    }

    /// Reorients `v`.
    pub fn apply(&self, v: &Volume) -> Result<(Volume, Applied), PreprocessError> {
        let order = AxisOrder::towards(&v.geometry.affine, &self.target).map_err(|what| {
            PreprocessError::Apply {
                step: "reorient",
                what,
            }
        })?;
        let applied = Applied::Reorient {
            perm: order.perm,
            flip: order.flip,
        };
        Ok((order.volume(v), applied))
    }
}

/// Undoes a reorientation.
pub(super) fn invert(applied: &Applied, v: Volume) -> Result<Volume, PreprocessError> {
    let Applied::Reorient { perm, flip } = applied else {
        return Err(PreprocessError::RecordMismatch {
            step: "reorient",
            what: format!("the record is for {}", applied.name()),
        });
    };
    let order = AxisOrder {
        perm: *perm,
        flip: *flip,
    };
    if !order.is_permutation() {
        return Err(PreprocessError::RecordMismatch {
            step: "reorient",
            what: format!("the record's axes {perm:?} do not form a permutation"),
        });
    }
    Ok(order.inverse().volume(&v))
}
