//! Writing a volume as a derived DICOM series: one file per k-plane, explicit VR little
//! endian, new UIDs made deterministically from a UID root and the content, ImageType
//! DERIVED\SECONDARY, int16 pixels with a rescale, and no patient-identifying element.

use std::path::{Path, PathBuf};

use dicom::core::{DataElement, PrimitiveValue, VR, dicom_value};
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
    /// DICOM Modality; default from the volume, else `OT`.
    pub modality: Option<String>,
    /// A pseudonymous subject identifier for PatientID; empty when `None`.
    pub subject: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            uid_root: None,
            description: "medsynth derived".to_owned(),
            modality: None,
            subject: None,
        }
    }
}

/// A UID for `role` of content `hash` under `root`, at most 64 characters.
fn make_uid(root: Option<&str>, hash: &[u8; 32], role: &str) -> String {
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

fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{}", (v * 1e6).round() / 1e6))
        .collect::<Vec<_>>()
        .join("\\")
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Writes frame 0 of `volume` as a DICOM series into `dir` (`IM0001.dcm`, ...), each file
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
    let (slope, inter) = if integral {
        (1.0, 0.0)
    } else if hi > lo {
        ((hi - lo) / 65000.0, (hi + lo) / 2.0)
    } else {
        (1.0, lo)
    };

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
    let study = make_uid(root, &hash, "study");
    let series = make_uid(root, &hash, "series");
    let frame_of_reference = make_uid(root, &hash, "frame-of-reference");
    let modality = options
        .modality
        .clone()
        .or_else(|| volume.meta.modality.clone())
        .unwrap_or_else(|| "OT".to_owned());
    let sop_class = match modality.as_str() {
        "MR" => uids::MR_IMAGE_STORAGE,
        "CT" => uids::CT_IMAGE_STORAGE,
        _ => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
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
            let mut obj = InMemDicomObject::new_empty();
            let s = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
            obj.put(s(tags::SOP_CLASS_UID, VR::UI, sop_class));
            obj.put(s(tags::SOP_INSTANCE_UID, VR::UI, &sop));
            obj.put(s(tags::STUDY_INSTANCE_UID, VR::UI, &study));
            obj.put(s(tags::SERIES_INSTANCE_UID, VR::UI, &series));
            obj.put(s(tags::FRAME_OF_REFERENCE_UID, VR::UI, &frame_of_reference));
            obj.put(DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_value!(Strs, ["DERIVED", "SECONDARY"]),
            ));
            obj.put(s(tags::MODALITY, VR::CS, &modality));
            obj.put(s(tags::SERIES_DESCRIPTION, VR::LO, &options.description));
            obj.put(s(tags::SERIES_NUMBER, VR::IS, "1001"));
            obj.put(s(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string()));
            // Type 2 patient and study elements: present and empty, or a pseudonym.
            obj.put(s(tags::PATIENT_NAME, VR::PN, ""));
            obj.put(s(
                tags::PATIENT_ID,
                VR::LO,
                options.subject.as_deref().unwrap_or(""),
            ));
            obj.put(s(tags::PATIENT_BIRTH_DATE, VR::DA, ""));
            obj.put(s(tags::PATIENT_SEX, VR::CS, ""));
            obj.put(s(tags::STUDY_DATE, VR::DA, ""));
            obj.put(s(tags::STUDY_TIME, VR::TM, ""));
            obj.put(s(tags::STUDY_ID, VR::SH, ""));
            obj.put(s(tags::ACCESSION_NUMBER, VR::SH, ""));
            obj.put(s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""));
            obj.put(s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""));
            obj.put(s(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds(&position)));
            obj.put(s(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &ds(&[
                    row_dir[0], row_dir[1], row_dir[2], col_dir[0], col_dir[1], col_dir[2],
                ]),
            ));
            obj.put(s(tags::PIXEL_SPACING, VR::DS, &ds(&[sj, si])));
            obj.put(s(tags::SLICE_THICKNESS, VR::DS, &ds(&[norm(dk)])));
            obj.put(s(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(&[norm(dk)])));
            obj.put(DataElement::new(
                tags::SAMPLES_PER_PIXEL,
                VR::US,
                PrimitiveValue::from(1u16),
            ));
            obj.put(s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
            obj.put(DataElement::new(
                tags::ROWS,
                VR::US,
                PrimitiveValue::from(ny as u16),
            ));
            obj.put(DataElement::new(
                tags::COLUMNS,
                VR::US,
                PrimitiveValue::from(nx as u16),
            ));
            obj.put(DataElement::new(
                tags::BITS_ALLOCATED,
                VR::US,
                PrimitiveValue::from(16u16),
            ));
            obj.put(DataElement::new(
                tags::BITS_STORED,
                VR::US,
                PrimitiveValue::from(16u16),
            ));
            obj.put(DataElement::new(
                tags::HIGH_BIT,
                VR::US,
                PrimitiveValue::from(15u16),
            ));
            obj.put(DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(1u16),
            ));
            obj.put(s(tags::RESCALE_INTERCEPT, VR::DS, &format!("{inter}")));
            obj.put(s(tags::RESCALE_SLOPE, VR::DS, &format!("{slope}")));
            obj.put(s(tags::RESCALE_TYPE, VR::LO, "US"));
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(pixels.into()),
            ));
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
