//! Cutting a subject's co-registered volumes into 2-D slices for the models, and putting
//! slices back into a volume. Volumes are expected in RAS order (reorient first), so the axes
//! mean: axial cuts along k, coronal along j, sagittal along i (for other orientations, the
//! axis pointing along S/I, A/P or R/L).

use ndarray::{Array3, Array4, Axis, s};

use super::PreprocessError;
use crate::spec::SliceAxis;
use crate::volume::{Geometry, Volume, orientation_axis};

/// The voxel axis of `grid` that an anatomical slice axis cuts along: the one pointing most
/// along S/I for axial, A/P for coronal, R/L for sagittal.
pub fn voxel_axis(grid: &Geometry, axis: SliceAxis) -> usize {
    let world = match axis {
        SliceAxis::Sagittal => 0,
        SliceAxis::Coronal => 1,
        SliceAxis::Axial => 2,
    };
    grid.orientation()
        .chars()
        .position(|c| orientation_axis(c).is_some_and(|(w, _)| w == world))
        .unwrap_or(world)
}

/// One kept slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Index along the cut axis.
    pub index: usize,
    /// Fraction of foreground pixels in the slice.
    pub foreground: f64,
    /// # Shapes
    /// `[channels × (2 · context + 1), H, W]`: for each modality, its neighbours from
    /// `index - context` to `index + context` (clamped at the edges). W is the first and H
    /// the second remaining voxel axis, so rows run along y and columns along x for axial
    /// slices (H = j, W = i).
    pub data: Array3<f32>,
}

/// Cuts `channels` (volumes on one grid, frame 0) along `axis`, keeping slices whose
/// foreground fraction (from `mask`, same grid) is at least `min_foreground`.
pub fn cut(
    channels: &[&Volume],
    mask: &Array3<bool>,
    axis: SliceAxis,
    min_foreground: f64,
    context: usize,
) -> Result<Vec<Slice>, PreprocessError> {
    let Some(first) = channels.first() else {
        return Err(PreprocessError::Apply {
            step: "slice",
            what: "no channel to slice".to_owned(),
        });
    };
    let grid = first.geometry;
    if let Some(other) = channels.iter().find(|c| c.geometry != grid) {
        return Err(PreprocessError::Apply {
            step: "slice",
            what: format!(
                "channels are on different grids ({:?} and {:?}); resample onto one grid first",
                grid.shape, other.geometry.shape
            ),
        });
    }
    if mask.shape() != grid.shape {
        return Err(PreprocessError::Apply {
            step: "slice",
            what: format!(
                "mask shape {:?} differs from the grid {:?}",
                mask.shape(),
                grid.shape
            ),
        });
    }
    let a = voxel_axis(&grid, axis);
    let n = grid.shape[a];
    let mut out = Vec::new();
    for index in 0..n {
        let m = mask.index_axis(Axis(a), index);
        let foreground = m.iter().filter(|&&x| x).count() as f64 / m.len() as f64;
        if foreground < min_foreground {
            continue;
        }
        let planes: Vec<_> = channels
            .iter()
            .flat_map(|c| {
                (0..=2 * context).map(move |d| {
                    let at =
                        (index as i64 + d as i64 - context as i64).clamp(0, n as i64 - 1) as usize;
                    c.data
                        .slice(s![.., .., .., 0])
                        .index_axis(Axis(a), at)
                        .reversed_axes()
                        .to_owned()
                })
            })
            .collect();
        let views: Vec<_> = planes.iter().map(|p| p.view()).collect();
        let data = ndarray::stack(Axis(0), &views).map_err(|e| PreprocessError::Apply {
            step: "slice",
            what: e.to_string(),
        })?;
        out.push(Slice {
            index,
            foreground,
            data,
        });
    }
    Ok(out)
}

/// Puts one channel of slices back into a volume on `like`'s grid; slices not given stay
/// `fill`.
///
/// # Shapes
/// each `slice.data` `[channels, H, W]`; channel `channel` is used.
pub fn assemble(
    slices: &[Slice],
    channel: usize,
    like: &Volume,
    axis: SliceAxis,
    fill: f32,
) -> Result<Volume, PreprocessError> {
    let a = voxel_axis(&like.geometry, axis);
    let shape = like.geometry.shape;
    let mut data = Array4::from_elem((shape[0], shape[1], shape[2], 1), fill);
    for sl in slices {
        if sl.index >= shape[a] || channel >= sl.data.shape()[0] {
            return Err(PreprocessError::Apply {
                step: "assemble",
                what: format!(
                    "slice {} channel {channel} does not fit the grid {shape:?}",
                    sl.index
                ),
            });
        }
        let plane = sl.data.index_axis(Axis(0), channel).reversed_axes();
        let mut target = data.index_axis_mut(Axis(3), 0);
        let mut dest = target.index_axis_mut(Axis(a), sl.index);
        if dest.shape() != plane.shape() {
            return Err(PreprocessError::Apply {
                step: "assemble",
                what: format!(
                    "slice is {:?}, the grid plane is {:?}",
                    plane.shape(),
                    dest.shape()
                ),
            });
        }
        dest.assign(&plane);
    }
    Ok(Volume {
        data,
        geometry: like.geometry,
        source: like.source.clone(),
        meta: like.meta.clone(),
    })
}
