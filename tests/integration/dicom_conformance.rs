//! Every kind of DICOM object medsynth writes passes dciodvfy (dicom3tools' IOD checker)
//! without an error: MR and CT Image Storage derived series, with integer and with float
//! voxels (rescaled), oblique and anisotropic; Secondary Capture for other modalities; the
//! phantom's series; `medsynth convert`'s series. Pipelines' series are checked in
//! tests/run_geometry.rs.

use crate::common;

use std::path::PathBuf;

use ::dicom::dictionary_std::tags;
use ::dicom::object as dicom_object;
use medsynth::phantom::{PhantomConfig, generate};
use medsynth::volume::dicom::{self, WriteOptions};
use medsynth::volume::{Affine, Geometry, Metadata, Source, Volume};
use ndarray::{Array4, Axis};

/// A phantom T2, LPS-stored, tilted 15 degrees about two axes, 1.1 x 0.9 x 3.3 mm voxels.
fn oblique(modality: &str, float: bool) -> Volume {
    let s = generate(
        &PhantomConfig {
            shape: [24, 28, 10],
            ..PhantomConfig::default()
        },
        0,
    );
    let (a, b) = (15f64.to_radians(), 15f64.to_radians());
    let spacing = [1.1, 0.9, 3.3];
    // Rotation about x then z, columns scaled by the spacing, LPS flips on x and y.
    let r = [
        [b.cos(), -b.sin() * a.cos(), b.sin() * a.sin()],
        [b.sin(), b.cos() * a.cos(), -b.cos() * a.sin()],
        [0.0, a.sin(), a.cos()],
    ];
    let flip = [-1.0, -1.0, 1.0];
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().take(3).enumerate() {
        for c in 0..3 {
            row[c] = r[i][c] * spacing[c] * flip[c];
        }
        row[3] = [12.5, -30.25, 7.0][i];
    }
    m[3][3] = 1.0;
    let mut data = s.images[2].1.clone().insert_axis(Axis(3));
    if float {
        data.mapv_inplace(|v| v * 0.0137 - 3.5);
    }
    Volume {
        data: Array4::from(data),
        geometry: Geometry {
            shape: [24, 28, 10],
            affine: Affine(m),
        },
        source: Source::default(),
        meta: Metadata {
            modality: Some(modality.to_owned()),
            repetition_time_ms: Some(4000.0),
            echo_time_ms: Some(90.0),
            ..Metadata::default()
        },
    }
}

#[test]
fn every_kind_of_written_series_passes_dciodvfy() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (modality, float) in [
        ("MR", false),
        ("MR", true),
        ("CT", false),
        ("CT", true),
        ("PT", true),
    ] {
        let out = dir.path().join(format!("{modality}-{float}"));
        let options = WriteOptions {
            subject: Some("sub-007".to_owned()),
            derivation: Some("medsynth test: a derived series".to_owned()),
            ..WriteOptions::default()
        };
        let written = dicom::write_series(&oblique(modality, float), &out, &options).unwrap();
        assert_eq!(written.len(), 10);
        files.extend(written);
    }
    let errors = common::dciodvfy_errors(&files);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn phantom_and_convert_series_pass_dciodvfy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let phantom = root.join("phantom");
    common::assert_success(&common::medsynth(&[
        "phantom",
        "--subjects",
        "1",
        "--shape",
        "24,24,16",
        "--format",
        "dicom",
        "--orientation",
        "LPS",
        "--tilt",
        "10,0,5",
        "--out",
        phantom.to_str().unwrap(),
    ]));
    let mut files = Vec::new();
    for contrast in ["t1", "t1ce", "t2", "flair"] {
        files.extend(common::files_in(&phantom.join("sub-001").join(contrast)));
    }
    // NIfTI to DICOM through convert, from a float volume.
    let nifti = root.join("float.nii.gz");
    medsynth::volume::write_nifti(&nifti, &oblique("MR", true), "float").unwrap();
    let converted = root.join("converted");
    common::assert_success(&common::medsynth(&[
        "convert",
        nifti.to_str().unwrap(),
        converted.to_str().unwrap(),
    ]));
    files.extend(common::files_in(&converted));
    let errors = common::dciodvfy_errors(&files);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn written_objects_say_how_they_were_made_and_that_identity_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        subject: Some("sub-007".to_owned()),
        derivation: Some("medsynth test: a derived series".to_owned()),
        ..WriteOptions::default()
    };
    let a = dicom::write_series(&oblique("MR", true), &dir.path().join("a"), &options).unwrap();
    let b = dicom::write_series(&oblique("CT", false), &dir.path().join("b"), &options).unwrap();
    let read = |p: &PathBuf| dicom_object::open_file(p).unwrap();
    let text = |o: &dicom_object::DefaultDicomObject, tag| {
        o.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_owned()
    };
    let (ma, mb) = (read(&a[0]), read(&b[0]));
    assert_eq!(text(&ma, tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.4");
    assert_eq!(text(&mb, tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.2");
    assert_eq!(text(&ma, tags::IMAGE_TYPE), "DERIVED\\SECONDARY\\OTHER");
    assert_eq!(text(&ma, tags::PATIENT_IDENTITY_REMOVED), "YES");
    assert_eq!(
        text(&ma, tags::DERIVATION_DESCRIPTION),
        "medsynth test: a derived series"
    );
    // One subject's series file into one study and frame of reference.
    for tag in [tags::STUDY_INSTANCE_UID, tags::FRAME_OF_REFERENCE_UID] {
        assert_eq!(text(&ma, tag), text(&mb, tag));
    }
    assert_ne!(
        text(&ma, tags::SERIES_INSTANCE_UID),
        text(&mb, tags::SERIES_INSTANCE_UID)
    );
    // Every decimal string fits DICOM's 16 characters.
    for tag in [
        tags::RESCALE_SLOPE,
        tags::RESCALE_INTERCEPT,
        tags::IMAGE_POSITION_PATIENT,
        tags::IMAGE_ORIENTATION_PATIENT,
        tags::PIXEL_SPACING,
    ] {
        for v in text(&ma, tag).split('\\') {
            assert!(v.len() <= 16, "{tag}: {v:?}");
        }
    }
}
