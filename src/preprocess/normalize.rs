//! Intensity normalization: percentile clip and linear map, z-score, min-max. Linear maps
//! invert exactly (to float rounding); values clipped by the percentile method come back as
//! the clip bounds.

use super::{Applied, PreprocessError};
use crate::spec::{NormalizeConfig, NormalizeMethod};
use crate::volume::Volume;

/// Normalizes intensities as a `NormalizeConfig` says, using the voxels of `mask` (or every
/// voxel) for the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    config: NormalizeConfig,
}

/// The q-th percentile (0-100) of `values` with linear interpolation (numpy's default),
/// found by selection rather than a full sort (reorders `values`).
fn percentile(values: &mut [f32], q: f64) -> f64 {
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    let (_, a, above) = values.select_nth_unstable_by(i, f32::total_cmp);
    let a = *a as f64;
    let b = above
        .iter()
        .copied()
        .min_by(f32::total_cmp)
        .map_or(a, |b| b as f64);
    a + (b - a) * frac
}

impl Normalize {
    pub fn new(config: NormalizeConfig) -> Self {
        Self { config }
    }

    /// Normalizes `v`; `mask` (same voxel count) selects the voxels statistics come from.
    pub fn apply(
        &self,
        v: &Volume,
        mask: Option<&[bool]>,
    ) -> Result<(Volume, Applied), PreprocessError> {
        let c = &self.config;
        let mut values: Vec<f32> = match mask {
            Some(m) => v
                .data
                .iter()
                .zip(m)
                .filter(|(x, keep)| **keep && x.is_finite())
                .map(|(x, _)| *x)
                .collect(),
            None => v.data.iter().filter(|x| x.is_finite()).copied().collect(),
        };
        if values.is_empty() {
            return Err(PreprocessError::Apply {
                step: "normalize",
                what: "no finite voxel in the foreground to take statistics from".to_owned(),
            });
        }
        let [out_lo, out_hi] = c.range;
        let (scale, offset, low, high) = match c.method {
            NormalizeMethod::None => (1.0, 0.0, f64::NEG_INFINITY, f64::INFINITY),
            NormalizeMethod::Percentile | NormalizeMethod::Minmax => {
                let (lo, hi) = if c.method == NormalizeMethod::Percentile {
                    (
                        percentile(&mut values, c.low),
                        percentile(&mut values, c.high),
                    )
                } else {
                    values
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                            (a.min(x as f64), b.max(x as f64))
                        })
                };
                if hi <= lo {
                    return Err(PreprocessError::Apply {
                        step: "normalize",
                        what: format!("the intensity range is empty ({lo} to {hi})"),
                    });
                }
                let scale = (out_hi - out_lo) / (hi - lo);
                let (low, high) = if c.method == NormalizeMethod::Percentile {
                    (lo, hi)
                } else {
                    (f64::NEG_INFINITY, f64::INFINITY)
                };
                (scale, out_lo - lo * scale, low, high)
            }
            NormalizeMethod::Zscore => {
                let n = values.len() as f64;
                let mean = values.iter().map(|&x| x as f64).sum::<f64>() / n;
                let var = values
                    .iter()
                    .map(|&x| (x as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
                if var <= 0.0 {
                    return Err(PreprocessError::Apply {
                        step: "normalize",
                        what: "the foreground is constant, z-score is undefined".to_owned(),
                    });
                }
                let sd = var.sqrt();
                (1.0 / sd, -mean / sd, f64::NEG_INFINITY, f64::INFINITY)
            }
        };
        let mut out = v.clone();
        out.data
            .mapv_inplace(|x| ((x as f64).clamp(low, high) * scale + offset) as f32);
        let bound = |b: f64| b.is_finite().then_some(b);
        Ok((
            out,
            Applied::Normalize {
                scale,
                offset,
                low: bound(low),
                high: bound(high),
            },
        ))
    }
}

/// Undoes a normalization: x = (y - offset) / scale.
pub(super) fn invert(applied: &Applied, mut v: Volume) -> Result<Volume, PreprocessError> {
    let Applied::Normalize { scale, offset, .. } = applied else {
        return Err(PreprocessError::RecordMismatch {
            step: "normalize",
            what: format!("the record is for {}", applied.name()),
        });
    };
    v.data
        .mapv_inplace(|y| ((y as f64 - offset) / scale) as f32);
    Ok(v)
}
