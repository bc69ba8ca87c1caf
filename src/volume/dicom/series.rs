//! One DICOM series: its slices in order, the grid they form, and the voxels.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use dicom::core::PrimitiveValue;
use dicom::dictionary_std::tags;
use dicom::object::{InMemDicomObject, OpenFileOptions, file::ReadPreamble};
use dicom::pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use ndarray::{Array3, Array4, ShapeBuilder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::DicomError;
use super::header::SliceHeader;
use crate::volume::{Affine, Geometry, Metadata, Source, Volume, hex};

/// The largest volume read, in voxels (8 GiB of f32).
const MAX_VOXELS: usize = 1 << 31;

/// Slices that share a SeriesInstanceUID, orientation, size, spacing and echo.
#[derive(Debug, Clone)]
pub struct Series {
    pub uid: String,
    /// 1 for the first (or only) part of a series split by dcm2niix's rules.
    pub part: usize,
    /// The UID, with "(part N)" when the series was split.
    pub label: String,
    pub slices: Vec<SliceHeader>,
}

impl Series {
    pub(crate) fn new(uid: String, part: usize, slices: Vec<SliceHeader>) -> Self {
        Series {
            label: uid.clone(),
            uid,
            part,
            slices,
        }
    }

    /// The folder holding the series' first file.
    pub fn folder(&self) -> PathBuf {
        self.slices
            .first()
            .and_then(|s| s.path.parent())
            .map(Path::to_owned)
            .unwrap_or_default()
    }

    fn error(&self, what: String) -> DicomError {
        DicomError::Series {
            series: self.label.clone(),
            folder: self.folder(),
            what,
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// One plane of the volume: which file, which frame in it, where it lies, its rescale.
#[derive(Debug, Clone)]
struct Plane {
    file: usize,
    frame: usize,
    position: [f64; 3],
    rescale: (f64, f64),
}

/// How the planes of a series stack up.
struct Layout {
    /// Planes in order along the slice normal.
    planes: Vec<Plane>,
    /// ImageOrientationPatient shared by all planes.
    orientation: [f64; 6],
    /// Step from one plane to the next (LPS mm).
    step: [f64; 3],
}

/// Orders the planes of a series along the slice normal and checks the spacing.
fn layout(series: &Series) -> Result<Layout, DicomError> {
    let first = &series.slices[0];
    let missing = |tag: &'static str, path: &Path| DicomError::MissingTag {
        path: path.to_owned(),
        tag,
    };
    let orientation = first
        .orientation
        .ok_or_else(|| missing("ImageOrientationPatient (0020,0037)", &first.path))?;
    let mut planes = Vec::new();
    for (file, s) in series.slices.iter().enumerate() {
        if !s.per_frame.is_empty() {
            if s.per_frame.len() != s.frames {
                return Err(series.error(format!(
                    "{}: {} per-frame functional groups for {} frames",
                    s.path.display(),
                    s.per_frame.len(),
                    s.frames
                )));
            }
            for (frame, f) in s.per_frame.iter().enumerate() {
                let position = f.position.ok_or_else(|| {
                    missing("PlanePositionSequence > ImagePositionPatient", &s.path)
                })?;
                planes.push(Plane {
                    file,
                    frame,
                    position,
                    rescale: f.rescale.unwrap_or(s.rescale),
                });
            }
        } else if s.frames > 1 {
            return Err(series.error(format!(
                "{}: {} frames without per-frame positions; only enhanced multi-frame objects are read as volumes",
                s.path.display(),
                s.frames
            )));
        } else {
            let position = s
                .position
                .ok_or_else(|| missing("ImagePositionPatient (0020,0032)", &s.path))?;
            planes.push(Plane {
                file,
                frame: 0,
                position,
                rescale: s.rescale,
            });
        }
    }
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row, col);
    let norm = dot(normal, normal).sqrt();
    if !(0.5..1.5).contains(&norm) || dot(row, col).abs() > 1e-3 {
        return Err(series.error(format!(
            "ImageOrientationPatient {orientation:?} is not two orthogonal unit vectors"
        )));
    }
    let normal = normal.map(|v| v / norm);
    let depth = |p: &Plane| dot(p.position, normal);
    planes.sort_by(|a, b| depth(a).total_cmp(&depth(b)).then(a.file.cmp(&b.file)));

    let n = planes.len();
    if n == 1 {
        let s = &series.slices[0];
        let step = s
            .spacing_between_slices
            .or(s.slice_thickness)
            .filter(|v| *v > 0.0)
            .unwrap_or(1.0);
        return Ok(Layout {
            planes,
            orientation,
            step: normal.map(|v| v * step),
        });
    }
    let gaps: Vec<f64> = planes
        .windows(2)
        .map(|w| depth(&w[1]) - depth(&w[0]))
        .collect();
    if let Some(i) = gaps.iter().position(|g| *g < 1e-3) {
        return Err(series.error(format!(
            "{} and {} lie at the same position ({:.3} mm along the normal): repeated or multi-volume acquisitions are not read as one 3-D volume",
            series.slices[planes[i].file].path.display(),
            series.slices[planes[i + 1].file].path.display(),
            depth(&planes[i])
        )));
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    for (i, g) in gaps.iter().enumerate() {
        if (g - median).abs() > 0.01 * median + 1e-3 {
            let what = if *g > 1.5 * median {
                format!(
                    "slice missing: {:.3} mm between {} and {}, expected {median:.3} mm",
                    g,
                    series.slices[planes[i].file].path.display(),
                    series.slices[planes[i + 1].file].path.display()
                )
            } else {
                format!(
                    "non-uniform slice spacing: {g:.3} mm at slice {}, expected {median:.3} mm",
                    i + 1
                )
            };
            return Err(series.error(what));
        }
    }
    let (a, b) = (planes[0].position, planes[n - 1].position);
    let step = std::array::from_fn(|d| (b[d] - a[d]) / (n - 1) as f64);
    Ok(Layout {
        planes,
        orientation,
        step,
    })
}

/// The RAS affine of a series: voxel `[i, j, k]` is column i, row j of plane k.
fn affine(first: [f64; 3], orientation: [f64; 6], spacing: [f64; 2], step: [f64; 3]) -> Affine {
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    // PixelSpacing is (between rows, between columns): i steps along a row by the column spacing.
    let di = row.map(|v| v * spacing[1]);
    let dj = col.map(|v| v * spacing[0]);
    let lps_to_ras = [-1.0, -1.0, 1.0];
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        m[r] = [
            di[r] * lps_to_ras[r],
            dj[r] * lps_to_ras[r],
            step[r] * lps_to_ras[r],
            first[r] * lps_to_ras[r],
        ];
    }
    m[3][3] = 1.0;
    Affine(m)
}

fn transfer_syntax_name(uid: &str) -> String {
    use dicom::encoding::TransferSyntaxIndex;
    dicom::transfer_syntax::TransferSyntaxRegistry
        .get(uid)
        .map_or_else(
            || "unknown transfer syntax".to_owned(),
            |ts| ts.name().to_owned(),
        )
}

/// One file's frames as stored values (before rescale), and the file's SHA-256.
struct Decoded {
    stored: Vec<f32>,
    sha256: [u8; 32],
}

/// Native (uncompressed) 8- and 16-bit pixel data converted straight from the element's
/// values, which is several times faster than the general decoder; `None` leaves anything
/// else (encapsulated, other bit depths, short data) to dicom-pixeldata. Signed samples with
/// BitsStored below BitsAllocated are sign-extended from BitsStored, as pydicom does.
fn native_samples(obj: &InMemDicomObject, s: &SliceHeader) -> Option<Vec<f32>> {
    let value = obj.element(tags::PIXEL_DATA).ok()?.value().primitive()?;
    let n = s.rows.checked_mul(s.cols)?.checked_mul(s.frames)?;
    let shift = 16 - s.bits_stored.clamp(1, 16) as u32;
    let word = |raw: u16| -> f32 {
        if s.signed {
            (((raw << shift) as i16) >> shift) as f32
        } else {
            raw as f32
        }
    };
    let big_endian = s.transfer_syntax == "1.2.840.10008.1.2.2";
    match (s.bits_allocated, value) {
        (16, PrimitiveValue::U16(v)) if v.len() >= n => {
            Some(v[..n].iter().map(|&x| word(x)).collect())
        }
        (16, PrimitiveValue::I16(v)) if v.len() >= n => {
            Some(v[..n].iter().map(|&x| word(x as u16)).collect())
        }
        (16, PrimitiveValue::U8(b)) if b.len() >= 2 * n => Some(
            b[..2 * n]
                .chunks_exact(2)
                .map(|c| {
                    word(if big_endian {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    })
                })
                .collect(),
        ),
        (8, PrimitiveValue::U8(b)) if b.len() >= n && s.bits_stored == 8 => Some(
            b[..n]
                .iter()
                .map(|&x| if s.signed { x as i8 as f32 } else { x as f32 })
                .collect(),
        ),
        _ => None,
    }
}

/// Decodes one file's frames.
fn decode_file(s: &SliceHeader) -> Result<Decoded, DicomError> {
    let bytes = std::fs::read(&s.path).map_err(|source| DicomError::Open {
        path: s.path.clone(),
        source: Box::new(source),
    })?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .from_reader(Cursor::new(bytes))
        .map_err(|source| DicomError::Open {
            path: s.path.clone(),
            source: Box::new(source),
        })?;
    let decode_error = |source: Box<dyn std::error::Error + Send + Sync>| DicomError::Decode {
        path: s.path.clone(),
        transfer_syntax: s.transfer_syntax.clone(),
        name: transfer_syntax_name(&s.transfer_syntax),
        source,
    };
    if !matches!(s.bits_allocated, 1 | 8 | 16) {
        return Err(decode_error(
            format!(
                "BitsAllocated {} is not supported, expected 1, 8 or 16",
                s.bits_allocated
            )
            .into(),
        ));
    }
    if let Some(stored) = native_samples(&obj, s) {
        return Ok(Decoded {
            stored,
            sha256: digest,
        });
    }
    // dicom-rs decoders can panic on corrupt encapsulated data (an RLE segment shorter than
    // its header says, for one); contain that and report it as a decoding error.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let decoded = obj
            .decode_pixel_data()
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
        decoded
            .to_vec_with_options::<f32>(
                &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
            )
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }));
    match decoded {
        Ok(Ok(stored)) => Ok(Decoded {
            stored,
            sha256: digest,
        }),
        Ok(Err(e)) => Err(decode_error(e)),
        Err(_) => Err(decode_error(
            "the decoder failed on corrupt pixel data".into(),
        )),
    }
}

