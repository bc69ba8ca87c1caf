//! NIfTI-1 writing (reading arrives with the volume I/O layer).
//!
//! Written files carry the affine twice, as nibabel writes them: the sform (code 1,
//! scanner) holds it exactly and the qform (code 1) holds its rigid part as a quaternion with
//! `pixdim` and `qfac`. Units are millimetres. `.nii.gz` names are gzip-compressed.

use std::path::{Path, PathBuf};

use ndarray::ArrayView3;
use nifti::{DataElement, NiftiHeader, writer::WriterOptions};

use super::{Affine, AtomicFile};

/// NIfTI `xyzt_units` for millimetres and seconds.
const UNITS_MM_SEC: u8 = 2 | 8;
/// NIfTI xform code: scanner-based anatomical coordinates.
const XFORM_SCANNER_ANAT: i16 = 1;

/// Why a NIfTI file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteNiftiError {
    #[error("cannot write NIfTI file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: nifti::NiftiError,
    },
    #[error("cannot move the finished NIfTI file into place at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write NIfTI file {path}: description {len} bytes long, expected at most 80")]
    Description { path: PathBuf, len: usize },
}

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
) -> Result<(), WriteNiftiError>
where
    T: DataElement + bytemuck::Pod,
{
    if description.len() > 80 {
        return Err(WriteNiftiError::Description {
            path: path.to_owned(),
            len: description.len(),
        });
    }
    let header = header_for(affine, description);
    let file = AtomicFile::new(path).map_err(|source| WriteNiftiError::Io {
        path: path.to_owned(),
        source,
    })?;
    WriterOptions::new(file.temp())
        .reference_header(&header)
        .write_nifti(&data)
        .map_err(|source| WriteNiftiError::Write {
            path: path.to_owned(),
            source,
        })?;
    file.commit().map_err(|source| WriteNiftiError::Io {
        path: path.to_owned(),
        source,
    })
}
