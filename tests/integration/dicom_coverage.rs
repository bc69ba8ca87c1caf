//! DICOM coverage against other toolkits' public test files: every image file of pydicom's
//! test set and of pydicom-data (about 130, from CT, MR, Enhanced MR/CT, CR, US, SC, RT Dose
//! and SEG objects in 12 transfer syntaxes) goes through `medsynth convert`, dcm2niix and
//! pydicom (tests/python/dicom_coverage.py). medsynth must convert every file dcm2niix
//! converts, with voxel values equal to pydicom's (within decoder rounding for lossy
//! codestreams) and the same voxels on the same world grid as dcm2niix, except where
//! dcm2niix is the one that is wrong, listed below with why. The table is written to
//! `target/dicom-coverage.md` for the README and issue notes.

use crate::common;

use std::collections::BTreeMap;

use serde_json::Value;

/// Files whose comparison is known to fail, the status it fails with, and why.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "J2K_pixelrep_mismatch.dcm",
        "geometry-differs",
        "dcm2niix shears the grid for a 22 degree gantry tilt that ImageOrientationPatient already holds",
    ),
    (
        "rtdose.dcm",
        "geometry-differs",
        "dcm2niix ignores GridFrameOffsetVector and stacks the dose frames 1 mm apart, not 5 mm",
    ),
    (
        "rtdose_expb.dcm",
        "geometry-differs",
        "dcm2niix ignores GridFrameOffsetVector (as rtdose.dcm)",
    ),
    (
        "rtdose_rle.dcm",
        "geometry-differs",
        "dcm2niix ignores GridFrameOffsetVector (as rtdose.dcm)",
    ),
    (
        "SC_rgb_32bit.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_rgb_32bit_2frame.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_rgb_expb_32bit.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_rgb_expb_32bit_2frame.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_rgb_rle_32bit.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_rgb_rle_32bit_2frame.dcm",
        "geometry-differs",
        "dcm2niix writes 32-bit RGB as one int32 channel",
    ),
    (
        "SC_jpeg_no_color_transform.dcm",
        "values-differ",
        "a JPEG whose Adobe marker says no colour transform: medsynth (dicom-rs) and dcm2niix convert YCbCr to RGB alike, pydicom does not",
    ),
    (
        "SC_rgb_jpeg.dcm",
        "values-differ",
        "an implicit-VR data set under an explicit-VR file meta, read as implicit; its JPEG colour is converted from YCbCr as dcm2niix does (the same voxels as dcm2niix), where pydicom does not",
    ),
    (
        "GDCMJ2K_TextGBR.dcm",
        "pydicom-undecodable",
        "no pydicom plugin installed here decodes this JPEG 2000 stream; medsynth and dcm2niix convert it alike",
    ),
    (
        "badVR.dcm",
        "pydicom-undecodable",
        "a deliberately corrupt IS value ('1A'): pydicom refuses it, medsynth and dcm2niix read around it",
    ),
];

#[test]
fn medsynth_converts_every_file_dcm2niix_converts_with_agreeing_values_and_geometry() {
    let work = tempfile::tempdir().unwrap();
    let table = common::repo().join("target/dicom-coverage.md");
    std::fs::create_dir_all(table.parent().unwrap()).unwrap();
    let json = common::run_python(
        "dicom_coverage.py",
        &[
            std::path::Path::new("--medsynth"),
            std::path::Path::new(env!("CARGO_BIN_EXE_medsynth")),
            std::path::Path::new("--work"),
            work.path(),
            std::path::Path::new("--table"),
            &table,
        ],
    );
    let records: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(records.len() >= 120, "{} files", records.len());
    let known: BTreeMap<&str, &str> = KNOWN.iter().map(|(f, s, _)| (*f, *s)).collect();
    let mut problems = Vec::new();
    let (mut dcm2niix, mut medsynth) = (0, 0);
    for r in &records {
        let file = r["file"].as_str().unwrap();
        let status = r["status"].as_str().unwrap();
        let usable = r["dcm2niix"]["usable"].as_bool() == Some(true);
        dcm2niix += usize::from(usable);
        medsynth += usize::from(r["medsynth"]["converted"].as_bool() == Some(true));
        match known.get(file) {
            Some(expected) if *expected != status => problems.push(format!(
                "{file}: known as {expected}, now {status} (update KNOWN)"
            )),
            Some(_) => {}
            None if usable
                && !matches!(
                    status,
                    "agree" | "values-close-lossy" | "dcm2niix-decodes-differently"
                ) =>
            {
                problems.push(format!("{file}: {status}"))
            }
            None if status.starts_with("medsynth-panicked") => {
                problems.push(format!("{file}: {status}"))
            }
            None => {}
        }
    }
    for (file, _, _) in KNOWN {
        if !records.iter().any(|r| r["file"] == *file) {
            problems.push(format!("{file}: listed in KNOWN but not in the test set"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(table: {})",
        problems.join("\n"),
        table.display()
    );
    assert!(
        medsynth >= dcm2niix,
        "medsynth {medsynth}, dcm2niix {dcm2niix}"
    );
}
