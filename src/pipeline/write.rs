//! Writing one volume in the formats `[output]` asks for, under `dir/<subject>/`.

use std::path::{Path, PathBuf};

use crate::preprocess::LABEL;
use crate::spec::WriteFormat;
use crate::volume::{Volume, dicom, write_nifti};

/// Writes `v` (named `name`: a modality or `label`) as `dir/<subject>/<name>.nii.gz` and, for
/// images, as the DICOM series folder `dir/<subject>/<name>/`; other formats are written
/// elsewhere. `what` starts the description (e.g. "medsynth synthetic"). Returns the written
/// files and folders.
pub fn write_formats(
    dir: &Path,
    subject: &str,
    name: &str,
    v: &Volume,
    formats: &[WriteFormat],
    uid_root: Option<&str>,
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
                    uid_root: uid_root.map(str::to_owned),
                    description: format!("{what} {name}"),
                    subject: Some(subject.to_owned()),
                    ..Default::default()
                };
                let folder = dir.join(subject).join(name);
                dicom::write_series(v, &folder, &options).map_err(|e| e.to_string())?;
                written.push(folder);
            }
            _ => {}
        }
    }
    Ok(written)
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
