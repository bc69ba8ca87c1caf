//! What medsynth reads from one DICOM file's header: geometry, pixel format, rescale and
//! non-identifying acquisition parameters. Of the patient-identifying elements only
//! PatientID is read, into an [`Identifier`] that never prints, so that subjects can be
//! grouped by patient and named by a keyed hash of it.

use std::path::{Path, PathBuf};

use dicom::core::{Tag, VR};
use dicom::dictionary_std::tags;
use dicom::object::file::ReadPreamble;
use dicom::object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, mem::InMemElement};

use super::DicomError;

/// One frame's place in space and its rescale, for enhanced multi-frame objects.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInfo {
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    pub rescale: Option<(f64, f64)>,
    /// PixelMeasuresSequence > PixelSpacing (Philips keeps it per frame).
    pub pixel_spacing: Option<[f64; 2]>,
    /// PixelMeasuresSequence > SliceThickness.
    pub slice_thickness: Option<f64>,
}

/// A value that identifies a patient: compared and hashed, never shown (its `Debug` prints
/// `<redacted>` and it has no `Display`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// The value, for keyed hashing and the pseudonym map only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The header of one DICOM image file.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceHeader {
    pub path: PathBuf,
    /// SeriesInstanceUID; files without one are not grouped into series.
    pub series_uid: Option<String>,
    /// PatientID (0010,0020), for grouping subjects by patient.
    pub patient_id: Option<Identifier>,
    /// StudyInstanceUID (0020,000D), for grouping subjects by study.
    pub study_uid: Option<String>,
    /// FrameOfReferenceUID (0020,0052): derived series share their source's, mapped.
    pub frame_of_reference_uid: Option<String>,
    /// SeriesDate and SeriesTime as `YYYYMMDDHHMMSS.FFFFFF` (sortable), for `prefer = "latest"`.
    pub series_date_time: Option<String>,
    pub series_number: Option<i64>,
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
    /// ImagerPixelSpacing (projection radiographs: at the detector, mm), used when there is
    /// no PixelSpacing, as dcm2niix does.
    pub imager_pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    /// GridFrameOffsetVector (RT Dose): each frame's offset along the normal (mm), relative
    /// to the first when it starts at 0, else absolute.
    pub frame_offsets: Option<Vec<f64>>,
    /// ModalityLUTSequence's first item: (first stored value mapped, the table), applied
    /// instead of the rescale.
    pub modality_lut: Option<(f64, Vec<f64>)>,
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
    /// PlanarConfiguration 1: colour samples stored plane by plane (RRR...GGG...BBB).
    pub planar: bool,
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

/// The bytes of an element stored with VR UN (an explicit-VR file that did not know the
/// element's VR), as text: decimal and integer strings stay readable this way.
fn unknown_text(e: &InMemElement) -> Option<String> {
    if e.vr() != VR::UN {
        return None;
    }
    let bytes = e.to_bytes().ok()?;
    let s = std::str::from_utf8(&bytes).ok()?;
    Some(
        s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned(),
    )
}

fn parse_floats(s: &str) -> Option<Vec<f64>> {
    s.split('\\')
        .map(|v| v.trim().parse::<f64>().ok())
        .collect()
}

pub(crate) fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    let e = obj.get(tag)?;
    let v = match unknown_text(e) {
        Some(s) => *parse_floats(&s)?.first()?,
        None => e.to_float64().ok()?,
    };
    v.is_finite().then_some(v)
}

/// Every value of a numeric element, also when it was stored as UN.
fn float_list(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let e = obj.get(tag)?;
    let v = match unknown_text(e) {
        Some(s) => parse_floats(&s)?,
        None => e.to_multi_float64().ok()?,
    };
    v.iter().all(|x| x.is_finite()).then_some(v)
}

fn floats<const N: usize>(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; N]> {
    float_list(obj, tag)?.get(..N)?.try_into().ok()
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let e = obj.get(tag)?;
    if e.vr() == VR::UN {
        // An integer string (IS) when it reads as one, else binary (US, UL) by its length.
        let bytes = e.to_bytes().ok()?;
        let textual = bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b" +-\0".contains(b));
        return match bytes.len() {
            _ if textual => unknown_text(e)?.trim().parse().ok(),
            2 => Some(u16::from_le_bytes([bytes[0], bytes[1]]) as i64),
            4 => Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64),
            _ => None,
        };
    }
    e.to_int::<i64>().ok()
}

