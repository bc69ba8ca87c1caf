//! Retrieving the studies a QIDO-RS search finds into the input cache: one folder per series,
//! named by a hash of server, study and series, holding each instance as a file named by the
//! SHA-256 of its bytes; written under a temporary name and renamed only once every instance
//! has arrived and parsed, so a partial download never counts as input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Client, DicomWebError, json_str};
use crate::names::glob_match;
use crate::progress::Progress;
use crate::spec::{DicomWebServer, SeriesMatch};

/// The marker a complete series folder holds: its instance count.
const COMPLETE: &str = ".complete";

/// What a retrieval did.
#[derive(Debug, Default)]
pub struct Retrieved {
    /// The cached series folders of the cohort, sorted.
    pub folders: Vec<PathBuf>,
    /// Series downloaded now, and series already in the cache.
    pub fetched: usize,
    pub reused: usize,
    /// Instances downloaded now.
    pub instances: usize,
}

/// One series a search found.
struct Found {
    study: String,
    series: String,
    modality: Option<String>,
    description: Option<String>,
    instances: Option<usize>,
}

/// Whether a series may be one of the pipeline's modalities, judged from what the search
/// returned (an attribute the server did not return does not rule it out).
fn wanted(found: &Found, patterns: &BTreeMap<String, SeriesMatch>) -> bool {
    patterns.values().any(|m| {
        let modality = match (&m.modality, &found.modality) {
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            _ => true,
        };
        let description = match (&m.description, &found.description) {
            (Some(want), Some(got)) => glob_match(&want.to_lowercase(), &got.to_lowercase()),
            _ => true,
        };
        modality && description
    })
}

/// Every combination of the query's values (a list searches for each of its values).
fn queries(server: &DicomWebServer) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, value) in &server.query {
        out = out
            .into_iter()
            .flat_map(|q| {
                value.values().into_iter().map(move |v| {
                    let mut q = q.clone();
                    q.push((key.clone(), v));
                    q
                })
            })
            .collect();
    }
    out
}

/// The cache folder name of a series: a hash of the server, study and series (no UID in
/// the path).
fn series_key(base: &str, study: &str, series: &str) -> String {
    let mut h = Sha256::new();
    for part in [base, study, series] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    crate::volume::hex(&h.finalize())[..32].to_owned()
}

/// Whether process `pid` may still run (its temporary folders are then left alone); without
/// `/proc` to tell, every process may.
fn alive(pid: &str) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid).exists()
}

/// Searches the server with `server.query`, and brings every series that may match one of
/// `patterns` into `cache` (those already there and complete are reused).
pub fn retrieve_cohort(
    server: &DicomWebServer,
    patterns: &BTreeMap<String, SeriesMatch>,
    cache: &Path,
) -> Result<Retrieved, DicomWebError> {
    let client = Client::new(server)?;
    let local = |what: String| client.error(what);
    std::fs::create_dir_all(cache)
        .map_err(|e| local(format!("cannot create the cache {}: {e}", cache.display())))?;
    let mut studies: Vec<String> = Vec::new();
    for q in queries(server) {
        for study in client.search("searching studies (QIDO-RS)", "/studies", &q)? {
            if let Some(uid) = json_str(&study, "0020000D")
                && !studies.contains(&uid)
            {
                studies.push(uid);
            }
        }
    }
    tracing::info!(server = %client.server(), studies = studies.len(), "studies found");
    let mut found = Vec::new();
    for study in &studies {
        let include = [
            ("includefield".to_owned(), "0008103E".to_owned()),
            ("includefield".to_owned(), "00201209".to_owned()),
        ];
        for s in client.search(
            &format!("searching the series of study {study}"),
            &format!("/studies/{study}/series"),
            &include,
        )? {
            let Some(series) = json_str(&s, "0020000E") else {
                continue;
            };
            found.push(Found {
                study: study.clone(),
                series,
                modality: json_str(&s, "00080060"),
                description: json_str(&s, "0008103E"),
                instances: json_str(&s, "00201209").and_then(|n| n.parse().ok()),
            });
        }
    }
    let selected: Vec<&Found> = found.iter().filter(|f| wanted(f, patterns)).collect();
    tracing::info!(server = %client.server(), series = found.len(), selected = selected.len(), "series found; retrieving those input.series may match");
    let mut out = Retrieved::default();
    let bar = Progress::new("dicomweb-retrieve", "series", selected.len() as u64);
    for f in &selected {
        let folder = cache.join(series_key(client.server(), &f.study, &f.series));
        let complete = std::fs::read_to_string(folder.join(COMPLETE))
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok());
        if complete.is_some() && (f.instances.is_none() || complete == f.instances) {
            out.reused += 1;
        } else {
            out.instances +=
                fetch_series(&client, f, cache, &folder).inspect_err(|_| bar.abandon())?;
            out.fetched += 1;
        }
        bar.inc(1);
        out.folders.push(folder);
    }
    bar.finish();
    out.folders.sort();
    Ok(out)
}

