//! DICOM reading checked against pydicom on pydicom's own test files; series assembly,
//! splitting, gap detection and writing checked on series medsynth writes; corrupted copies
//! of real files never panic.

use crate::common;

use std::path::{Path, PathBuf};

use medsynth::phantom::{PhantomConfig, generate};
use medsynth::volume::dicom::{self, WriteOptions};
use medsynth::volume::{Geometry, Metadata, Source, Volume, nifti};
use ndarray::{Array4, Axis};
use serde_json::Value;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn pixels_match_pydicom_on_its_test_files() {
    let json = common::run_python("dicom_reference.py", &[]);
    let refs: Vec<Value> = serde_json::from_str(&json).unwrap();
    let mut compared = Vec::new();
    let mut refused = Vec::new();
    for r in &refs {
        let path = PathBuf::from(r["path"].as_str().unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ts = r["transfer_syntax"].as_str().unwrap();
        let ours = dicom::read_frames(&path);
        if r.get("undecodable").is_some() {
            // Nothing to compare with; reading must still not panic, and a refusal must say why.
            if let Err(e) = ours {
                let msg = format!("{e}");
                assert!(!msg.is_empty(), "{name}");
            }
            continue;
        }
        let (data, _) = match ours {
            Ok(x) => x,
            Err(e) => {
                let msg = format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                assert!(
                    msg.contains(ts),
                    "{name}: the error must name transfer syntax {ts}: {msg}"
                );
                // What medsynth does not decode: 32-bit samples (liver, rtdose), JPEG-LS
                // (it needs the C CharLS library) and 12-bit JPEG extended (not in the pure-Rust
                // jpeg-decoder).
                let no_codec = [
                    "1.2.840.10008.1.2.4.80",
                    "1.2.840.10008.1.2.4.81",
                    "1.2.840.10008.1.2.4.51",
                ]
                .contains(&ts);
                assert!(
                    msg.contains("BitsAllocated") || no_codec,
                    "{name}: refused unexpectedly: {msg}"
                );
                refused.push(name);
                continue;
            }
        };
        let shape = [
            r["cols"].as_u64().unwrap() as usize,
            r["rows"].as_u64().unwrap() as usize,
            r["frames"].as_u64().unwrap() as usize,
        ];
        assert_eq!(data.shape(), shape, "{name}");
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        let weighted: f64 = data
            .indexed_iter()
            .map(|((c, row, f), &v)| {
                v as f64 * (1.0 + c as f64 + 3.0 * row as f64 + 11.0 * f as f64)
            })
            .sum();
        let min = data.iter().cloned().fold(f32::INFINITY, f32::min) as f64;
        let max = data.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        assert!(
            close(min, r["min"].as_f64().unwrap(), 1e-6),
            "{name}: min {min} vs {}",
            r["min"]
        );
        assert!(
            close(max, r["max"].as_f64().unwrap(), 1e-6),
            "{name}: max {max} vs {}",
            r["max"]
        );
        assert!(
            close(sum, r["sum"].as_f64().unwrap(), 1e-6),
            "{name}: sum {sum} vs {}",
            r["sum"]
        );
        assert!(
            close(weighted, r["weighted"].as_f64().unwrap(), 1e-6),
            "{name}: weighted sum"
        );
        compared.push(name);
    }
    // Native little and big endian, implicit VR, RLE, deflate, JPEG 2000, CT rescale.
    for must in [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000.dcm",
        "J2K_pixelrep_mismatch.dcm",
    ] {
        assert!(
            compared.iter().any(|n| n == must),
            "{must} not compared (compared {compared:?}, refused {refused:?})"
        );
    }
    eprintln!("compared with pydicom: {compared:?}\nrefused (transfer syntax named): {refused:?}");
}

fn phantom_volume() -> Volume {
    let s = generate(
        &PhantomConfig {
            shape: [40, 48, 30],
            spacing_mm: [3.0; 3],
            seed: 2,
            tumour_fraction: 1.0,
            ..PhantomConfig::default()
        },
        0,
    );
    let t1 = s.images[0].1.clone().insert_axis(Axis(3));
    Volume {
        data: Array4::from(t1),
        geometry: Geometry {
            shape: [40, 48, 30],
            affine: s.affine,
        },
        source: Source::default(),
        meta: Metadata {
            modality: Some("MR".into()),
            ..Metadata::default()
        },
    }
}

fn write(volume: &Volume, dir: &Path) -> Vec<PathBuf> {
    dicom::write_series(volume, dir, &WriteOptions::default()).unwrap()
}

#[test]
fn written_series_reads_back_on_the_same_grid() {
    let dir = tempfile::tempdir().unwrap();
    let v = phantom_volume();
    let files = write(&v, dir.path());
    assert_eq!(files.len(), 30);
    let scan = dicom::scan(dir.path()).unwrap();
    assert_eq!(scan.series.len(), 1);
    assert!(scan.skipped.is_empty());
    let back = dicom::read_series(&scan.series[0]).unwrap();
    assert_eq!(back.geometry.shape, v.geometry.shape);
    for r in 0..4 {
        for c in 0..4 {
            let (a, b) = (back.geometry.affine.0[r][c], v.geometry.affine.0[r][c]);
            assert!((a - b).abs() < 1e-4, "affine[{r}][{c}]: {a} vs {b}");
        }
    }
    // Integer phantom values are stored exactly (slope 1).
    assert_eq!(back.data, v.data);
    assert_eq!(back.meta.modality.as_deref(), Some("MR"));
    // Writing is deterministic: same content, same UIDs and bytes.
    let again = tempfile::tempdir().unwrap();
    write(&v, again.path());
    for f in &files {
        let name = f.file_name().unwrap();
        assert_eq!(
            std::fs::read(f).unwrap(),
            std::fs::read(again.path().join(name)).unwrap()
        );
    }
}

#[test]
fn float_volumes_round_trip_within_the_rescale_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = phantom_volume();
    v.data.mapv_inplace(|x| x / 7.3 - 12.25);
    write(&v, dir.path());
    let scan = dicom::scan(dir.path()).unwrap();
    let back = dicom::read_series(&scan.series[0]).unwrap();
    let (lo, hi) = v.value_range().unwrap();
    let step = (hi - lo) as f64 / 65000.0;
    let worst = back
        .data
        .iter()
        .zip(v.data.iter())
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    assert!(
        worst <= step * 0.51 + 1e-4,
        "worst error {worst}, rescale step {step}"
    );
}

