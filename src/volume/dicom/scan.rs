//! Scanning a folder tree for DICOM images and grouping them into series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::header::{SliceHeader, read_header};
use super::{DicomError, Series};

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What a scan found: the series, sorted by UID and split label, and the skipped files.
#[derive(Debug, Clone)]
pub struct Scan {
    pub series: Vec<Series>,
    pub skipped: Vec<Skipped>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DicomError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DicomError::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| DicomError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|source| DicomError::ReadDir {
            path: path.clone(),
            source,
        })?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Rounds for grouping: values equal to about 1e-4 share a key.
fn key(v: f64) -> i64 {
    (v * 1e4).round() as i64
}

/// The files a DICOMDIR (the index of a CD or PACS export) names in its image records'
/// ReferencedFileID, relative to its folder; only those that exist.
fn dicomdir_files(dicomdir: &Path) -> Result<Vec<PathBuf>, DicomError> {
    use dicom::dictionary_std::tags;
    let obj = dicom::object::open_file(dicomdir).map_err(|source| DicomError::Open {
        path: dicomdir.to_owned(),
        source: Box::new(source),
    })?;
    let base = dicomdir.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    let records = obj
        .get(tags::DIRECTORY_RECORD_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[]);
    for record in records {
        let Some(id) = record
            .get(tags::REFERENCED_FILE_ID)
            .and_then(|e| e.to_multi_str().ok())
        else {
            continue;
        };
        let mut path = base.to_owned();
        for part in id.iter() {
            let part = part.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            // Components are plain names; anything else would leave the export's folder.
            if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\\']) {
                continue;
            }
            path.push(part);
        }
        if path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

/// Scans `root` (a folder tree or a single file) and groups the images into series. A
/// folder with a DICOMDIR is read through it: the files its records name.
pub fn scan(root: &Path) -> Result<Scan, DicomError> {
    let mut files = Vec::new();
    let dicomdir = root.join("DICOMDIR");
    if root.is_file() {
        files.push(root.to_owned());
    } else if dicomdir.is_file() {
        files = dicomdir_files(&dicomdir)?;
        tracing::info!(files = files.len(), dicomdir = %dicomdir.display(), "reading the files a DICOMDIR names");
    } else {
        walk(root, &mut files)?;
    }
    files.sort();
    files.dedup();
    let results: Vec<Result<SliceHeader, Skipped>> = files
        .par_iter()
        .map(|p| {
            read_header(p).map_err(|e| Skipped {
                path: p.clone(),
                reason: error_chain(&e),
            })
        })
        .collect();
    let mut skipped = Vec::new();
    let mut groups: BTreeMap<(String, Vec<i64>), Vec<SliceHeader>> = BTreeMap::new();
    for r in results {
        match r {
            Ok(mut h) => {
                // A file without SeriesInstanceUID is a series of its own, named by its path.
                if h.series_uid.is_none() {
                    tracing::debug!(file = %h.path.display(), "no SeriesInstanceUID (0020,000E): read as a series of its own");
                    h.series_uid = Some(format!("(no SeriesInstanceUID) {}", h.path.display()));
                }
                // dcm2niix splits a series by orientation, size, spacing and echo.
                let mut split = vec![h.rows as i64, h.cols as i64, h.samples_per_pixel as i64];
                split.extend(h.orientation.unwrap_or([0.0; 6]).map(key));
                split.extend(h.pixel_spacing.unwrap_or([0.0; 2]).map(key));
                split.push(h.echo_number.unwrap_or(0));
                split.push(h.echo_time_ms.map_or(0, key));
                groups
                    .entry((h.series_uid.clone().unwrap_or_default(), split))
                    .or_default()
                    .push(h);
            }
            Err(s) => {
                tracing::debug!(file = %s.path.display(), reason = %s.reason, "skipped");
                skipped.push(s);
            }
        }
    }
    let mut per_uid: BTreeMap<String, usize> = BTreeMap::new();
    let mut series = Vec::new();
    for ((uid, _), slices) in groups {
        let n = per_uid.entry(uid.clone()).or_insert(0);
        *n += 1;
        series.push(Series::new(uid, *n, slices));
    }
    // Label the parts of a split series: the first keeps the plain UID.
    for s in series.iter_mut() {
        if per_uid.get(&s.uid).copied().unwrap_or(1) > 1 {
            s.label = format!("{} (part {})", s.uid, s.part);
        }
    }
    if !skipped.is_empty() {
        tracing::info!(
            count = skipped.len(),
            "files skipped as not DICOM images (see -v for reasons)"
        );
    }
    Ok(Scan { series, skipped })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
