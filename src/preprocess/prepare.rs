//! One subject through every preprocessing step the `[preprocess]` section asks for, in its
//! order: reorient, resample the reference modality to the target spacing, put the other
//! modalities (and the label) on the reference grid, crop to the foreground of all modalities,
//! pad or crop to the slice size, normalize intensities. Each modality keeps its own
//! [`Record`], so any of them (or a synthesized one) can be put back on its original grid.

use std::collections::BTreeMap;

use ndarray::{Array3, Axis};
use serde::{Deserialize, Serialize};

use super::{CropPad, Interpolation, Normalize, PreprocessError, Record, Reorient, Resample};
use super::{foreground_box, resample_onto};
use crate::spec::{CropMode, PreprocessSection, SliceAxis};
use crate::volume::{Geometry, Volume};

/// A voxel is foreground in a modality when it is above this fraction of the modality's 99th
/// percentile; the subject's foreground is the union over its modalities. The phantom's Rician
/// background stays below it (its noise peaks near 10 % of the brightest tissue) and every
/// tissue is above it in at least one contrast.
pub const FOREGROUND_FRACTION: f32 = 0.2;

/// A preprocessed subject: every modality on one grid, with what undoes each.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The common grid after every step.
    pub grid: Geometry,
    /// Modality name -> preprocessed volume (frame 0) and its record.
    pub modalities: BTreeMap<String, (Volume, Record)>,
    /// The label on the same grid (nearest neighbour), and its record.
    pub label: Option<(Volume, Record)>,
    /// Foreground voxels on the grid.
    pub mask: Array3<bool>,
}

/// What the slice store keeps per subject to invert the steps: the grid the slices were cut
/// from, and each channel's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectRecord {
    pub grid: Geometry,
    pub records: BTreeMap<String, Record>,
}

impl Prepared {
    /// The part of this subject that inverts its steps.
    pub fn record(&self) -> SubjectRecord {
        let mut records: BTreeMap<String, Record> = self
            .modalities
            .iter()
            .map(|(name, (_, r))| (name.clone(), r.clone()))
            .collect();
        if let Some((_, r)) = &self.label {
            records.insert(LABEL.to_owned(), r.clone());
        }
        SubjectRecord {
            grid: self.grid,
            records,
        }
    }
}

/// The channel name of the label in the slice store and in records.
pub const LABEL: &str = "label";

fn fail(what: String) -> PreprocessError {
    PreprocessError::Apply {
        step: "prepare",
        what,
    }
}

/// Whether two grids are the same to 1e-4 mm.
pub fn same_grid(a: &Geometry, b: &Geometry) -> bool {
    a.shape == b.shape
        && a.affine
            .0
            .iter()
            .flatten()
            .zip(b.affine.0.iter().flatten())
            .all(|(x, y)| (x - y).abs() < 1e-4)
}

/// World bounding box (RAS mm) of a grid, from the outer voxel corners.
fn world_box(g: &Geometry) -> ([f64; 3], [f64; 3]) {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for corner in 0..8 {
        let ijk: [f64; 3] = std::array::from_fn(|a| {
            if corner >> a & 1 == 1 {
                g.shape[a] as f64 - 0.5
            } else {
                -0.5
            }
        });
        let w = g.affine.apply(ijk);
        for a in 0..3 {
            lo[a] = lo[a].min(w[a]);
            hi[a] = hi[a].max(w[a]);
        }
    }
    (lo, hi)
}

/// The fraction of `g`'s world box inside `reference`'s (0 when they do not overlap).
fn overlap(g: &Geometry, reference: &Geometry) -> f64 {
    let (a0, a1) = world_box(g);
    let (b0, b1) = world_box(reference);
    let mut inside = 1.0;
    let mut whole = 1.0;
    for a in 0..3 {
        inside *= (a1[a].min(b1[a]) - a0[a].max(b0[a])).max(0.0);
        whole *= a1[a] - a0[a];
    }
    if whole > 0.0 { inside / whole } else { 0.0 }
}