#[test]
fn a_missing_slice_is_refused_with_the_gap_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(&phantom_volume(), dir.path());
    std::fs::remove_file(&files[12]).unwrap();
    let scan = dicom::scan(dir.path()).unwrap();
    let e = dicom::read_series(&scan.series[0]).unwrap_err().to_string();
    assert!(
        e.contains("slice missing: 6.000 mm between")
            && e.contains("IM0012.dcm")
            && e.contains("IM0014.dcm"),
        "{e}"
    );
}

#[test]
fn series_are_grouped_by_uid_and_non_dicom_files_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = phantom_volume();
    let mut b = phantom_volume();
    b.data.mapv_inplace(|x| x + 1.0);
    write(&a, &dir.path().join("a"));
    write(&b, &dir.path().join("nested/b"));
    std::fs::write(dir.path().join("notes.txt"), "not dicom").unwrap();
    let scan = dicom::scan(dir.path()).unwrap();
    assert_eq!(scan.series.len(), 2);
    assert_eq!(scan.skipped.len(), 1);
    assert!(scan.skipped[0].path.ends_with("notes.txt"));
    for s in &scan.series {
        assert_eq!(s.slices.len(), 30);
    }
}

/// Truncations at many offsets and flipped bytes of real files from pydicom's test data:
/// errors, never panics.
#[test]
fn corrupted_copies_never_panic() {
    let json = common::run_python("dicom_reference.py", &[]);
    let refs: Vec<Value> = serde_json::from_str(&json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("corrupt.dcm");
    let mut cases = 0;
    for name in ["CT_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"] {
        let source = refs
            .iter()
            .map(|r| PathBuf::from(r["path"].as_str().unwrap()))
            .find(|p| p.ends_with(name))
            .unwrap();
        let bytes = std::fs::read(&source).unwrap();
        let variants = common::corrupted_copies(&bytes, bytes.len() / 80, 80, 4);
        for (n, v) in variants.iter().enumerate() {
            std::fs::write(&target, v).unwrap();
            let frames = std::panic::catch_unwind(|| dicom::read_frames(&target).map(|_| ()));
            assert!(frames.is_ok(), "{name}: reading a corrupted copy panicked");
            if n % 4 != 0 {
                cases += 1;
                continue;
            }
            let series = std::panic::catch_unwind(|| {
                dicom::scan(dir.path()).map(|s| {
                    s.series
                        .iter()
                        .filter(|x| dicom::read_series(x).is_ok())
                        .count()
                })
            });
            assert!(
                series.is_ok(),
                "{name}: assembling a corrupted copy panicked"
            );
            cases += 1;
        }
    }
    assert!(cases > 400, "{cases}");
}

/// Rewrites a DICOM file after `edit`.
fn edit_file(path: &Path, edit: impl FnOnce(&mut dicom_object::InMemDicomObject)) {
    let mut obj = dicom_object::open_file(path).unwrap();
    edit(&mut obj);
    obj.write_to_file(path).unwrap();
}

use medsynth_dicom::{DataElement, PrimitiveValue, VR, tags};

mod medsynth_dicom {
    pub use ::dicom::core::{DataElement, PrimitiveValue, VR};
    pub use ::dicom::dictionary_std::tags;
}
use ::dicom::object as dicom_object;

#[test]
fn a_series_mixing_echoes_or_orientations_is_split_like_dcm2niix() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(&phantom_volume(), dir.path());
    // Odd files become echo 2: two interleaved volumes under one SeriesInstanceUID.
    for f in files.iter().skip(1).step_by(2) {
        edit_file(f, |o| {
            o.put(DataElement::new(
                tags::ECHO_NUMBERS,
                VR::IS,
                PrimitiveValue::from("2"),
            ));
        });
    }
    let scan = dicom::scan(dir.path()).unwrap();
    assert_eq!(
        scan.series.len(),
        2,
        "{:?}",
        scan.series.iter().map(|s| &s.label).collect::<Vec<_>>()
    );
    assert_eq!(scan.series[0].uid, scan.series[1].uid);
    assert!(scan.series[1].label.ends_with("(part 2)"));
    for s in &scan.series {
        assert_eq!(s.slices.len(), 15);
        // Each echo is a volume with twice the slice spacing.
        let v = dicom::read_series(s).unwrap();
        assert_eq!(v.geometry.shape[2], 15);
        assert!((v.geometry.spacing()[2] - 6.0).abs() < 1e-6);
    }
    // A slice with another orientation is split off too.
    let dir = tempfile::tempdir().unwrap();
    let files = write(&phantom_volume(), dir.path());
    edit_file(&files[3], |o| {
        o.put(DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            PrimitiveValue::from("0\\1\\0\\0\\0\\-1"),
        ));
    });
    let scan = dicom::scan(dir.path()).unwrap();
    assert_eq!(scan.series.len(), 2);
}