/// The map from a stored value to its modality value: MONOCHROME1 inverted (so bright
/// means high signal, as in MONOCHROME2), then the rescale slope and intercept applied.
fn modality_map(s: &SliceHeader, (slope, inter): (f64, f64)) -> impl Fn(f64) -> f32 {
    let invert = s.photometric == "MONOCHROME1";
    let signed = s.signed;
    let bits = s.bits_stored.clamp(1, 32);
    let top = if signed {
        -1.0
    } else {
        ((1u64 << bits) - 1) as f64
    };
    // A codestream that says unsigned under PixelRepresentation 1 (seen in JPEG 2000 files):
    // reinterpret as two's complement of BitsStored bits, as pydicom does.
    let max_signed = ((1u64 << (bits - 1)) - 1) as f64;
    let wrap = (1u64 << bits) as f64;
    move |v| {
        let v = if signed && v > max_signed {
            v - wrap
        } else {
            v
        };
        let v = if invert { top - v } else { v };
        (v * slope + inter) as f32
    }
}

/// Stored values to modality values (see [`modality_map`]).
fn modality_values(s: &SliceHeader, rescale: (f64, f64), stored: &[f32], out: &mut [f32]) {
    let map = modality_map(s, rescale);
    for (o, &v) in out.iter_mut().zip(stored) {
        *o = map(v as f64);
    }
}

