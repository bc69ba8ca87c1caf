//! Synthesized slices back into volumes on the subject's original grid: the slices are
//! assembled on the preprocessed grid, then every recorded step (normalization, crop/pad,
//! resampling, reorientation) is undone, newest first.
//!
//! The target modality's own record is used when the subject has it. When the subject lacks
//! the target (the missing-modality case), there is no intensity scale to return to: the
//! geometric steps of the subject's first real modality are undone and the intensities stay
//! in the model's normalized range.

use ndarray::{Array4, Axis};

use super::SynthError;
use crate::dataset::ManifestRow;
use crate::preprocess::{Applied, Record, Slice, SubjectRecord, assemble};
use crate::spec::SliceAxis;
use crate::volume::{Metadata, Source, Volume};

/// The slice axis a manifest names.
pub fn axis_named(name: &str) -> Result<SliceAxis, SynthError> {
    match name {
        "axial" => Ok(SliceAxis::Axial),
        "coronal" => Ok(SliceAxis::Coronal),
        "sagittal" => Ok(SliceAxis::Sagittal),
        other => Err(SynthError::Setup(format!(
            "manifest axis {other:?}, expected axial, coronal or sagittal"
        ))),
    }
}

/// Whether `record` holds the target's intensities (`true`) or only a stand-in geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Inverted with the target's own record: original intensities.
    Original,
    /// The target was missing: original grid, normalized intensities.
    Normalized,
}

/// The record that puts `target` back, and whether it restores intensities.
pub fn target_record(record: &SubjectRecord, target: &str) -> Result<(Record, Scale), SynthError> {
    if let Some(r) = record.records.get(target) {
        return Ok((r.clone(), Scale::Original));
    }
    let reference = record
        .records
        .iter()
        .find(|(name, _)| name.as_str() != crate::preprocess::LABEL)
        .map(|(_, r)| r)
        .ok_or_else(|| SynthError::Setup("the subject's record lists no modality".into()))?;
    let geometric = reference
        .0
        .iter()
        .filter(|a| !matches!(a, Applied::Normalize { .. }))
        .cloned()
        .collect();
    Ok((Record(geometric), Scale::Normalized))
}

/// The normalized value of an original intensity of 0 (the background slices that were not
/// kept are filled with it).
pub fn background(record: &Record) -> f32 {
    record
        .0
        .iter()
        .find(|a| matches!(a, Applied::Normalize { .. }))
        .map_or(0.0, |a| crate::preprocess::normalize_forward(a, 0.0) as f32)
}

/// Puts channel `channel` of one subject's slices (`data` `[N, C, H, W]`, described by `rows`,
/// all of one subject) back on the subject's original grid.
pub fn to_original_grid(
    data: &Array4<f32>,
    rows: &[&ManifestRow],
    channel: usize,
    target: &str,
) -> Result<(Volume, Scale), SynthError> {
    let first = rows
        .first()
        .ok_or_else(|| SynthError::Setup("no slice to assemble".into()))?;
    if data.shape()[0] != rows.len() {
        return Err(SynthError::Setup(format!(
            "{} slices but {} manifest rows",
            data.shape()[0],
            rows.len()
        )));
    }
    let record: SubjectRecord = serde_json::from_str(&first.record).map_err(|e| {
        SynthError::Setup(format!(
            "subject {}: the manifest's preprocessing record is unreadable: {e}",
            first.subject
        ))
    })?;
    let axis = axis_named(&first.axis)?;
    let (steps, scale) = target_record(&record, target)?;
    let slices: Vec<Slice> = rows
        .iter()
        .enumerate()
        .map(|(n, r)| Slice {
            index: r.slice_index as usize,
            foreground: 1.0,
            data: data
                .index_axis(Axis(0), n)
                .select(Axis(0), &[channel])
                .to_owned(),
        })
        .collect();
    let shape = record.grid.shape;
    let like = Volume {
        data: Array4::zeros((shape[0], shape[1], shape[2], 1)),
        geometry: record.grid,
        source: Source::default(),
        meta: Metadata::default(),
    };
    let on_grid = assemble(&slices, 0, &like, axis, background(&steps))
        .map_err(|e| SynthError::Setup(format!("subject {}: {e}", first.subject)))?;
    let volume = steps
        .invert_all(on_grid)
        .map_err(|e| SynthError::Setup(format!("subject {}: {e}", first.subject)))?;
    Ok((volume, scale))
}
