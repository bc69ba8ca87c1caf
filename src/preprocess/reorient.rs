//! Reorienting a volume to an orientation code (`RAS`, `LPS`, ...) by permuting and flipping
//! voxel axes: no interpolation, exactly invertible. The world positions of voxels do not
//! change; only their order and the affine do.

use ndarray::{Array4, Axis};

use super::{Applied, PreprocessError};
use crate::volume::{
    Affine, Geometry, Volume, orientation_axis, orientation_code, parse_orientation,
};

/// Reorients to a target orientation code.
#[derive(Debug, Clone, PartialEq)]
pub struct Reorient {
    target: [char; 3],
}

impl Reorient {
    /// `code`: three letters, one each of R/L, A/P, S/I.
    pub fn new(code: &str) -> Result<Self, PreprocessError> {
        parse_orientation(code).ok_or_else(|| PreprocessError::Config {
            step: "reorient",
            what: format!("{code:?} is not an orientation code, expected e.g. \"RAS\" or \"LPS\""),
        })?;
        let chars: Vec<char> = code.chars().collect();
        let target: [char; 3] = [chars[0], chars[1], chars[2]];
        Ok(Self { target })
    }

    /// Reorients `v`.
    pub fn apply(&self, v: &Volume) -> Result<(Volume, Applied), PreprocessError> {
        let current: Vec<char> = orientation_code(&v.geometry.affine).chars().collect();
        let mut perm = [0usize; 3];
        let mut flip = [false; 3];
        for (t, &want) in self.target.iter().enumerate() {
            let (world, positive) = orientation_axis(want).expect("checked in new");
            let source = current
                .iter()
                .position(|&c| orientation_axis(c).map(|(w, _)| w) == Some(world))
                .ok_or_else(|| PreprocessError::Apply {
                    step: "reorient",
                    what: format!(
                        "the affine has no axis along {want} (orientation {})",
                        current.iter().collect::<String>()
                    ),
                })?;
            perm[t] = source;
            flip[t] = orientation_axis(current[source]).map(|(_, p)| p) != Some(positive);
        }
        let applied = Applied::Reorient { perm, flip };
        Ok((permute_flip(v, perm, flip), applied))
    }
}

/// Output axis t is input axis `perm[t]`, reversed where `flip[t]`; the affine follows.
fn permute_flip(v: &Volume, perm: [usize; 3], flip: [bool; 3]) -> Volume {
    let mut view = v.data.view().permuted_axes([perm[0], perm[1], perm[2], 3]);
    let old = &v.geometry.affine.0;
    let shape: [usize; 3] = std::array::from_fn(|t| v.geometry.shape[perm[t]]);
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        for t in 0..3 {
            m[r][t] = old[r][perm[t]];
        }
        m[r][3] = old[r][3];
    }
    m[3][3] = 1.0;
    for t in 0..3 {
        if flip[t] {
            view.invert_axis(Axis(t));
            for row in m.iter_mut().take(3) {
                row[3] += row[t] * (shape[t] as f64 - 1.0);
                row[t] = -row[t];
            }
        }
    }
    let data: Array4<f32> = view.to_owned();
    Volume {
        data,
        geometry: Geometry {
            shape,
            affine: Affine(m),
        },
        source: v.source.clone(),
        meta: v.meta.clone(),
    }
}

/// Undoes a reorientation: flip back, then apply the inverse permutation.
pub(super) fn invert(applied: &Applied, v: Volume) -> Result<Volume, PreprocessError> {
    let Applied::Reorient { perm, flip } = applied else {
        return Err(PreprocessError::RecordMismatch {
            step: "reorient",
            what: format!("the record is for {}", applied.name()),
        });
    };
    let unflipped = permute_flip(&v, [0, 1, 2], *flip);
    let mut inverse = [0usize; 3];
    for (t, &s) in perm.iter().enumerate() {
        inverse[s] = t;
    }
    Ok(permute_flip(&unflipped, inverse, [false; 3]))
}
