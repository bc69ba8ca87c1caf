//! One DICOM series: its slices in order, the grid they form, and the voxels.

use std::path::{Path, PathBuf};

use dicom::core::PrimitiveValue;
use dicom::dictionary_std::tags;
use dicom::object::InMemDicomObject;
use dicom::pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, PlanarConfiguration};
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
    /// Planes in volume order: every position along the slice normal of the first volume,
    /// then of the second (a 4-D series has several planes at each position).
    planes: Vec<Plane>,
    /// Planes per volume.
    slices: usize,
    /// Volumes (1 for a 3-D series).
    volumes: usize,
    /// ImageOrientationPatient shared by all planes.
    orientation: [f64; 6],
    /// Step from one plane to the next (LPS mm).
    step: [f64; 3],
    /// What was assumed because the files do not say it.
    assumed: Vec<String>,
}

/// The default slice step where positions do not give one: SpacingBetweenSlices, else
/// SliceThickness, else 1 mm.
fn nominal_step(s: &SliceHeader) -> f64 {
    s.spacing_between_slices
        .or(s.slice_thickness)
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
}

/// Where frame `frame` of a classic (not enhanced) object lies: its ImagePositionPatient
/// for a single frame; for several frames that position moved along the normal by
/// GridFrameOffsetVector (RT Dose), else by the nominal step per frame (as dcm2niix stacks
/// them; [`layout`] says so). `None` without a position or orientation.
fn classic_position(s: &SliceHeader, frame: usize) -> Option<[f64; 3]> {
    let origin = s.position?;
    if s.frames == 1 {
        return Some(origin);
    }
    let o = s.orientation?;
    let normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let along = match &s.frame_offsets {
        // Relative offsets start at 0; absolute ones are positions along the normal.
        Some(offsets) if offsets[0] == 0.0 => offsets[frame],
        Some(offsets) => offsets[frame] - dot(origin, normal),
        None => nominal_step(s) * frame as f64,
    };
    Some(std::array::from_fn(|d| origin[d] + normal[d] * along))
}

/// A plane and the position its file gives it, if any.
type Placed = (Plane, Option<[f64; 3]>);

/// Every plane of the series with its position, in file and frame order; `None` positions
/// where a file does not give one.
fn planes_of(series: &Series) -> Result<Vec<Placed>, DicomError> {
    let mut planes = Vec::new();
    for (file, s) in series.slices.iter().enumerate() {
        if !s.per_frame.is_empty() {
            if s.per_frame.len() < s.frames {
                return Err(series.error(format!(
                    "{}: {} per-frame functional groups for {} frames",
                    s.path.display(),
                    s.per_frame.len(),
                    s.frames
                )));
            }
            if s.per_frame.len() > s.frames {
                tracing::warn!(file = %s.path.display(), "{} per-frame functional groups for {} frames: the first {} used", s.per_frame.len(), s.frames, s.frames);
            }
            for (frame, f) in s.per_frame.iter().take(s.frames).enumerate() {
                if let (Some(a), Some(b)) = (f.orientation, s.orientation)
                    && a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-4)
                {
                    return Err(series.error(format!(
                        "{}: frame {} lies in orientation {a:?}, frame 1 in {b:?}; a multi-planar object is not one volume",
                        s.path.display(),
                        frame + 1
                    )));
                }
                let plane = Plane {
                    file,
                    frame,
                    position: [0.0; 3],
                    rescale: f.rescale.unwrap_or(s.rescale),
                };
                planes.push((plane, f.position));
            }
        } else {
            for frame in 0..s.frames {
                let plane = Plane {
                    file,
                    frame,
                    position: [0.0; 3],
                    rescale: s.rescale,
                };
                planes.push((plane, classic_position(s, frame)));
            }
        }
    }
    Ok(planes)
}

