//! NIfTI-1 and NIfTI-2: reading (`.nii`, `.nii.gz`, `.hdr`/`.img` pairs) and writing.
//!
//! Reading follows nibabel: the affine is the sform when its code is non-zero, else the qform
//! when its code is non-zero, else nibabel's fallback (voxel sizes, x flipped, centred);
//! `scl_slope`/`scl_inter` are applied unless the slope is 0 or not finite; header fields
//! nibabel repairs on load (qfac 0, zero or negative voxel sizes) are repaired the same way,
//! with a warning. Writing sets both sform and qform (code 1) and millimetre units.

mod header;
mod read;
mod write;

use std::path::PathBuf;

pub use header::{Header, NiftiVersion};
pub use read::{read, read_header};
pub use write::{header_for, write, write_rgb};

/// Why a NIfTI file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a NIfTI file: {reason}")]
    NotNifti { path: PathBuf, reason: String },
    #[error("{path}: header field {field} is {value}, expected {expected}")]
    BadHeader {
        path: PathBuf,
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "{path}: data type code {code} ({name}) is not supported, expected an integer or real type"
    )]
    UnsupportedType {
        path: PathBuf,
        code: i32,
        name: &'static str,
    },
    #[error(
        "{path} is truncated: the header promises {expected} bytes of voxel data from byte {offset}, the file has {actual}"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        expected: u64,
        actual: u64,
    },
    #[error("cannot write NIfTI file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: nifti::NiftiError,
    },
    #[error("cannot move the finished NIfTI file into place at {path}")]
    Commit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write NIfTI file {path}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
}