/// The frames of one DICOM image file with the modality transform applied, without any
/// geometry: `[column, row, frame]`, as pydicom's `apply_modality_lut(ds.pixel_array, ds)`
/// (plus MONOCHROME1 inversion).
pub fn read_frames(path: &Path) -> Result<(Array3<f32>, SliceHeader), DicomError> {
    let header = super::read_header(path)?;
    if header.samples_per_pixel != 1 {
        return Err(DicomError::Invalid {
            path: path.to_owned(),
            what: format!(
                "{} samples per pixel: colour images are not read",
                header.samples_per_pixel
            ),
        });
    }
    let raw = decode_file(&header)?.stored;
    let plane = header.rows * header.cols;
    if raw.len() != plane * header.frames {
        return Err(DicomError::Invalid {
            path: path.to_owned(),
            what: format!(
                "{} decoded samples, expected {} x {} x {} frames",
                raw.len(),
                header.rows,
                header.cols,
                header.frames
            ),
        });
    }
    let mut values = vec![0f32; raw.len()];
    for (f, (out, src)) in values.chunks_mut(plane).zip(raw.chunks(plane)).enumerate() {
        let rescale = header
            .per_frame
            .get(f)
            .and_then(|p| p.rescale)
            .unwrap_or(header.rescale);
        modality_values(&header, rescale, src, out);
    }
    let data = Array3::from_shape_vec((header.cols, header.rows, header.frames).f(), values)
        .map_err(|e| DicomError::Invalid {
            path: path.to_owned(),
            what: format!("voxel count does not match the image size: {e}"),
        })?;
    Ok((data, header))
}