/// Orders the planes of a series along the slice normal (and into volumes where several
/// lie at each position) and checks the spacing. Where the files give no orientation or no
/// positions, it assumes them as dcm2niix does and says so in `assumed`.
fn layout(series: &Series) -> Result<Layout, DicomError> {
    let first = &series.slices[0];
    let mut assumed = Vec::new();
    let orientation = first.orientation.unwrap_or_else(|| {
        assumed.push(
            "no ImageOrientationPatient (0020,0037): rows along +x (left) and columns along +y (posterior) assumed".to_owned(),
        );
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    });
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

    let found = planes_of(series)?;
    if let Some(s) = series.slices.iter().find(|s| {
        s.frames > 1
            && s.per_frame.is_empty()
            && s.position.is_some()
            && s.orientation.is_some()
            && s.frame_offsets.is_none()
    }) {
        assumed.push(format!(
            "{}: {} frames without per-frame positions: stacked {} mm apart from its ImagePositionPatient",
            s.path.display(),
            s.frames,
            nominal_step(s)
        ));
    }
    let missing = found.iter().filter(|(_, p)| p.is_none()).count();
    if missing > 0 && missing < found.len() {
        let (plane, _) = found.iter().find(|(_, p)| p.is_none()).expect("counted");
        return Err(DicomError::MissingTag {
            path: series.slices[plane.file].path.clone(),
            tag: "ImagePositionPatient (0020,0032), which other files of its series have",
        });
    }
    if missing > 0 {
        // No positions at all: planes stacked in instance order from the origin.
        let step = nominal_step(first);
        let mut planes: Vec<Plane> = found.into_iter().map(|(p, _)| p).collect();
        planes.sort_by_key(|p| (series.slices[p.file].instance_number, p.file, p.frame));
        for (k, p) in planes.iter_mut().enumerate() {
            p.position = normal.map(|v| v * step * k as f64);
        }
        assumed.push(format!(
            "no ImagePositionPatient (0020,0032): {} plane(s) stacked in instance order from the origin, {step} mm apart",
            planes.len()
        ));
        return Ok(Layout {
            slices: planes.len(),
            volumes: 1,
            planes,
            orientation,
            step: normal.map(|v| v * step),
            assumed,
        });
    }
    let mut planes: Vec<Plane> = found
        .into_iter()
        .map(|(mut p, at)| {
            p.position = at.expect("every plane has a position");
            p
        })
        .collect();
    let depth = |p: &Plane| dot(p.position, normal);
    let instance = |p: &Plane| series.slices[p.file].instance_number;
    planes.sort_by(|a, b| {
        depth(a)
            .total_cmp(&depth(b))
            .then(instance(a).cmp(&instance(b)))
            .then(a.file.cmp(&b.file))
            .then(a.frame.cmp(&b.frame))
    });
    // Planes at one position (within 1e-3 mm) belong to successive volumes.
    let mut positions: Vec<Vec<Plane>> = Vec::new();
    for p in planes {
        match positions.last_mut() {
            Some(at) if (depth(&p) - depth(&at[0])).abs() < 1e-3 => at.push(p),
            _ => positions.push(vec![p]),
        }
    }
    let volumes = positions[0].len();
    if let Some(uneven) = positions.iter().find(|at| at.len() != volumes) {
        return Err(series.error(format!(
            "{} plane(s) lie at {:.3} mm along the normal but {volumes} at {:.3} mm (e.g. {}): neither one 3-D volume nor a regular 4-D series",
            uneven.len(),
            depth(&uneven[0]),
            depth(&positions[0][0]),
            series.slices[uneven[0].file].path.display()
        )));
    }
    let n = positions.len();
    let step = if n == 1 {
        normal.map(|v| v * nominal_step(first))
    } else {
        let gaps: Vec<f64> = positions
            .windows(2)
            .map(|w| depth(&w[1][0]) - depth(&w[0][0]))
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        for (i, g) in gaps.iter().enumerate() {
            if (g - median).abs() > 0.01 * median + 1e-3 {
                let what = if *g > 1.5 * median {
                    format!(
                        "slice missing: {:.3} mm between {} and {}, expected {median:.3} mm",
                        g,
                        series.slices[positions[i][0].file].path.display(),
                        series.slices[positions[i + 1][0].file].path.display()
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
        let (a, b) = (positions[0][0].position, positions[n - 1][0].position);
        std::array::from_fn(|d| (b[d] - a[d]) / (n - 1) as f64)
    };
    let mut ordered = Vec::with_capacity(n * volumes);
    for t in 0..volumes {
        ordered.extend(positions.iter().map(|at| at[t].clone()));
    }
    Ok(Layout {
        planes: ordered,
        slices: n,
        volumes,
        orientation,
        step,
        assumed,
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
    let n = s
        .rows
        .checked_mul(s.cols)?
        .checked_mul(s.frames)?
        .checked_mul(s.samples_per_pixel as usize)?;
    let shift = 16 - s.bits_stored.clamp(1, 16) as u32;
    let word = |raw: u16| -> f32 {
        if s.signed {
            (((raw << shift) as i16) >> shift) as f32
        } else {
            raw as f32
        }
    };
    let big_endian = s.transfer_syntax == "1.2.840.10008.1.2.2";
    let shift32 = 32 - (s.bits_stored as u32).clamp(1, 32);
    let word32 = |raw: &[u32]| -> Vec<f32> {
        raw.iter()
            .map(|&r| {
                if s.signed {
                    (((r << shift32) as i32) >> shift32) as f32
                } else {
                    (r & (u32::MAX >> shift32)) as f32
                }
            })
            .collect()
    };
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
        (32, PrimitiveValue::U32(v)) if v.len() >= n => Some(word32(&v[..n])),
        (32, PrimitiveValue::I32(v)) if v.len() >= n => Some(word32(
            &v[..n].iter().map(|&x| x as u32).collect::<Vec<_>>(),
        )),
        // 32-bit samples read as 16-bit words (OW): two words per sample, in file order.
        (32, PrimitiveValue::U16(v)) if v.len() >= 2 * n => Some(word32(
            &v[..2 * n]
                .chunks_exact(2)
                .map(|w| {
                    if big_endian {
                        (w[0] as u32) << 16 | w[1] as u32
                    } else {
                        (w[1] as u32) << 16 | w[0] as u32
                    }
                })
                .collect::<Vec<_>>(),
        )),
        (32, PrimitiveValue::U8(b)) if b.len() >= 4 * n => Some(word32(
            &b[..4 * n]
                .chunks_exact(4)
                .map(|c| {
                    let c = [c[0], c[1], c[2], c[3]];
                    if big_endian {
                        u32::from_be_bytes(c)
                    } else {
                        u32::from_le_bytes(c)
                    }
                })
                .collect::<Vec<_>>(),
        )),
        (8, PrimitiveValue::U8(b)) if b.len() >= n && s.bits_stored == 8 => Some(
            b[..n]
                .iter()
                .map(|&x| if s.signed { x as i8 as f32 } else { x as f32 })
                .collect(),
        ),
        _ => None,
    }
}

/// Little-endian samples of `bits` (8, 16 or 32) bits to values: signed ones sign-extended
/// from BitsStored, unsigned ones masked to it. `None` for another sample size.
fn samples_from_bytes(
    bytes: &[u8],
    bits: u16,
    stored: u16,
    signed: bool,
    count: usize,
) -> Option<Vec<f32>> {
    let extend = |raw: u32, width: u32| -> f32 {
        let shift = 32 - (stored as u32).clamp(1, width);
        if signed {
            (((raw << shift) as i32) >> shift) as f32
        } else {
            (raw & (u32::MAX >> shift)) as f32
        }
    };
    match bits {
        // Already one sample per byte.
        1 if bytes.len() == count => Some(bytes.iter().map(|&b| (b & 1) as f32).collect()),
        // Bits packed across the whole pixel data, least significant first (not per frame).
        1 if bytes.len() * 8 >= count => Some(
            (0..count)
                .map(|i| ((bytes[i / 8] >> (i % 8)) & 1) as f32)
                .collect(),
        ),
        8 => Some(bytes.iter().map(|&b| extend(b as u32, 8)).collect()),
        16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| extend(u16::from_le_bytes([c[0], c[1]]) as u32, 16))
                .collect(),
        ),
        32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| extend(u32::from_le_bytes([c[0], c[1], c[2], c[3]]), 32))
                .collect(),
        ),
        _ => None,
    }
}

/// Colour samples stored plane by plane (RRR...GGG...BBB per frame) to pixel-interleaved.
fn interleave(planar: &[f32], frame_pixels: usize) -> Vec<f32> {
    let mut out = vec![0f32; planar.len()];
    for (src, dst) in planar
        .chunks(3 * frame_pixels)
        .zip(out.chunks_mut(3 * frame_pixels))
    {
        for (p, px) in dst.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = src.get(c * frame_pixels + p).copied().unwrap_or(0.0);
            }
        }
    }
    out
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Decodes encapsulated (or otherwise unusual) pixel data with dicom-pixeldata: stored
/// values, colour pixel-interleaved.
fn decode_with_pixeldata(
    obj: &dicom::object::DefaultDicomObject,
    s: &SliceHeader,
) -> Result<Vec<f32>, BoxError> {
    let boxed = |e: dicom::pixeldata::Error| Box::new(e) as BoxError;
    if s.transfer_syntax == RLE_LOSSLESS && s.bits_allocated == 32 {
        return decode_rle32(obj, s);
    }
    let decoded = obj.decode_pixel_data().map_err(boxed)?;
    let count = s.rows * s.cols * s.frames * s.samples_per_pixel as usize;
    let stored = match samples_from_bytes(
        decoded.data(),
        decoded.bits_allocated(),
        s.bits_stored,
        s.signed,
        count,
    ) {
        Some(v) => v,
        None => decoded
            .to_vec_with_options::<f32>(
                &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
            )
            .map_err(boxed)?,
    };
    let planar = decoded.planar_configuration() == PlanarConfiguration::PixelFirst;
    Ok(if decoded.samples_per_pixel() == 3 && planar {
        interleave(&stored, s.rows * s.cols)
    } else {
        stored
    })
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// RLE Lossless with 32-bit samples, which dicom-pixeldata does not decode: one fragment per
/// frame through [`super::rle`].
fn decode_rle32(
    obj: &dicom::object::DefaultDicomObject,
    s: &SliceHeader,
) -> Result<Vec<f32>, BoxError> {
    let fragments = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| Box::new(e) as BoxError)?
        .value()
        .fragments()
        .ok_or("RLE pixel data is not encapsulated")?;
    if fragments.len() < s.frames {
        return Err(format!("{} RLE fragments for {} frames", fragments.len(), s.frames).into());
    }
    let samples = s.samples_per_pixel as usize;
    let mut out = Vec::with_capacity(s.rows * s.cols * samples * s.frames);
    for fragment in fragments.iter().take(s.frames) {
        let bytes = super::rle::decode_frame(fragment, s.rows * s.cols, samples, 4)?;
        out.extend(
            samples_from_bytes(&bytes, 32, s.bits_stored, s.signed, 0).ok_or("32-bit samples")?,
        );
    }
    Ok(out)
}