/// The Modality LUT Sequence's table: LUTDescriptor (entries, first value mapped, bits)
/// and LUTData. `None` when absent or malformed.
fn modality_lut(obj: &InMemDicomObject) -> Option<(f64, Vec<f64>)> {
    let lut = item(obj, tags::MODALITY_LUT_SEQUENCE)?;
    let descriptor = lut.get(tags::LUT_DESCRIPTOR)?.to_multi_int::<i64>().ok()?;
    let (&entries, &first) = (descriptor.first()?, descriptor.get(1)?);
    // 0 entries means 65536.
    let entries = if entries == 0 {
        65536
    } else {
        entries as usize
    };
    let data: Vec<f64> = lut
        .get(tags::LUT_DATA)?
        .to_multi_int::<i64>()
        .ok()?
        .into_iter()
        .map(|v| v as f64)
        .collect();
    (data.len() >= entries).then(|| (first as f64, data[..entries].to_vec()))
}

/// The first item of sequence `tag`.
fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Opens a DICOM file from its bytes: a Part 10 file (with or without the 128-byte
/// preamble), else a bare data set in implicit VR little endian, as old ACR-NEMA-style
/// exports store them (dcm2niix reads those too); the second error is reported only if both
/// fail. `until` stops reading before that element.
pub(crate) fn open_bytes(
    bytes: &[u8],
    path: &Path,
    until: Option<Tag>,
) -> Result<DefaultDicomObject, DicomError> {
    let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Auto);
    if let Some(tag) = until {
        options = options.read_until(tag);
    }
    let part10 = match options.from_reader(std::io::Cursor::new(bytes)) {
        Ok(obj) => return Ok(obj),
        Err(e) => e,
    };
    let open_error = |source: Box<dyn std::error::Error + Send + Sync>| DicomError::Open {
        path: path.to_owned(),
        source,
    };
    use dicom::encoding::TransferSyntaxIndex;
    let implicit = dicom::transfer_syntax::TransferSyntaxRegistry
        .get(dicom::dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .ok_or_else(|| open_error("implicit VR little endian is not registered".into()))?;
    // A Part 10 file whose data set is implicit VR though its meta names an explicit VR
    // transfer syntax (seen in JPEG exports; pydicom and dcm2niix read it): the meta kept,
    // the data set read as implicit VR.
    if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        let mut at = std::io::Cursor::new(&bytes[128..]);
        // Only worth a second parse when the first element has no VR where explicit VR
        // puts one (bytes 4-5: two upper-case letters); a corrupt explicit file is not.
        let implicit_body = |at: &std::io::Cursor<&[u8]>| {
            let rest = &at.get_ref()[at.position() as usize..];
            rest.len() >= 8 && !rest[4..6].iter().all(u8::is_ascii_uppercase)
        };
        if let Ok(meta) = dicom::object::FileMetaTable::from_reader(&mut at)
            && implicit_body(&at)
            && let Ok(data) = InMemDicomObject::read_dataset_with_ts(&mut at, implicit)
            && data.get(tags::ROWS).is_some()
        {
            tracing::warn!(file = %path.display(), "the data set is implicit VR although the file meta says {}: read as implicit VR", meta.transfer_syntax());
            let data = match until {
                Some(tag) => InMemDicomObject::from_element_iter(
                    data.into_iter()
                        .filter(|e| dicom::core::header::Header::tag(e) < tag),
                ),
                None => data,
            };
            return Ok(data.with_exact_meta(meta));
        }
        return Err(open_error(Box::new(part10)));
    }
    // A bare data set starts with a group 0008 element (little endian).
    if bytes.len() < 8 || bytes[0..2] != [0x08, 0x00] {
        return Err(open_error(Box::new(part10)));
    }
    let data = InMemDicomObject::read_dataset_with_ts(std::io::Cursor::new(bytes), implicit)
        .map_err(|_| open_error(Box::new(part10)))?;
    let sop_class =
        text(&data, tags::SOP_CLASS_UID).unwrap_or_else(|| "1.2.840.10008.5.1.4.1.1.7".to_owned());
    let sop = text(&data, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "2.25.0".to_owned());
    data.with_meta(
        dicom::object::FileMetaTableBuilder::new()
            .transfer_syntax(dicom::dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(sop),
    )
    .map_err(|e| open_error(Box::new(e)))
}

/// Reads the header of `path`, stopping before the pixel data.
pub fn read_header(path: &Path) -> Result<SliceHeader, DicomError> {
    let part10 = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .read_until(tags::PIXEL_DATA)
        .open_file(path);
    let obj = match part10 {
        Ok(obj) => obj,
        Err(source) => {
            // Only a bare data set, or a Part 10 file whose data set may be implicit VR, is
            // worth a second read of the whole file.
            let mut head = [0u8; 132];
            let read = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                .unwrap_or(0);
            let bare = read >= 2 && head[..2] == [0x08, 0x00];
            let part10 = read == 132 && &head[128..132] == b"DICM";
            if !bare && !part10 {
                return Err(DicomError::Open {
                    path: path.to_owned(),
                    source: Box::new(source),
                });
            }
            let bytes = std::fs::read(path).map_err(|e| DicomError::Open {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
            open_bytes(&bytes, path, Some(tags::PIXEL_DATA))?
        }
    };
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
    let from_groups = |g: &InMemDicomObject| {
        let measures = item(g, tags::PIXEL_MEASURES_SEQUENCE);
        FrameInfo {
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
            pixel_spacing: measures.and_then(|m| floats::<2>(m, tags::PIXEL_SPACING)),
            slice_thickness: measures.and_then(|m| float(m, tags::SLICE_THICKNESS)),
        }
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
                        f.pixel_spacing = f.pixel_spacing.or(s.pixel_spacing);
                        f.slice_thickness = f.slice_thickness.or(s.slice_thickness);
                    }
                    f
                })
                .collect()
        })
        .unwrap_or_default();
    // Geometry of an enhanced object: the shared groups', else the first frame's.
    let first_frame = per_frame.first();
    // A zero spacing (seen in radiographs) says nothing.
    let positive = |v: [f64; 2]| v.iter().all(|x| *x > 0.0).then_some(v);
    let pixel_spacing = floats::<2>(obj, tags::PIXEL_SPACING)
        .and_then(positive)
        .or_else(|| shared_info.as_ref().and_then(|s| s.pixel_spacing))
        .or_else(|| first_frame.and_then(|f| f.pixel_spacing));
    let slice_thickness = float(obj, tags::SLICE_THICKNESS)
        .or_else(|| shared_info.as_ref().and_then(|s| s.slice_thickness))
        .or_else(|| first_frame.and_then(|f| f.slice_thickness));
    let orientation = floats::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)
        .or_else(|| shared_info.as_ref().and_then(|s| s.orientation))
        .or_else(|| first_frame.and_then(|f| f.orientation));
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
        patient_id: text(obj, tags::PATIENT_ID).map(Identifier),
        study_uid: text(obj, tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
        series_date_time: text(obj, tags::SERIES_DATE)
            .map(|d| format!("{d}{}", text(obj, tags::SERIES_TIME).unwrap_or_default())),
        series_number: int(obj, tags::SERIES_NUMBER),
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows: rows as usize,
        cols: cols as usize,
        frames: frames as usize,
        position: floats::<3>(obj, tags::IMAGE_POSITION_PATIENT),
        orientation,
        pixel_spacing,
        imager_pixel_spacing: floats::<2>(obj, tags::IMAGER_PIXEL_SPACING).and_then(positive),
        slice_thickness,
        spacing_between_slices: float(obj, tags::SPACING_BETWEEN_SLICES),
        frame_offsets: float_list(obj, tags::GRID_FRAME_OFFSET_VECTOR)
            .filter(|v| v.len() == frames as usize),
        modality_lut: modality_lut(obj),
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
        planar: int(obj, tags::PLANAR_CONFIGURATION) == Some(1),
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
