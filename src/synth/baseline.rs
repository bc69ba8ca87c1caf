//! Two trivial baselines a model must beat, fitted on the training slices and applied like a
//! model (they are [`Generator`]s), so they go through the same reassembly and scoring:
//!
//! - `baseline-histogram`: the first available input modality, its intensities mapped so its
//!   distribution over the training slices matches the target's (quantile mapping through
//!   1001 quantiles, linear in between; over at most 2^24 values, every k-th when a large
//!   store has more, so memory does not grow with the store);
//! - `baseline-regression`: a per-voxel linear regression from the inputs (with an intercept)
//!   to the target, least squares over every training pixel; a missing input is zero, as the
//!   model sees it.

use ndarray::{Array4, Axis};

use super::{Generator, SynthError};
use crate::dataset::{ManifestRow, SliceSet};

const QUANTILES: usize = 1001;

/// The most values quantiles are taken over: 64 MiB of f32. A larger training split is
/// sampled at a fixed stride (deterministic; the quantiles' error, about 1/4096 of the
/// range's rank, stays far below a 1001-quantile step).
const MAX_VALUES: usize = 1 << 24;

fn channel(set: &SliceSet, name: &str) -> Result<usize, SynthError> {
    set.channel(name).ok_or_else(|| {
        SynthError::Setup(format!(
            "the slice store has no channel {name:?}; it has {}",
            set.channels.join(", ")
        ))
    })
}

/// Whether `name` is real in a stored slice.
fn real(row: &ManifestRow, name: &str) -> bool {
    !row.channels_missing.split(',').any(|m| m == name)
}

/// Values of channel `c` over the slices where every one of `names` is real.
fn values(set: &SliceSet, c: usize, names: &[&str]) -> Result<Vec<f32>, SynthError> {
    let (_, _, h, w) = set.dim();
    let kept: Vec<usize> = (0..set.len())
        .filter(|&n| names.iter().all(|m| real(&set.rows[n], m)))
        .collect();
    let stride = (kept.len() * h * w).div_ceil(MAX_VALUES).max(1);
    let mut out = Vec::with_capacity((kept.len() * h * w).div_ceil(stride));
    let mut k = 0usize;
    for n in kept {
        for &v in set.plane(n, c)?.iter() {
            if k.is_multiple_of(stride) {
                out.push(v);
            }
            k += 1;
        }
    }
    Ok(out)
}

fn quantiles(mut v: Vec<f32>) -> Vec<f32> {
    v.sort_by(f32::total_cmp);
    (0..QUANTILES)
        .map(|q| v[(q * (v.len() - 1)) / (QUANTILES - 1)])
        .collect()
}

/// The input histogram-matched to the target.
#[derive(Debug, Clone)]
pub struct HistogramBaseline {
    pub target: String,
    /// Inputs in order of preference; the first real one is used.
    pub inputs: Vec<(String, usize, Vec<f32>)>,
    pub target_quantiles: Vec<f32>,
}

impl HistogramBaseline {
    /// Fits on the training slices.
    pub fn fit(train: &SliceSet, inputs: &[String], target: &str) -> Result<Self, SynthError> {
        let t = channel(train, target)?;
        let mut fitted = Vec::new();
        for m in inputs {
            let c = channel(train, m)?;
            let v = values(train, c, &[m, target])?;
            if !v.is_empty() {
                fitted.push((m.clone(), c, quantiles(v)));
            }
        }
        let tv = values(train, t, &[target])?;
        if fitted.is_empty() || tv.is_empty() {
            return Err(SynthError::Setup(format!(
                "no training slice has both an input and {target}"
            )));
        }
        Ok(HistogramBaseline {
            target: target.to_owned(),
            inputs: fitted,
            target_quantiles: quantiles(tv),
        })
    }

    fn map(from: &[f32], to: &[f32], x: f32) -> f32 {
        let i = from.partition_point(|&q| q < x);
        if i == 0 {
            return to[0];
        }
        if i >= from.len() {
            return to[to.len() - 1];
        }
        let (a, b) = (from[i - 1], from[i]);
        let f = if b > a { (x - a) / (b - a) } else { 0.0 };
        to[i - 1] + f * (to[i] - to[i - 1])
    }
}

impl Generator for HistogramBaseline {
    fn targets(&self) -> Vec<String> {
        vec![self.target.clone()]
    }

