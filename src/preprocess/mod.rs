//! Invertible preprocessing: every step returns the volume it made and an [`Applied`] record
//! holding exactly what its inverse needs; [`Record`] keeps them in order and undoes them
//! last-in first-out, so synthesized data can be put back on the subject's original grid and
//! intensity scale.
//!
//! ```
//! use medsynth::preprocess::{CropPad, Record, Reorient};
//! # use medsynth::volume::{Affine, Geometry, Metadata, Source, Volume};
//! # let data = ndarray::Array4::from_shape_fn((4, 5, 6, 1), |(i, j, k, _)| (i + 10 * j + 100 * k) as f32);
//! # let v = Volume { data, geometry: Geometry { shape: [4, 5, 6], affine: Affine::centred([4, 5, 6], [1.0; 3]) }, source: Source::default(), meta: Metadata::default() };
//! let mut record = Record::default();
//! let v2 = record.push(Reorient::new("LPI").unwrap().apply(&v).unwrap());
//! let v3 = record.push(CropPad::centre([3, 3, 6]).apply(&v2).unwrap());
//! let back = record.invert_all(v3).unwrap();
//! assert_eq!(back.geometry, v.geometry);
//! ```

mod crop;
mod discover;
mod normalize;
mod prepare;
mod record;
mod reorient;
mod resample;
mod slice;
mod split;

pub use crop::{CropPad, foreground_box};
pub use discover::{
    ModalitySource, SubjectInputs, dicom_subjects, dicom_subjects_in, file_digest, nifti_subjects,
};
pub use normalize::{Normalize, forward as normalize_forward, inverse as normalize_inverse};
pub use prepare::{
    FOREGROUND_FRACTION, LABEL, Prepared, SubjectRecord, foreground_mask, prepare, same_grid,
    slice_shape,
};
pub use record::{Applied, PreprocessError, Record};
pub use reorient::Reorient;
pub use resample::{Interpolation, Resample, resample_onto};
pub use slice::{Slice, assemble, cut as cut_slices, voxel_axis};
pub use split::{assign as assign_splits, cache_key, read_list as read_split_list};
