//! Reading NIfTI volumes into [`Volume`]s.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::{Array4, ShapeBuilder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::NiftiError;
use super::header::{self, Header, NiftiVersion, datatype_info};
use crate::volume::{Affine, Geometry, Metadata, Source, Volume, hex, orientation_code};

fn is_gz(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn read_file(path: &Path) -> Result<Vec<u8>, NiftiError> {
    std::fs::read(path).map_err(|source| NiftiError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Decompresses gzip data, preallocating from the size the gzip trailer records.
fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>, NiftiError> {
    let hint = bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes.get(at..))
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize);
    let mut out = Vec::with_capacity(hint.min(1 << 32));
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|source| NiftiError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(out)
}

fn content(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, NiftiError> {
    if is_gz(&raw) {
        gunzip(&raw, path)
    } else {
        Ok(raw)
    }
}

/// The image file of a `.hdr` header: `.img`, or `.img.gz` when that exists.
fn image_path(hdr: &Path) -> PathBuf {
    let name = hdr
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".hdr");
    let plain = hdr.with_file_name(format!("{stem}.img"));
    let gz = hdr.with_file_name(format!("{stem}.img.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

/// Reads only the header of a NIfTI file (decompressing as little as needed).
pub fn read_header(path: &Path) -> Result<Header, NiftiError> {
    let file = std::fs::File::open(path).map_err(|source| NiftiError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut head = Vec::with_capacity(540);
    let mut magic = [0u8; 2];
    let mut reader = std::io::BufReader::new(file);
    let io = |source| NiftiError::Read {
        path: path.to_owned(),
        source,
    };
    let n = reader.read(&mut magic).map_err(io)?;
    let chained = std::io::Read::chain(&magic[..n], reader);
    if is_gz(&magic[..n]) {
        MultiGzDecoder::new(chained)
            .take(540)
            .read_to_end(&mut head)
            .map_err(io)?;
    } else {
        chained.take(540).read_to_end(&mut head).map_err(io)?;
    }
    header::parse(&head, path)
}

/// Checks that an affine can map voxels to the world: finite, with independent axes.
fn check_affine(a: &Affine, from: &str, path: &Path) -> Result<(), NiftiError> {
    let m = &a.0;
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return Err(NiftiError::BadHeader {
            path: path.to_owned(),
            field: if from == "sform" {
                "srow_x/srow_y/srow_z"
            } else {
                "quatern/qoffset/pixdim"
            },
            value: format!("{:?}", &m[..3]),
            expected: format!("a finite {from} affine"),
        });
    }
    if a.determinant() == 0.0 {
        return Err(NiftiError::BadHeader {
            path: path.to_owned(),
            field: if from == "sform" {
                "srow_x/srow_y/srow_z"
            } else {
                "pixdim"
            },
            value: format!("{:?}", &m[..3]),
            expected: format!("a {from} affine with independent axes (non-zero determinant)"),
        });
    }
    Ok(())
}

/// Converts stored values (in file byte order) to `f32`, in parallel.
fn decode(bytes: &[u8], datatype: i32, little_endian: bool, out: &mut [f32]) {
    macro_rules! convert {
        ($t:ty) => {{
            const N: usize = std::mem::size_of::<$t>();
            out.par_chunks_mut(1 << 16)
                .zip(bytes.par_chunks(N << 16))
                .for_each(|(o, b)| {
                    for (v, c) in o.iter_mut().zip(b.chunks_exact(N)) {
                        let a: [u8; N] = c.try_into().unwrap_or([0; N]);
                        let x = if little_endian {
                            <$t>::from_le_bytes(a)
                        } else {
                            <$t>::from_be_bytes(a)
                        };
                        *v = x as f32;
                    }
                })
        }};
    }
    match datatype {
        2 => convert!(u8),
        4 => convert!(i16),
        8 => convert!(i32),
        16 => convert!(f32),
        64 => convert!(f64),
        256 => convert!(i8),
        512 => convert!(u16),
        768 => convert!(u32),
        1024 => convert!(i64),
        1280 => convert!(u64),
        _ => {}
    }
}

/// Reads a NIfTI-1 or NIfTI-2 volume (`.nii`, `.nii.gz`, or a `.hdr` with its `.img`).
///
/// # Shapes
/// `data` is `[i, j, k, frames]` in Fortran (NIfTI) memory order; dimensions 4 to 7 are
/// folded into `frames`.
pub fn read(path: &Path) -> Result<Volume, NiftiError> {
    let raw = read_file(path)?;
    // Hashing and decompressing are independent: do them side by side.
    let (sha256, inflated) = rayon::join(
        || hex(&Sha256::digest(&raw)),
        || {
            if is_gz(&raw) {
                gunzip(&raw, path).map(Some)
            } else {
                Ok(None)
            }
        },
    );
    let bytes = inflated?.unwrap_or(raw);
    let h = header::parse(&bytes, path)?;
    let (type_name, size) =
        datatype_info(h.datatype).map_err(|name| NiftiError::UnsupportedType {
            path: path.to_owned(),
            code: h.datatype,
            name,
        })?;
    let (shape, frames) = h.grid();
    let count = shape
        .iter()
        .chain(std::iter::once(&frames))
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size).map(|b| (n, b)));
    let Some((voxels, nbytes)) = count else {
        return Err(NiftiError::BadHeader {
            path: path.to_owned(),
            field: "dim",
            value: format!("{:?}", &h.dim[..h.ndim]),
            expected: "a size that fits in memory".to_owned(),
        });
    };
    let image;
    let (data_bytes, data_path): (&[u8], &Path) = if h.single_file {
        (&bytes, path)
    } else {
        let img = image_path(path);
        image = content(read_file(&img)?, &img)?;
        (&image, path)
    };
    let offset = h.vox_offset as u64;
    let available = (data_bytes.len() as u64).saturating_sub(offset);
    if available < nbytes as u64 {
        return Err(NiftiError::Truncated {
            path: data_path.to_owned(),
            offset,
            expected: nbytes as u64,
            actual: available,
        });
    }
    let start = offset as usize;
    let stored = &data_bytes[start..start + nbytes];
    let mut values = vec![0f32; voxels];
    decode(stored, h.datatype, h.little_endian, &mut values);
    if let Some((slope, inter)) = h.scaling() {
        values
            .par_iter_mut()
            .for_each(|v| *v = (*v as f64 * slope + inter) as f32);
    }
    let (affine, from) = h.best_affine();
    check_affine(&affine, from, path)?;
    let (_, _, repairs) = h.repaired_pixdim();
    let mut notes: Vec<String> = repairs
        .into_iter()
        .map(|note| format!("{note} (as nibabel does)"))
        .collect();
    if let Some(mm) = h.sform_qform_disagreement(shape) {
        notes.push(format!(
            "the sform ({}) and the qform ({}) disagree by up to {mm:.3} mm at the grid's corners; using the sform, as nibabel does",
            orientation_code(&h.sform()),
            orientation_code(&h.qform()),
        ));
    }
    for note in &notes {
        tracing::warn!(file = %path.display(), "{note}");
    }
    let data = Array4::from_shape_vec((shape[0], shape[1], shape[2], frames).f(), values).map_err(
        |_| NiftiError::BadHeader {
            path: path.to_owned(),
            field: "dim",
            value: format!("{:?}", &h.dim[..h.ndim]),
            expected: "dimensions matching the voxel count".to_owned(),
        },
    )?;
    Ok(Volume {
        data,
        geometry: Geometry { shape, affine },
        source: Source {
            path: path.to_owned(),
            sha256,
            series_uid: None,
        },
        meta: Metadata {
            format: match h.version {
                NiftiVersion::One => "nifti1",
                NiftiVersion::Two => "nifti2",
            }
            .to_owned(),
            stored_type: type_name.to_owned(),
            notes,
            ..Metadata::default()
        },
    })
}
