//! Scoring a synthetic volume against the real one under a protocol, into rows of
//! (metric, region, value).
//!
//! - `volume`: intensities as written; the data range is `data_range` or the real volume's
//!   max - min.
//! - `brasyn` (the BraTS 2023 synthesis challenge): each volume is clipped to its own 0.5 and
//!   99.5 percentiles (numpy's linear interpolation over every voxel, the lower bound raised
//!   to 0 when negative) and scaled to [0, 1]; data range 1. Regions: `whole` (SSIM over the
//!   valid region, errors over every voxel), `tumour` (label > 0) and `healthy` (voxels where
//!   the clipped real image is above 0 and the label is 0); masked SSIM is the full map's mean under
//!   the mask.
//!
//! Any protocol can add `foreground` (the subject's head, as preprocessing finds it): SSIM is
//! the map's mean under the mask, errors are over its voxels.
//!
//! A region a subject does not have (no tumour voxel) gives no row rather than a made-up one.

use ndarray::{ArrayD, ArrayViewD, Zip};

use super::{MetricError, check_range, errors, masked_mean, ms_ssim, psnr, ssim_map, valid_mean};
use crate::spec::{Metric, Protocol};

/// One score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub metric: Metric,
    /// `whole`, `tumour` or `healthy`.
    pub region: &'static str,
    pub value: f64,
}

/// numpy's `percentile(values, p)` (linear interpolation) of unsorted values.
pub fn percentile(values: &[f32], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let at = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// BraSyn's per-volume normalization: clip to the 0.5 / 99.5 percentiles (lower bound at
/// least 0) and scale to [0, 1].
pub fn brasyn_clip(v: ArrayViewD<f32>) -> ArrayD<f32> {
    let flat: Vec<f32> = v.iter().copied().collect();
    let lo = percentile(&flat, 0.5).max(0.0);
    let hi = percentile(&flat, 99.5);
    let span = hi - lo;
    v.mapv(|x| {
        if span > 0.0 {
            ((f64::from(x).clamp(lo, hi) - lo) / span) as f32
        } else {
            0.0
        }
    })
}

/// Scores `fake` against `real` (same shape, 2-D or 3-D) for `metrics` under `protocol`;
/// `label` (same shape) gives the tumour regions for `brasyn`. FID and KID are computed over
/// sets of images elsewhere and are skipped here.
pub fn score(
    real: ArrayViewD<f32>,
    fake: ArrayViewD<f32>,
    label: Option<ArrayViewD<f32>>,
    metrics: &[Metric],
    protocol: Protocol,
    data_range: Option<f64>,
) -> Result<Vec<Score>, MetricError> {
    score_regions(real, fake, label, None, metrics, protocol, data_range)
}

/// [`score`], plus the region `foreground` under `foreground` (same shape; e.g. the head
/// mask) in any protocol. The other regions' scores are exactly [`score`]'s.
pub fn score_regions(
    real: ArrayViewD<f32>,
    fake: ArrayViewD<f32>,
    label: Option<ArrayViewD<f32>>,
    foreground: Option<ArrayViewD<bool>>,
    metrics: &[Metric],
    protocol: Protocol,
    data_range: Option<f64>,
) -> Result<Vec<Score>, MetricError> {
    if real.iter().chain(fake.iter()).any(|v| !v.is_finite()) {
        return Err(MetricError::Other(
            "the images hold NaN or infinite values".into(),
        ));
    }
    let (real, fake, range) = match protocol {
        Protocol::Brasyn => (brasyn_clip(real), brasyn_clip(fake), 1.0),
        Protocol::Volume | Protocol::Slice => {
            let (lo, hi) = real
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let range = data_range.unwrap_or((hi - lo) as f64);
            (real.to_owned(), fake.to_owned(), range)
        }
    };
    check_range(range)?;
    let mut regions: Vec<(&'static str, Option<ArrayD<bool>>)> = vec![("whole", None)];
    if protocol == Protocol::Brasyn
        && let Some(label) = &label
    {
        if label.shape() != real.shape() {
            return Err(MetricError::Mask(
                label.shape().to_vec(),
                real.shape().to_vec(),
            ));
        }
        let tumour = label.mapv(|l| l > 0.0);
        let mut healthy = ArrayD::from_elem(real.raw_dim(), false);
        Zip::from(&mut healthy)
            .and(&real)
            .and(&tumour)
            .for_each(|h, &r, &t| *h = r > 0.0 && !t);
        regions.push(("tumour", Some(tumour)));
        regions.push(("healthy", Some(healthy)));
    }
    if let Some(mask) = foreground {
        if mask.shape() != real.shape() {
            return Err(MetricError::Mask(
                mask.shape().to_vec(),
                real.shape().to_vec(),
            ));
        }
        regions.push(("foreground", Some(mask.to_owned())));
    }
    let needs_map = metrics.contains(&Metric::Ssim);
    let map = if needs_map {
        Some(ssim_map(real.view(), fake.view(), range)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for (region, mask) in &regions {
        if mask.as_ref().is_some_and(|m| !m.iter().any(|&v| v)) {
            continue;
        }
        let errs = errors(real.view(), fake.view(), mask.as_ref().map(|m| m.view()))?;
        for &metric in metrics {
            let value = match metric {
                Metric::Ssim => {
                    let map = map.as_ref().expect("computed when SSIM is asked for");
                    match mask {
                        None => valid_mean(map),
                        Some(m) => masked_mean(map, m.view())?,
                    }
                }
                Metric::MsSsim if mask.is_none() => ms_ssim(real.view(), fake.view(), range)?,
                Metric::Psnr => psnr(errs.1, range)?,
                Metric::Mae => errs.0,
                Metric::Mse => errs.1,
                Metric::MsSsim | Metric::Fid | Metric::Kid => continue,
            };
            out.push(Score {
                metric,
                region,
                value,
            });
        }
    }
    Ok(out)
}
