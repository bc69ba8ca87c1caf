//! Writing one volume in the formats `[output]` asks for, under `dir/<subject>/`.

use std::path::{Path, PathBuf};

use ndarray::Axis;

use crate::preprocess::LABEL;
use crate::report::{Picture, grey, grid, heat};
use crate::spec::WriteFormat;
use crate::volume::{Volume, dicom, write_nifti};

/// Writes `v` (named `name`: a modality or `label`) as `dir/<subject>/<name>.nii.gz`, for
/// images as the DICOM series folder `dir/<subject>/<name>/`, and as a PNG mosaic of its
/// axial planes `dir/<subject>/<name>.png`; other formats are written elsewhere. `what` starts
/// the description (e.g. "medsynth synthetic"); a DICOM series takes its UID root and
/// derivation from `dicom` and its description and subject from here. Returns the written
/// files and folders.
pub fn write_formats(
    dir: &Path,
    subject: &str,
    name: &str,
    v: &Volume,
    formats: &[WriteFormat],
    dicom: &dicom::WriteOptions,
    what: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for format in formats {
        match format {
            WriteFormat::Nifti => {
                let path = dir.join(subject).join(format!("{name}.nii.gz"));
                write_nifti(&path, v, &format!("{what} {name}")).map_err(|e| e.to_string())?;
                written.push(path);
            }
            WriteFormat::Dicom if name != LABEL => {
                let options = dicom::WriteOptions {
                    description: format!("{what} {name}"),
                    subject: Some(subject.to_owned()),
                    ..dicom.clone()
                };
                let folder = dir.join(subject).join(name);
                dicom::write_series(v, &folder, &options).map_err(|e| e.to_string())?;
                written.push(folder);
            }
            WriteFormat::Png => {
                let path = dir.join(subject).join(format!("{name}.png"));
                mosaic(v, name == LABEL).save(&path)?;
                written.push(path);
            }
            _ => {}
        }
    }
    Ok(written)
}

/// Every plane along the volume's third axis as a tile (first voxel axis across, second up),
/// in rows of up to eight; images windowed to their 1st-99th percentile, labels coloured.
pub fn mosaic(v: &Volume, label: bool) -> Picture {
    let frame = v.frame(0);
    let (lo, hi) = if label {
        (0.0, frame.iter().copied().fold(1.0f32, f32::max))
    } else {
        let mut values: Vec<f32> = frame.iter().copied().filter(|x| x.is_finite()).collect();
        values.sort_by(f32::total_cmp);
        let at = |q: f64| {
            values
                .get(((values.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        (at(0.01), at(0.99))
    };
    let planes: Vec<Picture> = (0..frame.shape()[2])
        .map(|k| {
            // [i, j] -> rows j, columns i: grey/heat draw row 0 at the bottom.
            let plane = frame.index_axis(Axis(2), k).reversed_axes();
            if label {
                heat(plane, lo, hi)
            } else {
                grey(plane, lo, hi)
            }
        })
        .collect();
    let rows: Vec<Vec<Picture>> = planes.chunks(8).map(<[Picture]>::to_vec).collect();
    grid(&rows, 2)
}

/// The files among written files and folders (a DICOM series is a folder of files).
pub fn files_of(written: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in written {
        if p.is_dir() {
            let mut f: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            f.sort();
            out.extend(f);
        } else {
            out.push(p.clone());
        }
    }
    out
}
