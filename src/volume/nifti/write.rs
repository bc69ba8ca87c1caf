//! NIfTI-1 writing.
//!
//! Written files carry the affine twice, as nibabel writes them: the sform (code 1,
//! scanner) holds it exactly and the qform (code 1) holds its rigid part as a quaternion with
//! `pixdim` and `qfac`. Units are millimetres. `.nii.gz` names are gzip-compressed.

use std::path::Path;

use ndarray::ArrayView3;
use nifti::{DataElement, NiftiHeader, writer::WriterOptions};

use super::NiftiError;
use crate::volume::{Affine, AtomicFile};

/// NIfTI `xyzt_units` for millimetres and seconds.
const UNITS_MM_SEC: u8 = 2 | 8;
/// NIfTI xform code: scanner-based anatomical coordinates.
const XFORM_SCANNER_ANAT: i16 = 1;

/// The NIfTI header medsynth writes for a volume on `affine`.
pub fn header_for(affine: &Affine, description: &str) -> NiftiHeader {
    let spacing = affine.spacing();
    let (bcd, offset, qfac) = affine.to_quatern();
    let m = &affine.0;
    let row = |r: usize| {
        [
            m[r][0] as f32,
            m[r][1] as f32,
            m[r][2] as f32,
            m[r][3] as f32,
        ]
    };
    NiftiHeader {
        pixdim: [
            qfac as f32,
            spacing[0] as f32,
            spacing[1] as f32,
            spacing[2] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        xyzt_units: UNITS_MM_SEC,
        qform_code: XFORM_SCANNER_ANAT,
        sform_code: XFORM_SCANNER_ANAT,
        quatern_b: bcd[0] as f32,
        quatern_c: bcd[1] as f32,
        quatern_d: bcd[2] as f32,
        quatern_x: offset[0] as f32,
        quatern_y: offset[1] as f32,
        quatern_z: offset[2] as f32,
        srow_x: row(0),
        srow_y: row(1),
        srow_z: row(2),
        descrip: description.as_bytes().to_vec(),
        ..NiftiHeader::default()
    }
}

/// Writes a 3-D volume indexed `[i, j, k]` to `path` (`.nii` or `.nii.gz`) atomically.
pub fn write<T>(
    path: &Path,
    data: ArrayView3<'_, T>,
    affine: &Affine,
    description: &str,
) -> Result<(), NiftiError>
where
    T: DataElement + bytemuck::Pod,
{
    if description.len() > 80 {
        return Err(NiftiError::Unwritable {
            path: path.to_owned(),
            reason: format!(
                "description is {} bytes long, at most 80 fit",
                description.len()
            ),
        });
    }
    let header = header_for(affine, description);
    let file = AtomicFile::new(path).map_err(|source| NiftiError::Commit {
        path: path.to_owned(),
        source,
    })?;
    WriterOptions::new(file.temp())
        .reference_header(&header)
        .write_nifti(&data)
        .map_err(|source| NiftiError::Write {
            path: path.to_owned(),
            source,
        })?;
    file.commit().map_err(|source| NiftiError::Commit {
        path: path.to_owned(),
        source,
    })
}