/// Retrieves one series into `folder` through a temporary folder beside it; on any failure
/// the temporary folder is removed and the error names the series.
fn fetch_series(
    client: &Client,
    f: &Found,
    cache: &Path,
    folder: &Path,
) -> Result<usize, DicomWebError> {
    let name = format!("series {} of study {}", f.series, f.study);
    let key = folder
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Leftovers of an interrupted run (its process gone) are removed first.
    if let Ok(entries) = std::fs::read_dir(cache) {
        for e in entries.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix(&format!(".partial-{key}-"))
                && !alive(pid)
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = cache.join(format!(".partial-{key}-{}", std::process::id()));
    let result = (|| {
        let parts =
            client.retrieve(&format!("retrieving {name} (WADO-RS)"), &f.study, &f.series)?;
        if let Some(expected) = f.instances
            && parts.len() != expected
        {
            return Err(client.error(format!(
                "retrieving {name}: {} instances arrived, the search said {expected}",
                parts.len()
            )));
        }
        if parts.is_empty() {
            return Err(client.error(format!("retrieving {name}: no instance arrived")));
        }
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| client.error(format!("cannot create {}: {e}", tmp.display())))?;
        for (i, part) in parts.iter().enumerate() {
            // Each file is named by its content's digest.
            let digest = crate::volume::hex(&Sha256::digest(part));
            let path = tmp.join(format!("{}.dcm", &digest[..32]));
            std::fs::write(&path, part)
                .map_err(|e| client.error(format!("cannot write {}: {e}", path.display())))?;
            let obj = dicom::object::open_file(&path).map_err(|e| {
                client.error(format!(
                    "retrieving {name}: instance {} is not a DICOM file: {e}",
                    i + 1
                ))
            })?;
            let uid = obj
                .element(dicom::dictionary_std::tags::SERIES_INSTANCE_UID)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_owned());
            if uid.as_deref() != Some(f.series.as_str()) {
                return Err(client.error(format!(
                    "retrieving {name}: instance {} belongs to series {}",
                    i + 1,
                    uid.unwrap_or_else(|| "(none)".into())
                )));
            }
        }
        crate::volume::AtomicFile::write(&tmp.join(COMPLETE), parts.len().to_string().as_bytes())
            .map_err(|e| client.error(format!("cannot write {}: {e}", tmp.display())))?;
        // Another process (a shard) may have completed the same series meanwhile: keep its.
        let theirs = std::fs::read_to_string(folder.join(COMPLETE)).ok();
        if theirs.as_deref().map(str::trim) == Some(parts.len().to_string().as_str()) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(parts.len());
        }
        if folder.exists() {
            std::fs::remove_dir_all(folder)
                .map_err(|e| client.error(format!("cannot replace {}: {e}", folder.display())))?;
        }
        std::fs::rename(&tmp, folder)
            .map_err(|e| client.error(format!("cannot move {} into place: {e}", tmp.display())))?;
        Ok(parts.len())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::QueryValue;

    #[test]
    fn list_values_search_one_at_a_time() {
        let server: DicomWebServer = toml::from_str(
            r#"url = "http://x"
query = { StudyInstanceUID = ["1", "2"], ModalitiesInStudy = "MR" }"#,
        )
        .unwrap();
        assert_eq!(
            server.query["ModalitiesInStudy"],
            QueryValue::One("MR".into())
        );
        let q = queries(&server);
        assert_eq!(q.len(), 2);
        assert!(
            q.iter()
                .all(|q| q.contains(&("ModalitiesInStudy".into(), "MR".into())))
        );
        assert_ne!(series_key("a", "b", "c"), series_key("a", "bc", ""));
    }
}
