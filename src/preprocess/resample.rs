//! Resampling onto another grid through world coordinates: trilinear for images, nearest
//! neighbour for labels. The inverse resamples back onto the recorded grid, so it is exact
//! only where the data is linear; elsewhere it smooths by at most one voxel of the coarser
//! grid (tests state the tolerance).

use ndarray::{Array4, ShapeBuilder};
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
    let src = fortran_values(&v.data);
    let axis_aligned = (0..3).all(|r| (0..3).all(|c| r == c || map[r][c].abs() < 1e-12));
    let values = if axis_aligned {
        separable(&src, n, frames, target.shape, &map, interpolation)
    } else {
        general(&src, n, frames, target.shape, &map, interpolation)
    };
    let data = Array4::from_shape_vec((tx, ty, tz, frames).f(), values).map_err(|e| {
        PreprocessError::Apply {
            step: "resample",
            what: e.to_string(),
        }
    })?;
    Ok(Volume {
        data,
        geometry: *target,
        source: v.source.clone(),
        meta: v.meta.clone(),
    })
}

/// Where output index `x` along one axis reads: `(lower, upper, fraction)`, or `None` more
/// than half a voxel outside the source (edge values within that half voxel).
fn axis_table(
    n: usize,
    t: usize,
    scale: f64,
    offset: f64,
    nearest: bool,
) -> Vec<Option<(usize, usize, f32)>> {
    (0..t)
        .map(|x| {
            let p = scale * x as f64 + offset;
            let max = (n - 1) as f64;
            if nearest {
                let q = p.round();
                return (q >= 0.0 && q <= max).then_some((q as usize, q as usize, 0.0));
            }
            if !(p >= -0.5 && p <= max + 0.5) {
                return None;
            }
            let c = p.clamp(0.0, max);
            let lo = (c.floor() as usize).min(n.saturating_sub(2));
            let hi = (lo + 1).min(n - 1);
            Some((lo, hi, if n > 1 { (c - lo as f64) as f32 } else { 0.0 }))
        })
        .collect()
}

/// Resampling along one axis of a Fortran-ordered `[d0, d1, d2]` block.
fn pass(
    src: &[f32],
    dims: [usize; 3],
    axis: usize,
    table: &[Option<(usize, usize, f32)>],
) -> Vec<f32> {
    let inner: usize = dims[..axis].iter().product();
    let n = dims[axis];
    let t = table.len();
    let mut out = vec![0f32; inner * t * dims[axis + 1..].iter().product::<usize>()];
    out.par_chunks_mut((t * inner).max(1))
        .enumerate()
        .for_each(|(o, block)| {
            let base = o * n * inner;
            for (x, entry) in table.iter().enumerate() {
                let Some((lo, hi, f)) = *entry else { continue };
                let a = &src[base + lo * inner..base + (lo + 1) * inner];
                let b = &src[base + hi * inner..base + (hi + 1) * inner];
                for ((y, &a), &b) in block[x * inner..(x + 1) * inner].iter_mut().zip(a).zip(b) {
                    *y = a + (b - a) * f;
                }
            }
        });
    out
}

/// Axis-aligned resampling as three one-dimensional passes (trilinear is their product).
fn separable(
    src: &[f32],
    n: [usize; 3],
    frames: usize,
    target: [usize; 3],
    map: &[[f64; 4]; 4],
    interpolation: Interpolation,
) -> Vec<f32> {
    let nearest = interpolation == Interpolation::Nearest;
    let tables: Vec<_> = (0..3)
        .map(|a| axis_table(n[a], target[a], map[a][a], map[a][3], nearest))
        .collect();
    let frame_len = n.iter().product::<usize>();
    let mut out = Vec::with_capacity(target.iter().product::<usize>() * frames);
    for f in 0..frames {
        let mut block = src[f * frame_len..(f + 1) * frame_len].to_vec();
        let mut dims = n;
        for a in 0..3 {
            block = pass(&block, dims, a, &tables[a]);
            dims[a] = target[a];
        }
        out.extend(block);
    }
    out
}

