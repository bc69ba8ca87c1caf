//! NIfTI-1 writing.
//!
//! Written files carry the affine twice, as nibabel writes them: the sform (code 1,
//! scanner) holds it exactly and the qform (code 1) holds its rigid part as a quaternion with
//! `pixdim` and `qfac`. Units are millimetres. `.nii.gz` names are gzip-compressed.

use std::path::Path;

use ndarray::{ArrayView, Dimension, RemoveAxis};
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

/// Writes a volume indexed `[i, j, k]` (or `[i, j, k, t]`) to `path` (`.nii` or `.nii.gz`) atomically.
///
/// `data` may have any memory layout (C or Fortran order, permuted, reversed axes): it is
/// handed to the nifti crate in standard layout, the one layout its writer takes for every
/// shape (a reversed or Fortran-ordered view makes it fail on an internal `unwrap`). This is
/// the only place medsynth hands voxels to the nifti crate, so every NIfTI it writes
/// (synthesized volumes, nnU-Net cases, preprocessed volumes, phantoms) goes through here.
pub fn write<T, D>(
    path: &Path,
    data: ArrayView<'_, T, D>,
    affine: &Affine,
    description: &str,
) -> Result<(), NiftiError>
where
    T: DataElement + bytemuck::Pod,
    D: Dimension + RemoveAxis,
{
    let data = data.as_standard_layout();
    write_with(path, data.shape(), affine, description, |options| {
        options.write_nifti(&data)
    })
}

/// Writes colour voxels (`[i, j, k]` of red, green, blue) as NIfTI RGB24, as dcm2niix writes
/// colour images.
pub fn write_rgb<D>(
    path: &Path,
    data: ArrayView<'_, [u8; 3], D>,
    affine: &Affine,
    description: &str,
) -> Result<(), NiftiError>
where
    D: Dimension + RemoveAxis,
{
    let data = data.as_standard_layout();
    write_with(path, data.shape(), affine, description, |options| {
        options.write_rgb_nifti(&data)
    })
}

/// Checks the description and shape, then writes through `write` atomically.
fn write_with(
    path: &Path,
    shape: &[usize],
    affine: &Affine,
    description: &str,
    write: impl FnOnce(WriterOptions<'_>) -> nifti::Result<()>,
) -> Result<(), NiftiError> {
    if description.len() > 80 {
        return Err(NiftiError::Unwritable {
            path: path.to_owned(),
            reason: format!(
                "description is {} bytes long, at most 80 fit",
                description.len()
            ),
        });
    }
    if let Some(&n) = shape.iter().find(|&&n| n == 0 || n > i16::MAX as usize) {
        return Err(NiftiError::Unwritable {
            path: path.to_owned(),
            reason: format!(
                "shape {shape:?} has an axis of {n} voxels, NIfTI-1 holds 1 to {} per axis",
                i16::MAX
            ),
        });
    }
    let header = header_for(affine, description);
    let file = AtomicFile::new(path).map_err(|source| NiftiError::Commit {
        path: path.to_owned(),
        source,
    })?;
    write(WriterOptions::new(file.temp()).reference_header(&header)).map_err(|source| {
        NiftiError::Write {
            path: path.to_owned(),
            source,
        }
    })?;
    file.commit().map_err(|source| NiftiError::Commit {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, Axis, ShapeBuilder};

    use super::*;

    /// Every layout a transform can leave (C and Fortran order, reversed axes, permuted axes,
    /// axes of length 1) writes the same voxels in the same order.
    #[test]
    fn any_memory_layout_writes_the_same_voxels() {
        let dir = tempfile::tempdir().unwrap();
        let affine = Affine::centred([1, 1, 1], [1.0; 3]);
        for shape in [[5, 4, 3], [5, 4, 1], [1, 4, 3], [5, 1, 1]] {
            let value = |(i, j, k): (usize, usize, usize)| (i + 10 * j + 100 * k) as f32;
            let mut layouts = Vec::new();
            for fortran in [false, true] {
                let base = Array3::from_shape_fn(shape.set_f(fortran), value);
                for axis in 0..3 {
                    // The voxels stored back to front along one axis, read through a reversed
                    // view (a negative stride), as reorienting leaves them.
                    let n = shape[axis];
                    let mut view = Array3::from_shape_fn(shape.set_f(fortran), |(i, j, k)| {
                        let mut at = [i, j, k];
                        at[axis] = n - 1 - at[axis];
                        base[at]
                    });
                    view.invert_axis(Axis(axis));
                    layouts.push(("reversed", view));
                }
                // Stored k-major ([k, i, j] in memory), viewed as [i, j, k].
                let stored = Array3::from_shape_fn(
                    [shape[2], shape[0], shape[1]].set_f(fortran),
                    |(k, i, j)| value((i, j, k)),
                );
                layouts.push(("permuted", stored.permuted_axes([1, 2, 0])));
                layouts.push((if fortran { "fortran" } else { "c" }, base));
            }
            let expected = Array3::from_shape_fn(shape, value);
            for (n, (name, data)) in layouts.iter().enumerate() {
                assert_eq!(data, &expected, "{name}: the test builds the same voxels");
                let path = dir.path().join(format!("v{n}.nii.gz"));
                write(&path, data.view(), &affine, name).unwrap();
                let back = crate::volume::nifti::read(&path).unwrap();
                assert_eq!(
                    back.frame(0),
                    expected.view(),
                    "{name} layout, shape {shape:?}"
                );
            }
        }
    }

    #[test]
    fn an_unwritable_shape_is_an_error_naming_the_file() {
        let path = std::path::Path::new("/nonexistent/big.nii");
        let data = Array3::<f32>::zeros((40_000, 1, 1));
        let e = write(path, data.view(), &Affine::centred([1, 1, 1], [1.0; 3]), "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("big.nii") && e.contains("40000 voxels"), "{e}");
    }
}