/// The pixel bytes of a native little-endian file whose PixelData is its last element, found
/// without parsing: the element header just before the last `len` bytes must be PixelData
/// (7FE0,0010) with exactly that length. `None` when the file is laid out otherwise.
fn trailing_pixels<'a>(bytes: &'a [u8], s: &SliceHeader) -> Option<&'a [u8]> {
    let explicit = match s.transfer_syntax.as_str() {
        "1.2.840.10008.1.2.1" => true,
        "1.2.840.10008.1.2" => false,
        _ => return None,
    };
    if !matches!(s.bits_allocated, 8 | 16) || s.samples_per_pixel != 1 {
        return None;
    }
    let len = s
        .rows
        .checked_mul(s.cols)?
        .checked_mul(s.frames)?
        .checked_mul(s.bits_allocated as usize / 8)?;
    let padded = len + len % 2;
    let start = bytes.len().checked_sub(padded)?;
    let tag = [0xE0, 0x7F, 0x10, 0x00];
    let length_ok = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            == Some(padded)
    };
    let header_ok = if explicit {
        let h = start.checked_sub(12)?;
        bytes[h..h + 4] == tag
            && matches!(&bytes[h + 4..h + 6], b"OW" | b"OB")
            && bytes[h + 6..h + 8] == [0, 0]
            && length_ok(h + 8)
    } else {
        let h = start.checked_sub(8)?;
        bytes[h..h + 4] == tag && length_ok(h + 4)
    };
    header_ok.then(|| &bytes[start..start + len])
}

/// Little-endian stored samples to modality values, straight into `out`.
fn modality_from_bytes(s: &SliceHeader, rescale: (f64, f64), pixels: &[u8], out: &mut [f32]) {
    let map = modality_map(s, rescale);
    let shift = 16 - s.bits_stored.clamp(1, 16) as u32;
    if s.bits_allocated == 16 {
        for (o, c) in out.iter_mut().zip(pixels.chunks_exact(2)) {
            let raw = u16::from_le_bytes([c[0], c[1]]);
            let v = if s.signed {
                ((raw << shift) as i16 >> shift) as f64
            } else {
                raw as f64
            };
            *o = map(v);
        }
    } else {
        for (o, &b) in out.iter_mut().zip(pixels) {
            *o = map(if s.signed { b as i8 as f64 } else { b as f64 });
        }
    }
}

/// Fills one plane of a single-frame file: the fast path when the file's pixel data can be
/// taken from its end, else the full decoder. Returns the file's SHA-256.
fn read_plane(
    s: &SliceHeader,
    rescale: (f64, f64),
    out: &mut [f32],
) -> Result<[u8; 32], DicomError> {
    let bytes = std::fs::read(&s.path).map_err(|source| DicomError::Open {
        path: s.path.clone(),
        source: Box::new(source),
    })?;
    if let Some(pixels) = trailing_pixels(&bytes, s) {
        modality_from_bytes(s, rescale, pixels, out);
        return Ok(Sha256::digest(&bytes).into());
    }
    drop(bytes);
    let decoded = decode_file(s)?;
    if decoded.stored.len() != out.len() {
        return Err(DicomError::Invalid {
            path: s.path.clone(),
            what: format!(
                "{} decoded samples, expected {} x {}",
                decoded.stored.len(),
                s.rows,
                s.cols
            ),
        });
    }
    modality_values(s, rescale, &decoded.stored, out);
    Ok(decoded.sha256)
}