/// Decodes one file's frames: stored values (before rescale), colour pixel-interleaved.
fn decode_file(s: &SliceHeader) -> Result<Decoded, DicomError> {
    let bytes = std::fs::read(&s.path).map_err(|source| DicomError::Open {
        path: s.path.clone(),
        source: Box::new(source),
    })?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let obj = super::header::open_bytes(&bytes, &s.path, None)?;
    drop(bytes);
    let decode_error = |source: BoxError| DicomError::Decode {
        path: s.path.clone(),
        transfer_syntax: s.transfer_syntax.clone(),
        name: transfer_syntax_name(&s.transfer_syntax),
        source,
    };
    if !matches!(s.bits_allocated, 1 | 8 | 16 | 32) {
        return Err(decode_error(
            format!(
                "BitsAllocated {} is not supported, expected 1, 8, 16 or 32",
                s.bits_allocated
            )
            .into(),
        ));
    }
    if let Some(stored) = native_samples(&obj, s) {
        let stored = if s.samples_per_pixel == 3 && s.planar {
            interleave(&stored, s.rows * s.cols)
        } else {
            stored
        };
        return Ok(Decoded {
            stored,
            sha256: digest,
        });
    }
    // dicom-rs decoders can panic on corrupt encapsulated data (an RLE segment shorter than
    // its header says, for one); contain that and report it as a decoding error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_with_pixeldata(&obj, s)
    })) {
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
fn modality_map(s: &SliceHeader, (slope, inter): (f64, f64)) -> impl Fn(f64) -> f32 + use<'_> {
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
        match &s.modality_lut {
            // A table instead of the rescale: values outside it take its end values.
            Some((first, table)) => {
                let at = (v - first).clamp(0.0, (table.len() - 1) as f64) as usize;
                table[at] as f32
            }
            None => (v * slope + inter) as f32,
        }
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

/// Pixel-interleaved colour samples to 8-bit RGB: samples wider than 8 bits keep their top
/// 8 bits (NIfTI RGB24 holds a byte per channel), and YBR_FULL is converted to RGB with the
/// full-range ITU-R BT.601 matrix, as pydicom converts it. (Decoders already give RGB for
/// JPEG.)
fn colour(s: &SliceHeader, src: &[f32], out: &mut [f32]) {
    let shift = (s.bits_stored.clamp(8, 32) - 8) as i32;
    let scale = 2f32.powi(-shift);
    let ybr = s.photometric == "YBR_FULL" && !s.transfer_syntax.starts_with("1.2.840.10008.1.2.4.");
    for (o, i) in out.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
        let px = [0, 1, 2].map(|c| (i[c] * scale).floor());
        let rgb = if ybr {
            let (y, cb, cr) = (px[0], px[1] - 128.0, px[2] - 128.0);
            [
                y + 1.402 * cr,
                y - 0.344136 * cb - 0.714136 * cr,
                y + 1.772 * cb,
            ]
        } else {
            px
        };
        for (o, v) in o.iter_mut().zip(rgb) {
            *o = if ybr { v.round().clamp(0.0, 255.0) } else { v };
        }
    }
}