#[test]
fn missing_geometry_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(&phantom_volume(), dir.path());
    edit_file(&files[5], |o| {
        o.remove_element(tags::IMAGE_POSITION_PATIENT);
    });
    let scan = dicom::scan(dir.path()).unwrap();
    let e = dicom::read_series(&scan.series[0]).unwrap_err().to_string();
    assert!(
        e.contains("IM0006.dcm: missing ImagePositionPatient (0020,0032)"),
        "{e}"
    );
}

#[test]
fn monochrome1_is_inverted_to_read_like_monochrome2() {
    let dir = tempfile::tempdir().unwrap();
    let v = phantom_volume();
    let files = write(&v, dir.path());
    for f in &files {
        edit_file(f, |o| {
            o.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("MONOCHROME1"),
            ));
        });
    }
    let scan = dicom::scan(dir.path()).unwrap();
    let back = dicom::read_series(&scan.series[0]).unwrap();
    // Signed 16-bit storage: inversion maps v to (min + max) - v = -1 - v.
    for (a, b) in back.data.iter().zip(v.data.iter()) {
        assert_eq!(*a, -1.0 - *b);
    }
}

/// An enhanced multi-frame object (one file, per-frame positions and rescales in functional
/// group sequences, frames stored out of order) reads as the volume it was made from.
#[test]
fn enhanced_multiframe_objects_read_with_per_frame_positions() {
    use ::dicom::core::value::DataSetSequence;
    use ::dicom::object::{FileMetaTableBuilder, InMemDicomObject};
    let dir = tempfile::tempdir().unwrap();
    let v = phantom_volume();
    let files = write(&v, &dir.path().join("classic"));
    let n = files.len();
    // Frames in a scrambled order, each keeping its own position; rescale differs per frame.
    let order: Vec<usize> = (0..n).map(|i| (i * 7) % n).collect();
    let sources: Vec<_> = files
        .iter()
        .map(|f| dicom_object::open_file(f).unwrap())
        .collect();
    let first = &sources[0];
    let get = |o: &dicom_object::DefaultDicomObject, t| {
        o.element(t).unwrap().to_str().unwrap().into_owned()
    };
    let mut pixels: Vec<u16> = Vec::new();
    let mut per_frame = Vec::new();
    for (frame, &src) in order.iter().enumerate() {
        let o = &sources[src];
        let stored: Vec<u16> = o
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_multi_int::<u16>()
            .unwrap();
        // Frame f stores (v - f) with intercept f, so the modality values are unchanged.
        pixels.extend(stored.iter().map(|&s| (s as i16 - frame as i16) as u16));
        let mut position = InMemDicomObject::new_empty();
        position.put(DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            PrimitiveValue::from(get(o, tags::IMAGE_POSITION_PATIENT)),
        ));
        let mut transform = InMemDicomObject::new_empty();
        transform.put(DataElement::new(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            PrimitiveValue::from(frame.to_string()),
        ));
        transform.put(DataElement::new(
            tags::RESCALE_SLOPE,
            VR::DS,
            PrimitiveValue::from("1"),
        ));
        let mut group = InMemDicomObject::new_empty();
        group.put(DataElement::new(
            tags::PLANE_POSITION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![position]),
        ));
        group.put(DataElement::new(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![transform]),
        ));
        per_frame.push(group);
    }
    let mut orientation = InMemDicomObject::new_empty();
    orientation.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        PrimitiveValue::from(get(first, tags::IMAGE_ORIENTATION_PATIENT)),
    ));
    let mut measures = InMemDicomObject::new_empty();
    measures.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        PrimitiveValue::from(get(first, tags::PIXEL_SPACING)),
    ));
    let mut shared = InMemDicomObject::new_empty();
    shared.put(DataElement::new(
        tags::PLANE_ORIENTATION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![orientation]),
    ));
    shared.put(DataElement::new(
        tags::PIXEL_MEASURES_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![measures]),
    ));
    let mut obj = InMemDicomObject::new_empty();
    for t in [
        tags::SERIES_INSTANCE_UID,
        tags::STUDY_INSTANCE_UID,
        tags::MODALITY,
    ] {
        obj.put(first.element(t).unwrap().clone());
    }
    for t in [
        tags::ROWS,
        tags::COLUMNS,
        tags::BITS_ALLOCATED,
        tags::BITS_STORED,
        tags::HIGH_BIT,
        tags::PIXEL_REPRESENTATION,
        tags::SAMPLES_PER_PIXEL,
        tags::PHOTOMETRIC_INTERPRETATION,
    ] {
        obj.put(first.element(t).unwrap().clone());
    }
    obj.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.4.1"),
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("2.25.1234"),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(n.to_string()),
    ));
    obj.put(DataElement::new(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![shared]),
    ));
    obj.put(DataElement::new(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(per_frame),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    let path = dir.path().join("enhanced/multiframe.dcm");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"))
        .unwrap()
        .write_to_file(&path)
        .unwrap();

    let scan = dicom::scan(path.parent().unwrap()).unwrap();
    assert_eq!(scan.series.len(), 1);
    let back = dicom::read_series(&scan.series[0]).unwrap();
    assert_eq!(back.geometry.shape, v.geometry.shape);
    for r in 0..4 {
        for c in 0..4 {
            assert!((back.geometry.affine.0[r][c] - v.geometry.affine.0[r][c]).abs() < 1e-4);
        }
    }
    assert_eq!(back.data, v.data);
}

/// Several planes at each position (diffusion directions, dynamic phases) make a 4-D volume:
/// volume t holds the t-th plane at each position, in instance then file order, as dcm2niix
/// assembles them; `convert` writes it as 4-D NIfTI.
#[test]
fn a_series_with_several_volumes_at_each_position_reads_as_4d() {
    let dir = tempfile::tempdir().unwrap();
    let a = phantom_volume();
    let mut b = a.clone();
    b.data.mapv_inplace(|v| v * 2.0 + 7.0);
    let files_a = write(&a, &dir.path().join("a"));
    let files_b = write(&b, &dir.path().join("b"));
    let uid = "1.2.826.0.1.3680043.10.543.4";
    for f in files_a.iter().chain(&files_b) {
        edit_file(f, |o| {
            o.put(DataElement::new(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(uid),
            ));
        });
    }
    let scan = dicom::scan(dir.path()).unwrap();
    assert_eq!(scan.series.len(), 1);
    let v = dicom::read_series(&scan.series[0]).unwrap();
    assert_eq!(v.frames(), 2);
    assert_eq!(v.geometry.shape, a.geometry.shape);
    let single =
        dicom::read_series(&dicom::scan(&dir.path().join("a")).unwrap().series[0]).unwrap();
    assert_eq!(v.geometry, single.geometry);
    assert_eq!(v.frame(0), single.frame(0));
    let doubled = single.frame(0).mapv(|x| x * 2.0 + 7.0);
    let worst = v
        .frame(1)
        .iter()
        .zip(doubled.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.01, "{worst}");
    // 4-D NIfTI out, read back by nibabel's rules (medsynth's reader).
    let out = dir.path().join("4d.nii.gz");
    let o = common::medsynth(&[
        "convert",
        dir.path().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    common::assert_success(&o);
    let back = nifti::read(&out).unwrap();
    assert_eq!(back.frames(), 2);
    assert_eq!(back.frame(1), v.frame(1));
    // A pipeline refuses it, naming the series.
    let root = tempfile::tempdir().unwrap();
    let subject = root.path().join("data/sub-01");
    std::fs::create_dir_all(&subject).unwrap();
    for f in files_a.iter().chain(&files_b) {
        let to = subject.join(format!(
            "{}-{}",
            f.parent().unwrap().file_name().unwrap().to_string_lossy(),
            f.file_name().unwrap().to_string_lossy()
        ));
        std::fs::copy(f, to).unwrap();
    }
    let file = root.path().join("p.toml");
    std::fs::write(
        &file,
        "[pipeline]\nname = \"four\"\nseed = 1\n\n[input]\nformat = \"dicom\"\nroot = \"data\"\nseries = { t1 = { modality = \"MR\" } }\n\n[preprocess]\nsize = [32, 32]\nslices = { axis = \"axial\", min_foreground = 0.1 }\nsplit = { train = 1.0, val = 0.0, test = 0.0 }\n",
    )
    .unwrap();
    let o = common::run_pipeline(root.path(), &file);
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(
        text.contains(&format!("(series {uid}) holds 2 volumes")),
        "{text}"
    );
    // A series whose positions repeat unevenly is neither 3-D nor 4-D: refused, named.
    std::fs::remove_file(&files_b[4]).unwrap();
    let scan = dicom::scan(dir.path()).unwrap();
    let e = dicom::read_series(&scan.series[0]).unwrap_err().to_string();
    assert!(
        e.contains("neither one 3-D volume nor a regular 4-D series"),
        "{e}"
    );
}

/// Files without orientation, positions or pixel spacing read with the geometry assumed
/// (identity orientation, planes stacked from the origin, 1 mm pixels), each assumption
/// listed; a pipeline refuses such a series unless `input.assume_geometry = true`.
#[test]
fn missing_geometry_is_assumed_for_convert_and_refused_by_pipelines() {
    let root = tempfile::tempdir().unwrap();
    let subject = root.path().join("data/sub-01/t1");
    let files = write(&phantom_volume(), &subject);
    for f in &files {
        edit_file(f, |o| {
            o.remove_element(tags::IMAGE_POSITION_PATIENT);
            o.remove_element(tags::IMAGE_ORIENTATION_PATIENT);
            o.remove_element(tags::PIXEL_SPACING);
        });
    }
    let v = dicom::read_series(&dicom::scan(&subject).unwrap().series[0]).unwrap();
    assert_eq!(
        v.meta.assumed_geometry.len(),
        3,
        "{:?}",
        v.meta.assumed_geometry
    );
    assert_eq!(v.geometry.shape, [40, 48, 30]);
    let s = v.geometry.spacing();
    assert!(
        (s[0] - 1.0).abs() < 1e-9 && (s[1] - 1.0).abs() < 1e-9,
        "{s:?}"
    );
    let out = root.path().join("t1.nii.gz");
    let o = common::medsynth(&["convert", subject.to_str().unwrap(), out.to_str().unwrap()]);
    common::assert_success(&o);
    assert!(common::stderr(&o).contains("no ImageOrientationPatient"));

    let pipeline = |assume: bool| {
        format!(
            r#"
[pipeline]
name = "assumed-{assume}"
seed = 1

[input]
format = "dicom"
root = "data"
subject_glob = "sub-*"
series = {{ t1 = {{ modality = "MR" }} }}
assume_geometry = {assume}

[preprocess]
size = [32, 32]
slices = {{ axis = "axial", min_foreground = 0.1 }}
split = {{ train = 1.0, val = 0.0, test = 0.0 }}
"#
        )
    };
    let file = root.path().join("refused.toml");
    std::fs::write(&file, pipeline(false)).unwrap();
    let o = common::run_pipeline(root.path(), &file);
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(
        text.contains("lacks real geometry") && text.contains("input.assume_geometry = true"),
        "{text}"
    );
    let file = root.path().join("assumed.toml");
    std::fs::write(&file, pipeline(true)).unwrap();
    common::assert_success(&common::run_pipeline(root.path(), &file));
}
