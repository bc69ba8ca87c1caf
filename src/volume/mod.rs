//! Volumes and their geometry, and the readers and writers of NIfTI and DICOM.
//!
//! Voxel arrays are indexed `[i, j, k]` in NIfTI voxel order, so the affine maps
//! `(i, j, k, 1)` to RAS+ millimetres exactly as nibabel's `img.affine` does with
//! `img.get_fdata()[i, j, k]`.

mod affine;
mod atomic;
mod axes;
mod data;
pub mod dicom;
mod io;
pub mod nifti;

pub use affine::{Affine, orientation_axis, orientation_code, parse_orientation};
pub use atomic::{AtomicFile, temp_path};
pub use axes::{AxisOrder, standard};
pub use data::{Geometry, Metadata, Source, Volume, hex};
pub use io::{Format, VolumeError, format_of, read_volumes, write_nifti, write_volume};
