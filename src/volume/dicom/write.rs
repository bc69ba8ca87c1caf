//! Writing a volume as a derived DICOM series that a PACS files and a viewer reconstructs:
//! one file per k-plane, explicit VR little endian, MR Image or CT Image Storage (as the
//! source; Secondary Capture for other modalities) with ImageType DERIVED\SECONDARY, full
//! image-plane geometry for MPR, int16 pixels with a rescale, new UIDs made deterministically
//! from a UID root and the content (or given by the caller, so that the series files into a
//! study), and no patient-identifying element: patient and study attributes are empty or a
//! pseudonym, and the objects say so (Patient Identity Removed, De-identification Method, as
//! DICOM PS3.15 Annex E asks).

use std::path::{Path, PathBuf};

use dicom::core::{DataElement, PrimitiveValue, VR};
use dicom::dictionary_std::{tags, uids};
use dicom::object::{FileMetaTableBuilder, InMemDicomObject};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::DicomError;
use crate::volume::{AtomicFile, Volume};

/// How a derived series is labelled.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// UID root (digits and dots, at most 40 characters); `None` uses the `2.25` UUID form.
    pub uid_root: Option<String>,
    /// SeriesDescription of the new series.
    pub description: String,
    /// DICOM Modality; default from the volume, else `MR`. `MR` and `CT` are written as MR
    /// and CT Image Storage, anything else as Secondary Capture.
    pub modality: Option<String>,
    /// A pseudonymous subject identifier for PatientID; empty when `None`.
    pub subject: Option<String>,
    /// StudyInstanceUID to file the series under (e.g. the mapped UID of the source study);
    /// `None` makes one from the subject, or from the content when there is no subject.
    pub study_uid: Option<String>,
    /// FrameOfReferenceUID shared with the source images; `None` makes one like the study's.
    pub frame_of_reference_uid: Option<String>,
    /// SeriesNumber.
    pub series_number: u32,
    /// DerivationDescription: how the images were made (e.g. the model and its checkpoint).
    pub derivation: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            uid_root: None,
            description: "medsynth derived".to_owned(),
            modality: None,
            subject: None,
            study_uid: None,
            frame_of_reference_uid: None,
            series_number: 1001,
            derivation: None,
        }
    }
}

/// A UID for `role` of content `hash` under `root`, at most 64 characters.
pub fn make_uid(root: Option<&str>, hash: &[u8; 32], role: &str) -> String {
    let mut h = Sha256::new();
    h.update(hash);
    h.update(role.as_bytes());
    let d = h.finalize();
    let n = u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]));
    match root {
        // ITU-T X.667: 2.25 followed by a 128-bit number (top bit cleared keeps it < 2^127).
        None => format!("2.25.{}", n >> 1),
        Some(root) => {
            let digits = (n >> 1).to_string();
            let room = 64 - root.len() - 1;
            let digits = &digits[..digits.len().min(room)];
            // A UID component must not start with 0.
            let digits = digits.trim_start_matches('0');
            format!("{root}.{}", if digits.is_empty() { "1" } else { digits })
        }
    }
}

/// One decimal string value (DICOM DS): at most 16 characters, as many significant digits
/// as fit, in fixed notation when that keeps at least 6 of them, else in exponent notation.
pub fn ds_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    let fixed = |decimals: usize| {
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    let magnitude = v.abs().log10().floor() as i32;
    if (-5..15).contains(&magnitude) {
        // Characters before the decimals: sign, integer digits, point.
        let int_digits = magnitude.max(0) as usize + 1;
        let used = usize::from(v < 0.0) + int_digits + 1;
        let s = fixed(16usize.saturating_sub(used).min(12));
        if s.len() <= 16 && s != "0" && s != "-0" {
            return s;
        }
    }
    for digits in (1..=10).rev() {
        let s = format!("{v:.digits$e}");
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:e}")
}

/// A multi-valued DS.
fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|&v| ds_value(v))
        .collect::<Vec<_>>()
        .join("\\")
}

/// The value a DS string holds, which is what a reader uses.
fn as_read(v: f64) -> f64 {
    ds_value(v).parse().unwrap_or(v)
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Which storage class the series is written as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Iod {
    Mr,
    Ct,
    SecondaryCapture,
}

impl Iod {
    fn of(modality: &str) -> Self {
        match modality {
            "MR" => Iod::Mr,
            "CT" => Iod::Ct,
            _ => Iod::SecondaryCapture,
        }
    }

    fn sop_class(self) -> &'static str {
        match self {
            Iod::Mr => uids::MR_IMAGE_STORAGE,
            Iod::Ct => uids::CT_IMAGE_STORAGE,
            Iod::SecondaryCapture => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        }
    }
}