/// Any affine: every output voxel mapped into the source on its own.
fn general(
    src: &[f32],
    n: [usize; 3],
    frames: usize,
    target: [usize; 3],
    map: &[[f64; 4]; 4],
    interpolation: Interpolation,
) -> Vec<f32> {
    let [tx, ty, tz] = target;
    let sampler = Sampler::new(src, n);
    let mut values = vec![0f32; tx * ty * tz * frames];
    // One chunk per output plane (k, frame), in Fortran order.
    values
        .par_chunks_mut((tx * ty).max(1))
        .enumerate()
        .for_each(|(c, plane)| {
            let (k, f) = (c % tz, c / tz);
            for j in 0..ty {
                let mut p: [f64; 3] = std::array::from_fn(|r| {
                    map[r][1] * j as f64 + map[r][2] * k as f64 + map[r][3]
                });
                for out in &mut plane[j * tx..(j + 1) * tx] {
                    *out = match interpolation {
                        Interpolation::Nearest => sampler.nearest(p, f),
                        Interpolation::Linear => sampler.trilinear(p, f),
                    };
                    for (r, x) in p.iter_mut().enumerate() {
                        *x += map[r][0];
                    }
                }
            }
        });
    values
}

/// The values of `a` in Fortran order (i fastest), borrowed when already laid out so.
fn fortran_values(a: &Array4<f32>) -> std::borrow::Cow<'_, [f32]> {
    let sh = a.shape();
    let want = [1, sh[0], sh[0] * sh[1], sh[0] * sh[1] * sh[2]];
    let strides_ok = (0..4).all(|d| sh[d] <= 1 || a.strides()[d] == want[d] as isize);
    match a.as_slice_memory_order() {
        Some(s) if strides_ok => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(a.t().iter().copied().collect()),
    }
}

/// Reads a Fortran-ordered volume at fractional indices.
struct Sampler<'a> {
    data: &'a [f32],
    n: [usize; 3],
    /// Element steps along i, j, k and between frames.
    step: [usize; 4],
}

impl<'a> Sampler<'a> {
    fn new(data: &'a [f32], n: [usize; 3]) -> Self {
        Sampler {
            data,
            n,
            step: [1, n[0], n[0] * n[1], n[0] * n[1] * n[2]],
        }
    }

    /// Nearest voxel; 0 outside the grid.
    fn nearest(&self, p: [f64; 3], f: usize) -> f32 {
        let q = p.map(f64::round);
        if (0..3).all(|a| q[a] >= 0.0 && q[a] <= (self.n[a] - 1) as f64) {
            self.data[q[0] as usize
                + q[1] as usize * self.step[1]
                + q[2] as usize * self.step[2]
                + f * self.step[3]]
        } else {
            0.0
        }
    }

    /// Trilinear value; 0 more than half a voxel outside the grid, edge values within it.
    fn trilinear(&self, p: [f64; 3], f: usize) -> f32 {
        let mut offset = f * self.step[3];
        let mut frac = [0f32; 3];
        let mut next = [0usize; 3];
        for a in 0..3 {
            let max = (self.n[a] - 1) as f64;
            if !(p[a] >= -0.5 && p[a] <= max + 0.5) {
                return 0.0;
            }
            let x = p[a].clamp(0.0, max);
            let b = (x.floor() as usize).min(self.n[a].saturating_sub(2));
            offset += b * self.step[a];
            if self.n[a] > 1 {
                frac[a] = (x - b as f64) as f32;
                next[a] = self.step[a];
            }
        }
        let d = self.data;
        let at = |o: usize| d[offset + o];
        let [sx, sy, sz] = next;
        let [fx, fy, fz] = frac;
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let c00 = lerp(at(0), at(sx), fx);
        let c10 = lerp(at(sy), at(sy + sx), fx);
        let c01 = lerp(at(sz), at(sz + sx), fx);
        let c11 = lerp(at(sz + sy), at(sz + sy + sx), fx);
        lerp(lerp(c00, c10, fy), lerp(c01, c11, fy), fz)
    }
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
