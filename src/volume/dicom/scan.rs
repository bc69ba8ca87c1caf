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

/// Scans `root` (a folder tree or a single file) and groups the images into series.
pub fn scan(root: &Path) -> Result<Scan, DicomError> {
    let mut files = Vec::new();
    if root.is_file() {
        files.push(root.to_owned());
    } else {
        walk(root, &mut files)?;
    }
    files.sort();
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