/// [`FOREGROUND_FRACTION`] of the 99th percentile of a source volume's finite values.
fn foreground_threshold(v: &Volume) -> f32 {
    let mut values: Vec<f32> = v
        .frame(0)
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if values.is_empty() {
        return f32::INFINITY;
    }
    let at = ((values.len() - 1) as f64 * 0.99).round() as usize;
    let (_, p99, _) = values.select_nth_unstable_by(at, f32::total_cmp);
    if *p99 > 0.0 {
        FOREGROUND_FRACTION * *p99
    } else {
        f32::INFINITY
    }
}

/// The preprocessing foreground of volumes on one grid (frame 0 of each, same shape): the
/// voxels above [`FOREGROUND_FRACTION`] of the 99th percentile in any of them. Evaluation
/// scores the `foreground` region under it, on the original grid.
pub fn foreground_mask(volumes: &[&Volume]) -> Option<ndarray::ArrayD<bool>> {
    volumes
        .iter()
        .map(|v| {
            let threshold = foreground_threshold(v);
            v.frame(0).mapv(|x| x > threshold).into_dyn()
        })
        .reduce(|a, b| if a.shape() == b.shape() { a | b } else { a })
}

fn mask_volume(mask: &Array3<bool>, grid: Geometry) -> Volume {
    Volume {
        data: mask
            .mapv(|m| if m { 1.0 } else { 0.0 })
            .insert_axis(Axis(3)),
        geometry: grid,
        source: Default::default(),
        meta: Default::default(),
    }
}

/// The in-plane shape `[rows, cols]` as a 3-D shape on `grid`, keeping the length of the
/// slicing axis `cut`: columns run along the first remaining voxel axis, rows along the second.
pub fn slice_shape(grid: &Geometry, cut: usize, size: [u32; 2]) -> [usize; 3] {
    let mut shape = grid.shape;
    let rest: Vec<usize> = (0..3).filter(|&a| a != cut).collect();
    shape[rest[0]] = size[1] as usize;
    shape[rest[1]] = size[0] as usize;
    shape
}