/// What every file of a series shares.
struct SeriesHeader {
    iod: Iod,
    modality: String,
    study: String,
    series: String,
    frame_of_reference: String,
    row_dir: [f64; 3],
    col_dir: [f64; 3],
    /// PixelSpacing as written: between rows, between columns.
    spacing: [f64; 2],
    thickness: f64,
    rescale: (f64, f64),
    rows: u16,
    cols: u16,
}

fn text(tag: dicom::core::Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn short(tag: dicom::core::Tag, v: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

/// The patient, study, series, equipment and de-identification attributes.
fn identity(obj: &mut InMemDicomObject, h: &SeriesHeader, options: &WriteOptions) {
    // Type 2 patient and study attributes: present and empty, or a pseudonym.
    let subject = options.subject.as_deref().unwrap_or("");
    obj.put(text(tags::PATIENT_NAME, VR::PN, ""));
    obj.put(text(tags::PATIENT_ID, VR::LO, subject));
    obj.put(text(tags::PATIENT_BIRTH_DATE, VR::DA, ""));
    obj.put(text(tags::PATIENT_SEX, VR::CS, ""));
    obj.put(text(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
    obj.put(text(
        tags::DEIDENTIFICATION_METHOD,
        VR::LO,
        "medsynth: new pixel data; no source attribute retained",
    ));
    let code = InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, "113100"),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
        text(
            tags::CODE_MEANING,
            VR::LO,
            "Basic Application Confidentiality Profile",
        ),
    ]);
    obj.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
        VR::SQ,
        dicom::core::value::DataSetSequence::from(vec![code]),
    ));
    obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, &h.study));
    obj.put(text(tags::STUDY_DATE, VR::DA, ""));
    obj.put(text(tags::STUDY_TIME, VR::TM, ""));
    obj.put(text(tags::STUDY_ID, VR::SH, ""));
    obj.put(text(tags::ACCESSION_NUMBER, VR::SH, ""));
    obj.put(text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""));
    obj.put(text(tags::MODALITY, VR::CS, &h.modality));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &h.series));
    obj.put(text(
        tags::SERIES_NUMBER,
        VR::IS,
        &options.series_number.to_string(),
    ));
    obj.put(text(tags::SERIES_DESCRIPTION, VR::LO, &options.description));
    obj.put(text(tags::LATERALITY, VR::CS, ""));
    if h.iod != Iod::SecondaryCapture {
        obj.put(text(tags::PATIENT_POSITION, VR::CS, ""));
    }
    obj.put(text(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &h.frame_of_reference,
    ));
    obj.put(text(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""));
    obj.put(text(tags::MANUFACTURER, VR::LO, "medsynth"));
    obj.put(text(tags::SOFTWARE_VERSIONS, VR::LO, crate::VERSION));
    if h.iod == Iod::SecondaryCapture {
        // Workstation: the images were made by software.
        obj.put(text(tags::CONVERSION_TYPE, VR::CS, "WSD"));
    }
}

/// The attributes of the modality's image module a derived image can state.
fn acquisition(obj: &mut InMemDicomObject, h: &SeriesHeader, volume: &Volume) {
    let optional = |v: Option<f64>| v.map(ds_value).unwrap_or_default();
    match h.iod {
        Iod::Mr => {
            // Research mode: no acquisition made these pixels.
            obj.put(text(tags::SCANNING_SEQUENCE, VR::CS, "RM"));
            obj.put(text(tags::SEQUENCE_VARIANT, VR::CS, "NONE"));
            obj.put(text(tags::SCAN_OPTIONS, VR::CS, ""));
            obj.put(text(tags::MR_ACQUISITION_TYPE, VR::CS, ""));
            obj.put(text(
                tags::REPETITION_TIME,
                VR::DS,
                &optional(volume.meta.repetition_time_ms),
            ));
            obj.put(text(
                tags::ECHO_TIME,
                VR::DS,
                &optional(volume.meta.echo_time_ms),
            ));
            obj.put(text(tags::ECHO_TRAIN_LENGTH, VR::IS, ""));
        }
        Iod::Ct => {
            obj.put(text(tags::KVP, VR::DS, ""));
            obj.put(text(tags::ACQUISITION_NUMBER, VR::IS, ""));
        }
        Iod::SecondaryCapture => {
            obj.put(text(tags::PATIENT_ORIENTATION, VR::CS, ""));
        }
    }
}