/// Reads the voxels of a series into a [`Volume`] on its RAS grid.
pub fn read_series(series: &Series) -> Result<Volume, DicomError> {
    let Some(first) = series.slices.first() else {
        return Err(series.error("no images".to_owned()));
    };
    if first.samples_per_pixel != 1 {
        return Err(series.error(format!(
            "{} samples per pixel ({}): colour images are not read as volumes",
            first.samples_per_pixel, first.photometric
        )));
    }
    let spacing = first.pixel_spacing.ok_or_else(|| DicomError::MissingTag {
        path: first.path.clone(),
        tag: "PixelSpacing (0028,0030)",
    })?;
    if spacing.iter().any(|v| *v <= 0.0) {
        return Err(series.error(format!("PixelSpacing {spacing:?} must be positive")));
    }
    let Layout {
        planes,
        orientation,
        step,
    } = layout(series)?;
    let (rows, cols) = (first.rows, first.cols);
    let plane_len = rows * cols;

    // A corrupt header can claim an absurd size; refuse it before allocating.
    let voxels = plane_len
        .checked_mul(planes.len())
        .filter(|&n| n <= MAX_VOXELS)
        .ok_or_else(|| {
            series.error(format!(
                "{rows} x {cols} x {} voxels is more than medsynth reads ({MAX_VOXELS})",
                planes.len()
            ))
        })?;
    let mut values = vec![0f32; voxels];
    let digests = if series
        .slices
        .iter()
        .all(|s| s.frames == 1 && s.per_frame.is_empty())
    {
        // One plane per file: read, hash and convert each file straight into its plane.
        values
            .par_chunks_mut(plane_len)
            .zip(planes.par_iter())
            .map(|(out, p)| read_plane(&series.slices[p.file], p.rescale, out))
            .collect::<Result<Vec<[u8; 32]>, DicomError>>()?
    } else {
        let files = series
            .slices
            .par_iter()
            .map(decode_file)
            .collect::<Result<Vec<Decoded>, DicomError>>()?;
        for (s, d) in series.slices.iter().zip(&files) {
            if d.stored.len() != plane_len * s.frames {
                return Err(DicomError::Invalid {
                    path: s.path.clone(),
                    what: format!(
                        "{} decoded samples, expected {} x {} x {} frames",
                        d.stored.len(),
                        rows,
                        cols,
                        s.frames
                    ),
                });
            }
        }
        values
            .par_chunks_mut(plane_len)
            .zip(planes.par_iter())
            .for_each(|(out, p)| {
                let src = &files[p.file].stored[p.frame * plane_len..(p.frame + 1) * plane_len];
                modality_values(&series.slices[p.file], p.rescale, src, out);
            });
        files.iter().map(|d| d.sha256).collect()
    };
    // DICOM frames are row-major (column index fastest), which is [i, j, k] in Fortran order.
    let data = Array4::from_shape_vec((cols, rows, planes.len(), 1).f(), values)
        .map_err(|e| series.error(format!("voxel count does not match the grid: {e}")))?;
    let mut digests = digests;
    digests.sort();
    let mut hasher = Sha256::new();
    for d in &digests {
        hasher.update(d);
    }
    let geometry = Geometry {
        shape: [cols, rows, planes.len()],
        affine: affine(planes[0].position, orientation, spacing, step),
    };
    Ok(Volume {
        data,
        geometry,
        source: Source {
            path: series.folder(),
            sha256: hex(&hasher.finalize()),
            series_uid: Some(series.uid.clone()),
        },
        meta: Metadata {
            format: "dicom".to_owned(),
            stored_type: format!(
                "{}int{}",
                if first.signed { "" } else { "u" },
                first.bits_stored
            ),
            modality: first.modality.clone(),
            series_description: first.series_description.clone(),
            repetition_time_ms: first.repetition_time_ms,
            echo_time_ms: first.echo_time_ms,
            inversion_time_ms: first.inversion_time_ms,
            flip_angle_deg: first.flip_angle_deg,
            field_strength_t: first.field_strength_t,
            notes: Vec::new(),
        },
    })
}
