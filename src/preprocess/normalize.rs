//! Intensity normalization: percentile window and linear map, z-score, min-max. Every map
//! inverts exactly (to float rounding).
//!
//! The percentile method maps the foreground's `low`..`high` percentiles to the middle of the
//! output range and keeps `tails` of the range at each end for what lies beyond: the volume's
//! minimum up to `low` (the background, which lies below the foreground's percentiles) and
//! `high` up to the maximum, each linearly. Clipping them instead, as `tails = 0` does, loses
//! them: a synthesized background put back on the grid would come back as the `low`
//! percentile, a grey box around the head.

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
        let (mut below, mut above) = (None, None);
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
                if c.method == NormalizeMethod::Percentile {
                    // The window goes to the middle of the range, the tails to its ends.
                    let tail = c.tails.clamp(0.0, 0.49) * (out_hi - out_lo);
                    let (mid_lo, mid_hi) = (out_lo + tail, out_hi - tail);
                    let scale = (mid_hi - mid_lo) / (hi - lo);
                    if tail > 0.0 {
                        let (min, max) = finite_range(v);
                        below = (min < lo).then_some([min, out_lo]);
                        above = (max > hi).then_some([max, out_hi]);
                    }
                    (scale, mid_lo - lo * scale, lo, hi)
                } else {
                    let scale = (out_hi - out_lo) / (hi - lo);
                    (scale, out_lo - lo * scale, f64::NEG_INFINITY, f64::INFINITY)
                }
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
        let bound = |b: f64| b.is_finite().then_some(b);
        let applied = Applied::Normalize {
            scale,
            offset,
            low: bound(low),
            high: bound(high),
            below,
            above,
        };
        let mut out = v.clone();
        out.data
            .mapv_inplace(|x| forward(&applied, x as f64) as f32);
        Ok((out, applied))
    }
}

/// The smallest and largest finite values of `v`.
fn finite_range(v: &Volume) -> (f64, f64) {
    v.data
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x as f64), b.max(x as f64))
        })
}

/// A normalization record's fields.
struct Window {
    scale: f64,
    offset: f64,
    low: Option<f64>,
    high: Option<f64>,
    below: Option<[f64; 2]>,
    above: Option<[f64; 2]>,
}

impl Window {
    /// The fields of `applied`, when it is a normalization record.
    fn of(applied: &Applied) -> Option<Window> {
        match *applied {
            Applied::Normalize {
                scale,
                offset,
                low,
                high,
                below,
                above,
            } => Some(Window {
                scale,
                offset,
                low,
                high,
                below,
                above,
            }),
            _ => None,
        }
    }

    /// The window's line: y = x · scale + offset.
    fn line(&self, x: f64) -> f64 {
        x * self.scale + self.offset
    }
}

/// The normalized value of the intensity `x` under a normalization record (`x` itself for any
/// other record).
pub fn forward(applied: &Applied, x: f64) -> f64 {
    let Some(w) = Window::of(applied) else {
        return x;
    };
    // From the tail's end point [x0, y0] to the window's bound: clipped beyond x0.
    let tail = |bound: f64, [x0, y0]: [f64; 2]| {
        let t = ((x - x0) / (bound - x0)).clamp(0.0, 1.0);
        y0 + t * (w.line(bound) - y0)
    };
    match (w.low, w.high) {
        (Some(lo), _) if x < lo => w.below.map_or(w.line(lo), |b| tail(lo, b)),
        (_, Some(hi)) if x > hi => w.above.map_or(w.line(hi), |a| tail(hi, a)),
        _ => w.line(x),
    }
}

/// The intensity of the normalized value `y`: the inverse of [`forward`] wherever it is one
/// to one (values beyond a tail's end come back as its end; records without tails invert
/// their window's line everywhere, as they always have).
pub fn inverse(applied: &Applied, y: f64) -> f64 {
    let Some(w) = Window::of(applied) else {
        return y;
    };
    let x = (y - w.offset) / w.scale;
    // From the window's bound back to the tail's end point [x0, y0].
    let tail = |bound: f64, [x0, y0]: [f64; 2]| {
        let span = w.line(bound) - y0;
        let t = if span == 0.0 {
            0.0
        } else {
            ((y - y0) / span).clamp(0.0, 1.0)
        };
        x0 + t * (bound - x0)
    };
    match (w.low, w.high, w.below, w.above) {
        (Some(lo), _, Some(b), _) if x < lo => tail(lo, b),
        (_, Some(hi), _, Some(a)) if x > hi => tail(hi, a),
        _ => x,
    }
}

/// Undoes a normalization ([`inverse`] of every voxel).
pub(super) fn invert(applied: &Applied, mut v: Volume) -> Result<Volume, PreprocessError> {
    if !matches!(applied, Applied::Normalize { .. }) {
        return Err(PreprocessError::RecordMismatch {
            step: "normalize",
            what: format!("the record is for {}", applied.name()),
        });
    }
    v.data.mapv_inplace(|y| inverse(applied, y as f64) as f32);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(below: Option<[f64; 2]>, above: Option<[f64; 2]>) -> Applied {
        // The window 100..500 onto -0.9..0.9.
        let scale = 1.8 / 400.0;
        Applied::Normalize {
            scale,
            offset: -0.9 - 100.0 * scale,
            low: Some(100.0),
            high: Some(500.0),
            below,
            above,
        }
    }

    #[test]
    fn the_tails_map_the_volume_range_and_invert_exactly() {
        let r = record(Some([0.0, -1.0]), Some([900.0, 1.0]));
        for (x, y) in [
            (0.0, -1.0),
            (50.0, -0.95),
            (100.0, -0.9),
            (300.0, 0.0),
            (500.0, 0.9),
            (700.0, 0.95),
            (900.0, 1.0),
        ] {
            assert!(
                (forward(&r, x) - y).abs() < 1e-12,
                "{x} -> {}",
                forward(&r, x)
            );
            assert!(
                (inverse(&r, y) - x).abs() < 1e-9,
                "{y} -> {}",
                inverse(&r, y)
            );
        }
        // Beyond the volume's range: its ends.
        assert_eq!(forward(&r, -10.0), -1.0);
        assert_eq!(inverse(&r, -1.2), 0.0);
        assert_eq!(inverse(&r, 1.3), 900.0);
    }

    #[test]
    fn records_without_tails_clip_and_invert_their_line() {
        let r = record(None, None);
        assert!((forward(&r, 0.0) + 0.9).abs() < 1e-12);
        assert!((inverse(&r, -1.0) - 100.0 + 0.1 / (1.8 / 400.0)).abs() < 1e-9);
        let old: Applied = serde_json::from_str(
            r#"{"step":"normalize","scale":0.5,"offset":1.0,"low":2.0,"high":null}"#,
        )
        .unwrap();
        assert_eq!(inverse(&old, 0.0), -2.0);
    }
}