/// PixelSpacing, else ImagerPixelSpacing, else 1 x 1 mm (said in `assumed`).
fn pixel_spacing(series: &Series, assumed: &mut Vec<String>) -> Result<[f64; 2], DicomError> {
    let first = &series.slices[0];
    let spacing = match (first.pixel_spacing, first.imager_pixel_spacing) {
        (Some(s), _) => s,
        (None, Some(s)) => {
            assumed.push(format!(
                "no PixelSpacing (0028,0030): ImagerPixelSpacing {s:?} mm used (at the detector, not corrected for magnification)"
            ));
            s
        }
        (None, None) => {
            assumed.push("no PixelSpacing (0028,0030): 1 x 1 mm pixels assumed".to_owned());
            [1.0, 1.0]
        }
    };
    if spacing.iter().any(|v| *v <= 0.0) {
        return Err(series.error(format!("PixelSpacing {spacing:?} must be positive")));
    }
    Ok(spacing)
}

/// Reads the voxels of a series into a [`Volume`] on its RAS grid: `[column, row, plane,
/// volume]` for a greyscale series (several volumes where several planes lie at each
/// position: diffusion, dynamic), `[column, row, plane, channel]` with `meta.rgb` for a
/// colour one. Geometry the files do not give is assumed as dcm2niix does, logged as a
/// warning and listed in `meta.assumed_geometry`, so a pipeline can refuse the volume.
pub fn read_series(series: &Series) -> Result<Volume, DicomError> {
    let Some(first) = series.slices.first() else {
        return Err(series.error("no images".to_owned()));
    };
    let rgb = first.samples_per_pixel == 3;
    if !rgb && first.samples_per_pixel != 1 {
        return Err(series.error(format!(
            "{} samples per pixel ({}): expected 1 (greyscale) or 3 (colour)",
            first.samples_per_pixel, first.photometric
        )));
    }
    let Layout {
        planes,
        slices,
        volumes,
        orientation,
        step,
        mut assumed,
    } = layout(series)?;
    if rgb && volumes > 1 {
        return Err(series.error(format!(
            "a colour series with {volumes} planes at each position: colour 4-D series are not read"
        )));
    }
    let spacing = pixel_spacing(series, &mut assumed)?;
    for a in &assumed {
        tracing::warn!(series = %series.label, folder = %series.folder().display(), "{a}");
    }
    let (rows, cols) = (first.rows, first.cols);
    let channels = if rgb { 3 } else { 1 };
    let plane_len = rows * cols * channels;

    // A corrupt header can claim an absurd size; refuse it before allocating.
    let voxels = plane_len
        .checked_mul(planes.len())
        .filter(|&n| n <= MAX_VOXELS)
        .ok_or_else(|| {
            series.error(format!(
                "{rows} x {cols} x {} voxels is more than medsynth reads ({MAX_VOXELS})",
                planes.len() * channels
            ))
        })?;
    let mut values = vec![0f32; voxels];
    let single_planes = series
        .slices
        .iter()
        .all(|s| s.frames == 1 && s.per_frame.is_empty());
    let digests = if single_planes && !rgb {
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
            // A trailing pad byte (odd-length 8-bit data) may follow the samples.
            if d.stored.len() < plane_len * s.frames {
                return Err(DicomError::Invalid {
                    path: s.path.clone(),
                    what: format!(
                        "{} decoded samples, expected {} x {} x {} frames x {channels} samples",
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
                if rgb {
                    colour(&series.slices[p.file], src, out);
                } else {
                    modality_values(&series.slices[p.file], p.rescale, src, out);
                }
            });
        files.iter().map(|d| d.sha256).collect()
    };
    let data = if rgb {
        // Decoded colour is pixel-interleaved: [sample, column, row, plane] in Fortran order.
        let interleaved = ndarray::Array4::from_shape_vec((3, cols, rows, slices).f(), values)
            .map_err(|e| series.error(format!("voxel count does not match the grid: {e}")))?;
        interleaved.permuted_axes([1, 2, 3, 0])
    } else {
        // DICOM frames are row-major (column index fastest): [i, j, k, t] in Fortran order.
        Array4::from_shape_vec((cols, rows, slices, volumes).f(), values)
            .map_err(|e| series.error(format!("voxel count does not match the grid: {e}")))?
    };
    let mut digests = digests;
    digests.sort();
    let mut hasher = Sha256::new();
    for d in &digests {
        hasher.update(d);
    }
    let geometry = Geometry {
        shape: [cols, rows, slices],
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
            notes: assumed.clone(),
            assumed_geometry: assumed,
            rgb,
        },
    })
}
