//! What medsynth reads from one DICOM file's header: geometry, pixel format, rescale and
//! non-identifying acquisition parameters. Patient-identifying elements are never read.

use std::path::{Path, PathBuf};

use dicom::core::Tag;
use dicom::dictionary_std::tags;
use dicom::object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};

use super::DicomError;

/// One frame's place in space and its rescale, for enhanced multi-frame objects.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInfo {
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    pub rescale: Option<(f64, f64)>,
}

/// The header of one DICOM image file.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceHeader {
    pub path: PathBuf,
    /// SeriesInstanceUID; files without one are not grouped into series.
    pub series_uid: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    /// ImagePositionPatient (LPS mm) of the first pixel.
    pub position: Option<[f64; 3]>,
    /// ImageOrientationPatient: row direction then column direction (LPS).
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing: between rows, between columns (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    pub echo_number: Option<i64>,
    pub echo_time_ms: Option<f64>,
    pub repetition_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    pub flip_angle_deg: Option<f64>,
    pub field_strength_t: Option<f64>,
    /// (slope, intercept).
    pub rescale: (f64, f64),
    pub photometric: String,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub transfer_syntax: String,
    pub modality: Option<String>,
    pub series_description: Option<String>,
    /// Per-frame positions and rescales of an enhanced multi-frame object.
    pub per_frame: Vec<FrameInfo>,
}

// Lookups use `get`, which answers None for a missing element without building an error:
// dicom-rs errors capture a backtrace when RUST_BACKTRACE is set, which made header parsing
// several times slower and serialised threads.
pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_owned())
}

pub(crate) fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    let v = obj.get(tag)?.to_float64().ok()?;
    v.is_finite().then_some(v)
}

fn floats<const N: usize>(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; N]> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    let a: [f64; N] = v.get(..N)?.try_into().ok()?;
    a.iter().all(|x| x.is_finite()).then_some(a)
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// The first item of sequence `tag`.
fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Reads the header of `path`, stopping before the pixel data.
pub fn read_header(path: &Path) -> Result<SliceHeader, DicomError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|source| DicomError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    header_of(&obj, path)
}

/// Extracts the header fields from an opened object.
pub fn header_of(obj: &DefaultDicomObject, path: &Path) -> Result<SliceHeader, DicomError> {
    let missing = |tag: &'static str| DicomError::MissingTag {
        path: path.to_owned(),
        tag,
    };
    let rows = int(obj, tags::ROWS).ok_or_else(|| missing("Rows (0028,0010)"))?;
    let cols = int(obj, tags::COLUMNS).ok_or_else(|| missing("Columns (0028,0011)"))?;
    if rows <= 0 || cols <= 0 {
        return Err(DicomError::Invalid {
            path: path.to_owned(),
            what: format!("image is {rows} x {cols} pixels, expected at least 1 x 1"),
        });
    }
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let series_uid = text(obj, tags::SERIES_INSTANCE_UID);

    // Enhanced multi-frame objects keep geometry in functional group sequences.
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let from_groups = |g: &InMemDicomObject| FrameInfo {
        position: item(g, tags::PLANE_POSITION_SEQUENCE)
            .and_then(|p| floats::<3>(p, tags::IMAGE_POSITION_PATIENT)),
        orientation: item(g, tags::PLANE_ORIENTATION_SEQUENCE)
            .and_then(|p| floats::<6>(p, tags::IMAGE_ORIENTATION_PATIENT)),
        rescale: item(g, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).and_then(|p| {
            Some((
                float(p, tags::RESCALE_SLOPE).unwrap_or(1.0),
                float(p, tags::RESCALE_INTERCEPT)?,
            ))
        }),
    };
    let shared_info = shared.map(from_groups);
    let per_frame: Vec<FrameInfo> = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .map(|items| {
            items
                .iter()
                .map(|g| {
                    let mut f = from_groups(g);
                    if let Some(s) = &shared_info {
                        f.orientation = f.orientation.or(s.orientation);
                        f.rescale = f.rescale.or(s.rescale);
                    }
                    f
                })
                .collect()
        })
        .unwrap_or_default();
    let measures = shared.and_then(|s| item(s, tags::PIXEL_MEASURES_SEQUENCE));

    let pixel_spacing = floats::<2>(obj, tags::PIXEL_SPACING)
        .or_else(|| measures.and_then(|m| floats::<2>(m, tags::PIXEL_SPACING)));
    let slice_thickness = float(obj, tags::SLICE_THICKNESS)
        .or_else(|| measures.and_then(|m| float(m, tags::SLICE_THICKNESS)));
    let rescale = match (
        float(obj, tags::RESCALE_SLOPE),
        float(obj, tags::RESCALE_INTERCEPT),
    ) {
        (s, Some(i)) => (s.unwrap_or(1.0), i),
        (Some(s), None) => (s, 0.0),
        (None, None) => shared_info
            .as_ref()
            .and_then(|s| s.rescale)
            .unwrap_or((1.0, 0.0)),
    };
    let mr = item(obj, tags::MR_ECHO_SEQUENCE);
    Ok(SliceHeader {
        path: path.to_owned(),
        series_uid,
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows: rows as usize,
        cols: cols as usize,
        frames: frames as usize,
        position: floats::<3>(obj, tags::IMAGE_POSITION_PATIENT),
        orientation: floats::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)
            .or_else(|| shared_info.as_ref().and_then(|s| s.orientation)),
        pixel_spacing,
        slice_thickness,
        spacing_between_slices: float(obj, tags::SPACING_BETWEEN_SLICES),
        echo_number: int(obj, tags::ECHO_NUMBERS),
        echo_time_ms: float(obj, tags::ECHO_TIME)
            .or_else(|| mr.and_then(|m| float(m, tags::EFFECTIVE_ECHO_TIME))),
        repetition_time_ms: float(obj, tags::REPETITION_TIME),
        inversion_time_ms: float(obj, tags::INVERSION_TIME),
        flip_angle_deg: float(obj, tags::FLIP_ANGLE),
        field_strength_t: float(obj, tags::MAGNETIC_FIELD_STRENGTH),
        rescale,
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_else(|| "MONOCHROME2".to_owned()),
        samples_per_pixel: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(16) as u16,
        bits_stored: int(obj, tags::BITS_STORED).unwrap_or(16) as u16,
        signed: int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
        transfer_syntax: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_owned(),
        modality: text(obj, tags::MODALITY),
        series_description: text(obj, tags::SERIES_DESCRIPTION),
        per_frame,
    })
}