/// One plane's file as a dataset.
fn plane(
    h: &SeriesHeader,
    options: &WriteOptions,
    volume: &Volume,
    k: usize,
    sop: &str,
    position: [f64; 3],
    pixels: Vec<u16>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(text(tags::SOP_CLASS_UID, VR::UI, h.iod.sop_class()));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, sop));
    let image_type: &[&str] = match h.iod {
        Iod::Mr => &["DERIVED", "SECONDARY", "OTHER"],
        Iod::Ct => &["DERIVED", "SECONDARY", "AXIAL"],
        Iod::SecondaryCapture => &["DERIVED", "SECONDARY"],
    };
    obj.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(image_type.iter().map(|s| s.to_string()).collect()),
    ));
    identity(&mut obj, h, options);
    obj.put(text(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string()));
    if let Some(d) = &options.derivation {
        // ST holds at most 1024 characters.
        let d: String = d.chars().take(1024).collect();
        obj.put(text(tags::DERIVATION_DESCRIPTION, VR::ST, &d));
    }
    acquisition(&mut obj, h, volume);
    obj.put(text(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds(&position)));
    let [r, c] = [h.row_dir, h.col_dir];
    obj.put(text(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &ds(&[r[0], r[1], r[2], c[0], c[1], c[2]]),
    ));
    obj.put(text(tags::PIXEL_SPACING, VR::DS, &ds(&h.spacing)));
    obj.put(text(tags::SLICE_THICKNESS, VR::DS, &ds(&[h.thickness])));
    obj.put(text(
        tags::SPACING_BETWEEN_SLICES,
        VR::DS,
        &ds(&[h.thickness]),
    ));
    obj.put(short(tags::SAMPLES_PER_PIXEL, 1));
    obj.put(text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(short(tags::ROWS, h.rows));
    obj.put(short(tags::COLUMNS, h.cols));
    obj.put(short(tags::BITS_ALLOCATED, 16));
    obj.put(short(tags::BITS_STORED, 16));
    obj.put(short(tags::HIGH_BIT, 15));
    obj.put(short(tags::PIXEL_REPRESENTATION, 1));
    let (slope, inter) = h.rescale;
    obj.put(text(tags::RESCALE_INTERCEPT, VR::DS, &ds_value(inter)));
    obj.put(text(tags::RESCALE_SLOPE, VR::DS, &ds_value(slope)));
    obj.put(text(
        tags::RESCALE_TYPE,
        VR::LO,
        if h.iod == Iod::Ct { "HU" } else { "US" },
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    obj
}

/// The rescale (slope, intercept) that maps the int16 range onto `[lo, hi]`, as a reader
/// will read it back from its DS strings: identity when the values are integers that fit.
fn rescale(lo: f64, hi: f64, integral: bool) -> (f64, f64) {
    if integral {
        (1.0, 0.0)
    } else if hi > lo {
        (as_read((hi - lo) / 65000.0), as_read((hi + lo) / 2.0))
    } else {
        (1.0, as_read(lo))
    }
}

/// Writes a greyscale 3-D `volume` as a DICOM series into `dir` (`IM0001.dcm`, ...), each file
/// atomically. Returns the written paths.
pub fn write_series(
    volume: &Volume,
    dir: &Path,
    options: &WriteOptions,
) -> Result<Vec<PathBuf>, DicomError> {
    let invalid = |what: String| DicomError::Invalid {
        path: dir.to_owned(),
        what,
    };
    if volume.meta.rgb || volume.frames() != 1 {
        return Err(invalid(format!(
            "{}: medsynth writes greyscale 3-D series; write it as NIfTI",
            if volume.meta.rgb {
                "a colour volume".to_owned()
            } else {
                format!("{} volumes", volume.frames())
            }
        )));
    }
    let [nx, ny, nz] = volume.geometry.shape;
    if nx > u16::MAX as usize || ny > u16::MAX as usize {
        return Err(invalid(format!(
            "{nx} x {ny} pixels do not fit DICOM's 16-bit Rows and Columns"
        )));
    }
    let m = volume.geometry.affine.0;
    let ras_to_lps = [-1.0, -1.0, 1.0];
    let col = |c: usize| -> [f64; 3] { std::array::from_fn(|r| m[r][c] * ras_to_lps[r]) };
    let (di, dj, dk) = (col(0), col(1), col(2));
    let origin: [f64; 3] = std::array::from_fn(|r| m[r][3] * ras_to_lps[r]);
    let (si, sj) = (norm(di), norm(dj));
    if si == 0.0 || sj == 0.0 || !si.is_finite() || !sj.is_finite() {
        return Err(invalid(
            "the affine has a zero or non-finite in-plane axis".to_owned(),
        ));
    }
    let row_dir = di.map(|v| v / si);
    let col_dir = dj.map(|v| v / sj);
    if (row_dir[0] * col_dir[0] + row_dir[1] * col_dir[1] + row_dir[2] * col_dir[2]).abs() > 1e-4 {
        return Err(invalid(
            "the in-plane axes are not orthogonal; DICOM cannot store a sheared plane".to_owned(),
        ));
    }

    let frame = volume.frame(0);
    let (lo, hi) = frame
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v as f64), b.max(v as f64))
        });
    if !lo.is_finite() {
        return Err(invalid("no finite voxel to write".to_owned()));
    }
    let integral =
        frame.iter().all(|v| v.fract() == 0.0) && lo >= i16::MIN as f64 && hi <= i16::MAX as f64;
    let (slope, inter) = rescale(lo, hi, integral);

    let mut content = Sha256::new();
    for v in frame.iter() {
        content.update(v.to_le_bytes());
    }
    for row in m {
        for v in row {
            content.update(v.to_le_bytes());
        }
    }
    let hash: [u8; 32] = content.finalize().into();
    let root = options.uid_root.as_deref();
    // A subject's series share one study and frame of reference unless the caller maps them.
    let subject_hash: [u8; 32] = match &options.subject {
        Some(s) => Sha256::digest(format!("medsynth-subject\0{s}")).into(),
        None => hash,
    };
    let modality = options
        .modality
        .clone()
        .or_else(|| volume.meta.modality.clone())
        .unwrap_or_else(|| "MR".to_owned());
    let header = SeriesHeader {
        iod: Iod::of(&modality),
        modality,
        study: options
            .study_uid
            .clone()
            .unwrap_or_else(|| make_uid(root, &subject_hash, "study")),
        series: make_uid(root, &hash, "series"),
        frame_of_reference: options
            .frame_of_reference_uid
            .clone()
            .unwrap_or_else(|| make_uid(root, &subject_hash, "frame-of-reference")),
        row_dir,
        col_dir,
        spacing: [sj, si],
        thickness: norm(dk),
        rescale: (slope, inter),
        rows: ny as u16,
        cols: nx as u16,
    };
    std::fs::create_dir_all(dir).map_err(|source| DicomError::Write {
        path: dir.to_owned(),
        source: Box::new(source),
    })?;

    (0..nz)
        .into_par_iter()
        .map(|k| {
            let path = dir.join(format!("IM{:04}.dcm", k + 1));
            let sop = make_uid(root, &hash, &format!("sop-{k}"));
            let position: [f64; 3] = std::array::from_fn(|r| origin[r] + dk[r] * k as f64);
            let mut pixels = Vec::with_capacity(nx * ny);
            for j in 0..ny {
                for i in 0..nx {
                    let v = frame[[i, j, k]] as f64;
                    let stored = if v.is_finite() {
                        ((v - inter) / slope).round()
                    } else {
                        0.0
                    };
                    pixels.push(stored.clamp(i16::MIN as f64, i16::MAX as f64) as i16 as u16);
                }
            }
            let obj = plane(&header, options, volume, k, &sop, position, pixels);
            let write_error =
                |source: Box<dyn std::error::Error + Send + Sync>| DicomError::Write {
                    path: path.clone(),
                    source,
                };
            let file = obj
                .with_meta(
                    FileMetaTableBuilder::new()
                        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                        .implementation_class_uid(make_uid(
                            root,
                            &[0; 32],
                            "medsynth-implementation",
                        ))
                        .implementation_version_name(format!(
                            "MEDSYNTH_{}",
                            crate::VERSION.replace('.', "_")
                        )),
                )
                .map_err(|e| write_error(Box::new(e)))?;
            let atomic = AtomicFile::new(&path).map_err(|e| write_error(Box::new(e)))?;
            file.write_to_file(atomic.temp())
                .map_err(|e| write_error(Box::new(e)))?;
            atomic.commit().map_err(|e| write_error(Box::new(e)))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        for v in [
            0.0,
            1.0,
            -1.0,
            0.000123456789123,
            -0.000123456789123,
            1.23456789e-9,
            -9.87654321e-12,
            123456.789012345,
            -98765432109.87654,
            1.2345678901234567e20,
            -3.0e-300,
            0.1 + 0.2,
            2.0f64.sqrt(),
            // The rescale slope that dciodvfy rejected: 22 characters before.
            0.00004604768162965774,
        ] {
            let s = ds_value(v);
            assert!(s.len() <= 16, "{v} -> {s:?} ({} chars)", s.len());
            assert!(
                s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)),
                "{s:?}"
            );
            let back: f64 = s.parse().unwrap();
            let rel = if v == 0.0 {
                back.abs()
            } else {
                ((back - v) / v).abs()
            };
            assert!(rel < 1e-8, "{v} -> {s} loses {rel:e}");
        }
        assert_eq!(ds_value(1.5), "1.5");
        assert_eq!(ds_value(-2.0), "-2");
        assert_eq!(ds_value(0.5), "0.5");
    }

    #[test]
    fn rescale_is_what_a_reader_reads() {
        let (slope, inter) = rescale(-3.3, 1234.56789, false);
        assert_eq!(ds_value(slope).parse::<f64>().unwrap(), slope);
        assert_eq!(ds_value(inter).parse::<f64>().unwrap(), inter);
        assert_eq!(rescale(0.0, 10.0, true), (1.0, 0.0));
    }
}
