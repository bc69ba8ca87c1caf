//! Cropping and padding on the voxel grid: to the foreground box with a margin, or centred to
//! a fixed size. Exactly invertible inside the kept region; voxels cropped away come back as
//! the fill value.

use ndarray::{Array4, s};

use super::{Applied, PreprocessError};
use crate::volume::{Affine, Geometry, Volume};

/// Crops or pads to `shape` starting at voxel `start` of the input (negative: padding).
#[derive(Debug, Clone, PartialEq)]
pub struct CropPad {
    start: Option<[i64; 3]>,
    shape: [usize; 3],
    fill: f32,
}

impl CropPad {
    /// A box given by its first voxel and size.
    pub fn new(start: [i64; 3], shape: [usize; 3]) -> Self {
        Self {
            start: Some(start),
            shape,
            fill: 0.0,
        }
    }

    /// Centred on the input, of `shape` (padding or cropping each axis symmetrically).
    pub fn centre(shape: [usize; 3]) -> Self {
        Self {
            start: None,
            shape,
            fill: 0.0,
        }
    }

    /// The value of padded voxels. Default 0.
    pub fn with_fill(mut self, fill: f32) -> Self {
        self.fill = fill;
        self
    }

    /// Crops or pads `v`.
    pub fn apply(&self, v: &Volume) -> Result<(Volume, Applied), PreprocessError> {
        if self.shape.contains(&0) {
            return Err(PreprocessError::Config {
                step: "crop-pad",
                what: format!("target shape {:?} has an empty axis", self.shape),
            });
        }
        let from = v.geometry.shape;
        let start = self.start.unwrap_or_else(|| {
            std::array::from_fn(|a| (from[a] as i64 - self.shape[a] as i64).div_euclid(2))
        });
        let applied = Applied::CropPad {
            start,
            from_shape: from,
            fill: self.fill,
        };
        Ok((place(v, start, self.shape, self.fill), applied))
    }
}

/// A new volume of `shape` whose voxel v is `v`'s voxel v + start (else `fill`).
fn place(v: &Volume, start: [i64; 3], shape: [usize; 3], fill: f32) -> Volume {
    let from = v.geometry.shape;
    let frames = v.frames();
    let mut out = Array4::from_elem((shape[0], shape[1], shape[2], frames), fill);
    // The overlap, in output and input coordinates.
    let lo: [i64; 3] = std::array::from_fn(|a| (-start[a]).max(0));
    let hi: [i64; 3] = std::array::from_fn(|a| (from[a] as i64 - start[a]).min(shape[a] as i64));
    if (0..3).all(|a| lo[a] < hi[a]) {
        let src = v.data.slice(s![
            (lo[0] + start[0]) as usize..(hi[0] + start[0]) as usize,
            (lo[1] + start[1]) as usize..(hi[1] + start[1]) as usize,
            (lo[2] + start[2]) as usize..(hi[2] + start[2]) as usize,
            ..
        ]);
        out.slice_mut(s![
            lo[0] as usize..hi[0] as usize,
            lo[1] as usize..hi[1] as usize,
            lo[2] as usize..hi[2] as usize,
            ..
        ])
        .assign(&src);
    }
    let mut m = v.geometry.affine.0;
    let shift = v.geometry.affine.apply(start.map(|x| x as f64));
    for (r, row) in m.iter_mut().take(3).enumerate() {
        row[3] = shift[r];
    }
    Volume {
        data: out,
        geometry: Geometry {
            shape,
            affine: Affine(m),
        },
        source: v.source.clone(),
        meta: v.meta.clone(),
    }
}

/// Undoes a crop or pad: back to the original shape, cropped-away voxels as the fill value.
pub(super) fn invert(applied: &Applied, v: Volume) -> Result<Volume, PreprocessError> {
    let Applied::CropPad {
        start,
        from_shape,
        fill,
    } = applied
    else {
        return Err(PreprocessError::RecordMismatch {
            step: "crop-pad",
            what: format!("the record is for {}", applied.name()),
        });
    };
    Ok(place(&v, start.map(|x| -x), *from_shape, *fill))
}

/// The bounding box of voxels above `threshold` in any frame, grown by `margin` voxels and
/// clipped to the grid: `(start, shape)`, or `None` when no voxel is above it.
pub fn foreground_box(v: &Volume, threshold: f32, margin: usize) -> Option<([i64; 3], [usize; 3])> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for ((i, j, k, _), &x) in v.data.indexed_iter() {
        if x > threshold {
            for (a, idx) in [i, j, k].into_iter().enumerate() {
                lo[a] = lo[a].min(idx);
                hi[a] = hi[a].max(idx);
            }
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let n = v.geometry.shape;
    let start: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(margin));
    let end: [usize; 3] = std::array::from_fn(|a| (hi[a] + margin).min(n[a] - 1));
    Some((
        start.map(|x| x as i64),
        std::array::from_fn(|a| end[a] - start[a] + 1),
    ))
}
