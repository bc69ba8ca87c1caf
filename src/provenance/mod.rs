//! The provenance table: one row per written artifact, saying what it was made from, by which
//! stage, settings, seed and medsynth version. Written as `provenance.parquet` through polars.
//! Subjects appear only by their pseudonymous identifier; no patient data is ever recorded.

use std::path::Path;

use polars::prelude::*;

/// One written artifact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvenanceRow {
    /// Path of the artifact, relative to the run folder.
    pub artifact: String,
    pub sha256: String,
    /// What it is: `volume`, `slice-shard`, `manifest`, `checkpoint`, `report`, ...
    pub kind: String,
    /// Pseudonymous subject identifier (e.g. the subject folder name); empty for run-level artifacts.
    pub subject: String,
    /// Source files, `;`-separated, and their SHA-256 in the same order.
    pub sources: String,
    pub source_sha256: String,
    /// DICOM SeriesInstanceUIDs of the sources, `;`-separated.
    pub source_series_uids: String,
    /// The stage that wrote it: `input`, `preprocess`, `train`, `synthesize`, `evaluate`, `output`.
    pub stage: String,
    /// Hash of the pipeline settings that produced it.
    pub config_hash: String,
    pub checkpoint_sha256: String,
    /// Sampler and guidance settings (JSON), for synthesized artifacts.
    pub sampler: String,
    pub guidance: String,
    pub seed: u64,
    pub medsynth_version: String,
    /// The source tree's git commit, when known.
    pub git_commit: String,
    /// RFC 3339 UTC times.
    pub started: String,
    pub finished: String,
}

/// Writes the table atomically.
pub fn write(path: &Path, rows: &[ProvenanceRow]) -> Result<(), crate::dataset::StoreError> {
    let err =
        |source: Box<dyn std::error::Error + Send + Sync>| crate::dataset::StoreError::Write {
            path: path.to_owned(),
            source,
        };
    let text = |name: &str, f: fn(&ProvenanceRow) -> &String| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(r).clone()).collect::<Vec<String>>(),
        )
    };
    let mut df = DataFrame::new_infer_height(vec![
        text("artifact", |r| &r.artifact),
        text("sha256", |r| &r.sha256),
        text("kind", |r| &r.kind),
        text("subject", |r| &r.subject),
        text("sources", |r| &r.sources),
        text("source_sha256", |r| &r.source_sha256),
        text("source_series_uids", |r| &r.source_series_uids),
        text("stage", |r| &r.stage),
        text("config_hash", |r| &r.config_hash),
        text("checkpoint_sha256", |r| &r.checkpoint_sha256),
        text("sampler", |r| &r.sampler),
        text("guidance", |r| &r.guidance),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        text("medsynth_version", |r| &r.medsynth_version),
        text("git_commit", |r| &r.git_commit),
        text("started", |r| &r.started),
        text("finished", |r| &r.finished),
    ])
    .map_err(|e| err(Box::new(e)))?;
    crate::dataset::write_parquet(path, &mut df)
}

/// Reads a table written by [`write()`].
pub fn read(path: &Path) -> Result<Vec<ProvenanceRow>, crate::dataset::StoreError> {
    use crate::dataset::{read_parquet, text_column};
    let df = read_parquet(path)?;
    let text = |name: &str| text_column(&df, path, name);
    let seeds: Vec<u64> = df
        .column("seed")
        .and_then(|c| c.u64().cloned())
        .map_err(|e| crate::dataset::StoreError::Invalid {
            path: path.to_owned(),
            what: format!("column seed: {e}"),
        })?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect();
    let columns = [
        "artifact",
        "sha256",
        "kind",
        "subject",
        "sources",
        "source_sha256",
        "source_series_uids",
        "stage",
        "config_hash",
        "checkpoint_sha256",
        "sampler",
        "guidance",
        "medsynth_version",
        "git_commit",
        "started",
        "finished",
    ];
    let mut c: Vec<std::vec::IntoIter<String>> = columns
        .iter()
        .map(|n| text(n).map(Vec::into_iter))
        .collect::<Result<_, _>>()?;
    let mut next = |i: usize| c[i].next().unwrap_or_default();
    Ok(seeds
        .into_iter()
        .map(|seed| ProvenanceRow {
            artifact: next(0),
            sha256: next(1),
            kind: next(2),
            subject: next(3),
            sources: next(4),
            source_sha256: next(5),
            source_series_uids: next(6),
            stage: next(7),
            config_hash: next(8),
            checkpoint_sha256: next(9),
            sampler: next(10),
            guidance: next(11),
            seed,
            medsynth_version: next(12),
            git_commit: next(13),
            started: next(14),
            finished: next(15),
        })
        .collect())
}

/// The current time as RFC 3339 UTC, to the second.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// SHA-256 (hex) of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    crate::preprocess::file_digest(path).map(|d| crate::volume::hex(&d))
}
