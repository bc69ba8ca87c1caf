//! Resampling onto another grid through world coordinates: trilinear for images, nearest
//! neighbour for labels. The inverse resamples back onto the recorded grid, so it is exact
//! only where the data is linear; elsewhere it smooths by at most one voxel of the coarser
//! grid (tests state the tolerance).

use ndarray::{Array4, Axis, ShapeBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Applied, PreprocessError};
use crate::volume::{Affine, Geometry, Volume};

/// How values between voxel centres are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    /// Trilinear, for images.
    Linear,
    /// Nearest neighbour, for labels.
    Nearest,
}

/// Resamples to a target voxel size, keeping the axes' directions and the field of view
/// (the outer corner of the first voxel stays where it was).
#[derive(Debug, Clone, PartialEq)]
pub struct Resample {
    pub spacing_mm: [f64; 3],
    pub interpolation: Interpolation,
}

impl Resample {
    /// The grid `v` would be resampled onto.
    pub fn target_grid(&self, g: &Geometry) -> Result<Geometry, PreprocessError> {
        if self.spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(PreprocessError::Config {
                step: "resample",
                what: format!("spacing {:?} mm must be positive", self.spacing_mm),
            });
        }
        let old = g.spacing();
        let m = g.affine.0;
        let shape: [usize; 3] = std::array::from_fn(|a| {
            ((g.shape[a] as f64 * old[a] / self.spacing_mm[a]).round() as usize).max(1)
        });
        let corner = g.affine.apply([-0.5, -0.5, -0.5]);
        let mut out = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                out[r][c] = m[r][c] / old[c] * self.spacing_mm[c];
            }
            out[r][3] = corner[r] + (0..3).map(|c| out[r][c] * 0.5).sum::<f64>();
        }
        out[3][3] = 1.0;
        Ok(Geometry {
            shape,
            affine: Affine(out),
        })
    }

    /// Resamples `v`.
    pub fn apply(&self, v: &Volume) -> Result<(Volume, Applied), PreprocessError> {
        let target = self.target_grid(&v.geometry)?;
        let applied = Applied::Resample {
            from: v.geometry,
            interpolation: self.interpolation,
        };
        Ok((resample_onto(v, &target, self.interpolation)?, applied))
    }
}

/// Resamples `v` onto `target` through world coordinates; voxels outside `v` become 0.
///
/// # Shapes
/// `v.data` `[i, j, k, frames]` -> `[target.shape, frames]`.
pub fn resample_onto(
    v: &Volume,
    target: &Geometry,
    interpolation: Interpolation,
) -> Result<Volume, PreprocessError> {
    let to_source = v
        .geometry
        .affine
        .inverse()
        .ok_or_else(|| PreprocessError::Apply {
            step: "resample",
            what: "the source affine is singular".to_owned(),
        })?;
    // target index -> source index.
    let map = to_source.then(&target.affine).0;
    let n = v.geometry.shape;
    let frames = v.frames();
    let [tx, ty, tz] = target.shape;
    let mut out = Array4::<f32>::zeros((tx, ty, tz, frames).f());
    let src = &v.data;
    out.axis_iter_mut(Axis(2))
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut plane)| {
            for j in 0..ty {
                for i in 0..tx {
                    let p: [f64; 3] = std::array::from_fn(|r| {
                        map[r][0] * i as f64
                            + map[r][1] * j as f64
                            + map[r][2] * k as f64
                            + map[r][3]
                    });
                    for f in 0..frames {
                        plane[[i, j, f]] = match interpolation {
                            Interpolation::Nearest => {
                                let q: [f64; 3] = p.map(f64::round);
                                if (0..3).all(|a| q[a] >= 0.0 && q[a] <= (n[a] - 1) as f64) {
                                    src[[q[0] as usize, q[1] as usize, q[2] as usize, f]]
                                } else {
                                    0.0
                                }
                            }
                            Interpolation::Linear => trilinear(src, n, p, f),
                        };
                    }
                }
            }
        });
    Ok(Volume {
        data: out,
        geometry: *target,
        source: v.source.clone(),
        meta: v.meta.clone(),
    })
}

/// Trilinear value at fractional index `p`; 0 outside the grid (edges clamp within half a voxel).
fn trilinear(src: &Array4<f32>, n: [usize; 3], p: [f64; 3], f: usize) -> f32 {
    let mut base = [0usize; 3];
    let mut frac = [0f64; 3];
    for a in 0..3 {
        let max = (n[a] - 1) as f64;
        if p[a] < -0.5 || p[a] > max + 0.5 {
            return 0.0;
        }
        let x = p[a].clamp(0.0, max);
        let b = (x.floor() as usize).min(n[a].saturating_sub(2));
        base[a] = b;
        frac[a] = if n[a] > 1 { x - b as f64 } else { 0.0 };
    }
    let mut acc = 0.0;
    for dz in 0..2 {
        for dy in 0..2 {
            for dx in 0..2 {
                let w = (if dx == 1 { frac[0] } else { 1.0 - frac[0] })
                    * (if dy == 1 { frac[1] } else { 1.0 - frac[1] })
                    * (if dz == 1 { frac[2] } else { 1.0 - frac[2] });
                if w == 0.0 {
                    continue;
                }
                let idx = [
                    (base[0] + dx).min(n[0] - 1),
                    (base[1] + dy).min(n[1] - 1),
                    (base[2] + dz).min(n[2] - 1),
                ];
                acc += w * src[[idx[0], idx[1], idx[2], f]] as f64;
            }
        }
    }
    acc as f32
}

/// Undoes a resampling: back onto the recorded grid with the same interpolation.
pub(super) fn invert(applied: &Applied, v: Volume) -> Result<Volume, PreprocessError> {
    let Applied::Resample {
        from,
        interpolation,
    } = applied
    else {
        return Err(PreprocessError::RecordMismatch {
            step: "resample",
            what: format!("the record is for {}", applied.name()),
        });
    };
    resample_onto(&v, from, *interpolation)
}