/// Runs every step of `section` on one subject's `modalities` (names to volumes, at least
/// one) and optional `label`. `order` lists the modality names in the pipeline's order; the
/// reference is `section.reference` when the subject has it, else the first one present.
/// `slice_axis` says which plane `size` applies to.
pub fn prepare(
    section: &PreprocessSection,
    modalities: BTreeMap<String, Volume>,
    label: Option<Volume>,
    order: &[String],
    slice_axis: SliceAxis,
) -> Result<Prepared, PreprocessError> {
    let reference = section
        .reference
        .as_ref()
        .filter(|r| modalities.contains_key(*r))
        .or_else(|| order.iter().find(|m| modalities.contains_key(*m)))
        .cloned()
        .ok_or_else(|| fail("the subject has none of the pipeline's modalities".to_owned()))?;
    let label_name = LABEL.to_owned();
    for (name, v) in modalities
        .iter()
        .chain(label.iter().map(|l| (&label_name, l)))
    {
        if v.frames() != 1 {
            return Err(fail(format!(
                "{name} ({}) has {} frames; preprocessing takes 3-D volumes",
                v.source.path.display(),
                v.frames()
            )));
        }
        if let Some(bad) = v.data.iter().position(|x| !x.is_finite()) {
            return Err(fail(format!(
                "{name} ({}) has a non-finite value (NaN or infinity) at voxel {bad} (flat index)",
                v.source.path.display()
            )));
        }
    }
    let source_ref_grid = modalities[&reference].geometry;
    if let Some(l) = &label
        && !same_grid(&l.geometry, &source_ref_grid)
    {
        return Err(fail(format!(
            "the label {} is on another grid (shape {:?}, spacing {:?} mm) than {reference} (shape {:?}, spacing {:?} mm); labels must share their reference modality's grid",
            l.source.path.display(),
            l.geometry.shape,
            l.geometry.spacing(),
            source_ref_grid.shape,
            source_ref_grid.spacing()
        )));
    }
    let reorient = Reorient::new(&section.orientation)?;
    let resample = section.spacing_mm.map(|spacing_mm| Resample {
        spacing_mm,
        interpolation: Interpolation::Linear,
    });

    // The reference modality sets the grid.
    let mut out: BTreeMap<String, (Volume, Record)> = BTreeMap::new();
    let mut record = Record::default();
    let mut v = record.push(reorient.apply(&modalities[&reference])?);
    if let Some(r) = &resample {
        v = record.push(r.apply(&v)?);
    }
    let grid = v.geometry;
    out.insert(reference.clone(), (v, record));

    for (name, source) in &modalities {
        if *name == reference {
            continue;
        }
        let mut record = Record::default();
        let v = record.push(reorient.apply(source)?);
        let v = if same_grid(&v.geometry, &grid) {
            Volume {
                geometry: grid,
                ..v
            }
        } else {
            let inside = overlap(&grid, &v.geometry);
            if inside <= 0.0 {
                return Err(fail(format!(
                    "{name} ({}) does not overlap the reference {reference} ({}) in world space: boxes {:?} and {:?} mm",
                    source.source.path.display(),
                    modalities[&reference].source.path.display(),
                    world_box(&v.geometry),
                    world_box(&grid)
                )));
            }
            if inside < 0.5 {
                tracing::warn!(
                    modality = %name,
                    "only {:.0} % of the reference grid lies inside {name}; the rest is zero",
                    inside * 100.0
                );
            }
            let from = v.geometry;
            let resampled = resample_onto(&v, &grid, Interpolation::Linear)?;
            record.0.push(super::Applied::Resample {
                from,
                interpolation: Interpolation::Linear,
            });
            resampled
        };
        out.insert(name.clone(), (v, record));
    }

    let mut label = match label {
        Some(l) => {
            let mut record = Record::default();
            let mut v = record.push(reorient.apply(&l)?);
            if let Some(r) = &resample {
                let nearest = Resample {
                    interpolation: Interpolation::Nearest,
                    ..r.clone()
                };
                v = record.push(nearest.apply(&v)?);
            }
            Some((v, record))
        }
        None => None,
    };

    // Thresholds come from the source volumes (the same intensities, before resampling).
    let mut mask = out
        .iter()
        .map(|(name, (v, _))| {
            let threshold = foreground_threshold(&modalities[name]);
            v.frame(0).mapv(|x| x > threshold)
        })
        .reduce(|a, b| a | b)
        .ok_or_else(|| fail("no modality".to_owned()))?;
    if !mask.iter().any(|&m| m) {
        return Err(fail(format!(
            "the foreground is empty: no voxel of {} is above {FOREGROUND_FRACTION} of its 99th percentile",
            out.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }

    let mut grid = grid;
    if section.crop == CropMode::Foreground {
        let (start, shape) = foreground_box(
            &mask_volume(&mask, grid),
            0.5,
            section.crop_margin_vox as usize,
        )
        .ok_or_else(|| fail("the foreground is empty".to_owned()))?;
        grid = crop_all(
            &CropPad::new(start, shape),
            &mut out,
            &mut label,
            &mut mask,
            grid,
        )?;
    }
    if let Some(size) = section.size {
        let cut = super::voxel_axis(&grid, slice_axis);
        let step = CropPad::centre(slice_shape(&grid, cut, size));
        grid = crop_all(&step, &mut out, &mut label, &mut mask, grid)?;
    }

    // Statistics come from the foreground voxels (in logical order, as `Normalize` reads them).
    let flat: Vec<bool> = mask.iter().copied().collect();
    let normalize = Normalize::new(section.normalize.clone());
    for (name, (v, record)) in out.iter_mut() {
        let next = record.push(
            normalize
                .apply(v, Some(&flat))
                .map_err(|e| fail(format!("{name}: {e}")))?,
        );
        *v = next;
    }
    Ok(Prepared {
        grid,
        modalities: out,
        label,
        mask,
    })
}

/// Applies one crop or pad to every modality, the label and the mask; returns the new grid.
fn crop_all(
    step: &CropPad,
    out: &mut BTreeMap<String, (Volume, Record)>,
    label: &mut Option<(Volume, Record)>,
    mask: &mut Array3<bool>,
    grid: Geometry,
) -> Result<Geometry, PreprocessError> {
    for (v, record) in out.values_mut().chain(label.iter_mut()) {
        *v = record.push(step.apply(v)?);
    }
    let (m, _) = step.apply(&mask_volume(mask, grid))?;
    *mask = m.frame(0).mapv(|x| x > 0.5);
    Ok(m.geometry)
}