    fn generate(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        _seeds: &[u64],
    ) -> Result<Array4<f32>, SynthError> {
        let (b, _, h, w) = slices.dim();
        let mut out = Array4::zeros((b, 1, h, w));
        for (n, row) in rows.iter().enumerate() {
            let Some((_, c, q)) = self.inputs.iter().find(|(m, _, _)| real(row, m)) else {
                return Err(SynthError::Setup(format!(
                    "subject {}: no input modality to match",
                    row.subject
                )));
            };
            let src = slices.index_axis(Axis(0), n);
            let src = src.index_axis(Axis(0), *c);
            let mut dst = out.index_axis_mut(Axis(0), n);
            let mut dst = dst.index_axis_mut(Axis(0), 0);
            ndarray::Zip::from(&mut dst)
                .and(&src)
                .for_each(|d, &x| *d = Self::map(q, &self.target_quantiles, x));
        }
        Ok(out)
    }

    fn sampler(&self) -> String {
        "baseline-histogram".into()
    }

    fn guidance(&self) -> String {
        String::new()
    }
}

/// A per-voxel linear regression from the inputs to the target.
#[derive(Debug, Clone)]
pub struct RegressionBaseline {
    pub target: String,
    pub inputs: Vec<(String, usize)>,
    /// One weight per input, then the intercept.
    pub weights: Vec<f64>,
}

/// Solves the small symmetric system `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (r, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

impl RegressionBaseline {
    /// Least squares over every pixel of the training slices that have the target (missing
    /// inputs are zero there, as in the stored slices).
    pub fn fit(train: &SliceSet, inputs: &[String], target: &str) -> Result<Self, SynthError> {
        let t = channel(train, target)?;
        let chans: Vec<(String, usize)> = inputs
            .iter()
            .map(|m| Ok((m.clone(), channel(train, m)?)))
            .collect::<Result<_, SynthError>>()?;
        let k = chans.len() + 1;
        let mut ata = vec![vec![0.0; k]; k];
        let mut atb = vec![0.0; k];
        let mut x = vec![0.0; k];
        for (n, row) in train.rows.iter().enumerate() {
            if !real(row, target) {
                continue;
            }
            let s = train.slice(n)?;
            let tgt: Vec<f32> = s.index_axis(Axis(0), t).iter().copied().collect();
            let planes: Vec<Vec<f32>> = chans
                .iter()
                .map(|(m, c)| {
                    if real(row, m) {
                        s.index_axis(Axis(0), *c).iter().copied().collect()
                    } else {
                        vec![0.0; tgt.len()]
                    }
                })
                .collect();
            for (p, &y) in tgt.iter().enumerate() {
                for (i, plane) in planes.iter().enumerate() {
                    x[i] = f64::from(plane[p]);
                }
                x[k - 1] = 1.0;
                for i in 0..k {
                    atb[i] += x[i] * f64::from(y);
                    for j in 0..k {
                        ata[i][j] += x[i] * x[j];
                    }
                }
            }
        }
        let weights = solve(ata, atb).ok_or_else(|| {
            SynthError::Setup("the regression baseline's system is singular".into())
        })?;
        Ok(RegressionBaseline {
            target: target.to_owned(),
            inputs: chans,
            weights,
        })
    }
}

impl Generator for RegressionBaseline {
    fn targets(&self) -> Vec<String> {
        vec![self.target.clone()]
    }

    fn generate(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        _seeds: &[u64],
    ) -> Result<Array4<f32>, SynthError> {
        let (b, _, h, w) = slices.dim();
        let k = self.weights.len();
        let mut out = Array4::from_elem((b, 1, h, w), self.weights[k - 1] as f32);
        for (n, row) in rows.iter().enumerate() {
            for (i, (m, c)) in self.inputs.iter().enumerate() {
                if !real(row, m) {
                    continue;
                }
                let src = slices.index_axis(Axis(0), n);
                let src = src.index_axis(Axis(0), *c);
                let mut dst = out.index_axis_mut(Axis(0), n);
                let mut dst = dst.index_axis_mut(Axis(0), 0);
                dst.scaled_add(self.weights[i] as f32, &src);
            }
        }
        Ok(out)
    }

    fn sampler(&self) -> String {
        "baseline-regression".into()
    }

    fn guidance(&self) -> String {
        String::new()
    }
}
