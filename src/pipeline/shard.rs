//! Splitting a run's subjects across processes: shard `K/N` (K from 0) owns the subjects whose
//! stable hash falls in it, so the assignment depends on neither the order subjects are found
//! in nor on the other shards. Each shard writes into `RUN_DIR/shards/K-of-N/` with the run
//! folder's layout, except the slice store, which all shards fill side by side (one file per
//! subject). What a shard prepared is recorded in its `prepared.json`; the training job and
//! `medsynth merge` read those records.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::error::RunError;
use super::handoff::Skip;
use super::stage::Stage;

/// One shard of a run: `index` of `count`, `index` from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The shard a subject belongs to among `count`: SHA-256 of its id, modulo `count`.
    pub fn of(subject: &str, count: usize) -> usize {
        let digest = Sha256::digest(format!("medsynth-shard\0{subject}").as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_le_bytes(head) % count.max(1) as u64) as usize
    }

    /// Whether this shard owns `subject`.
    pub fn owns(&self, subject: &str) -> bool {
        Shard::of(subject, self.count) == self.index
    }

    /// The shard's folder inside the run folder.
    pub fn folder(&self, run_dir: &Path) -> PathBuf {
        shards_dir(run_dir).join(self.to_string())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-of-{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N`, with `0 <= K < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected K/N with 0 <= K < N, e.g. 0/3");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Where the shards of a run keep their folders and records.
pub fn shards_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("shards")
}

/// What a shard's preprocessing left, for the training job and for merge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// The slice store's key and folder, the same in every shard of a run.
    pub key: String,
    pub store: PathBuf,
    pub channels: Vec<String>,
    /// The run root relative paths of the pipeline file resolve against, as the shard was
    /// given it, and made absolute.
    pub root: PathBuf,
    pub root_absolute: PathBuf,
    /// Subjects of this shard in the store.
    pub subjects: Vec<String>,
    /// Subjects of this shard left out, with the stage and reason.
    pub skipped: Vec<SkipRecord>,
}

/// What the training job left for the shards to apply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trained {
    pub checkpoint: PathBuf,
}

/// What a shard's synthesis and evaluation were done with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub checkpoint: PathBuf,
    pub subjects: Vec<String>,
}

/// A [`Skip`] as recorded in a file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkipRecord {
    pub subject: String,
    pub stage: String,
    pub reason: String,
}

impl From<&Skip> for SkipRecord {
    fn from(s: &Skip) -> Self {
        SkipRecord {
            subject: s.subject.clone(),
            stage: s.stage.to_string(),
            reason: s.reason.clone(),
        }
    }
}

impl SkipRecord {
    pub fn to_skip(&self) -> Skip {
        Skip {
            subject: self.subject.clone(),
            stage: Stage::from_name(&self.stage).unwrap_or(Stage::Input),
            reason: self.reason.clone(),
        }
    }
}

/// The file a shard's preprocessing record is kept in.
pub const PREPARED: &str = "prepared.json";
/// The file a shard writes when its synthesis and evaluation are done.
pub const APPLIED: &str = "applied.json";
/// The file the training job writes beside the shards: the checkpoint to apply.
pub const TRAINED: &str = "trained.json";

/// Reads a JSON record, naming the file on failure.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a medsynth record: {e}", path.display()))
}

/// Writes a JSON record atomically.
pub fn write_record<T: serde::Serialize>(
    path: &Path,
    value: &T,
    stage: Stage,
) -> Result<(), RunError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| RunError::failed(stage, path, e))?;
    crate::volume::AtomicFile::write(path, &text).map_err(|e| RunError::failed(stage, path, e))
}

/// Every shard's preprocessing record, in shard order; fails naming the shards that have not
/// finished preprocessing.
pub fn prepared(run_dir: &Path, count: usize) -> Result<Vec<Prepared>, RunError> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for index in 0..count {
        let shard = Shard { index, count };
        let path = shard.folder(run_dir).join(PREPARED);
        if !path.is_file() {
            missing.push(format!("{index}/{count}"));
            continue;
        }
        out.push(
            read_record::<Prepared>(&path)
                .map_err(|e| RunError::failed(Stage::Preprocess, &path, e))?,
        );
    }
    if !missing.is_empty() {
        return Err(RunError::Nothing {
            stage: Stage::Preprocess,
            what: format!(
                "shard(s) {} of {} have not finished preprocessing (no {PREPARED} in {}); run them with `medsynth run FILE --shard K/N`",
                missing.join(", "),
                run_dir.display(),
                shards_dir(run_dir).display()
            ),
        });
    }
    if let Some(first) = out.first()
        && let Some(other) = out.iter().find(|p| p.key != first.key)
    {
        return Err(RunError::Nothing {
            stage: Stage::Preprocess,
            what: format!(
                "the shards were preprocessed with different settings or cohorts (slice stores {} and {}); re-run them with one pipeline file",
                first.store.display(),
                other.store.display()
            ),
        });
    }
    Ok(out)
}

/// The shard counts found under `RUN_DIR/shards/` (folders named `K-of-N`).
pub fn counts_found(run_dir: &Path) -> Vec<usize> {
    let mut out: Vec<usize> = std::fs::read_dir(shards_dir(run_dir))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (k, n) = name.split_once("-of-")?;
            k.parse::<usize>().ok()?;
            n.parse::<usize>().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "2/3".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 3 }
        );
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn assignment_is_stable_and_covers_every_shard() {
        let ids: Vec<String> = (0..300).map(|i| format!("sub-{i:04}")).collect();
        let mut per = [0usize; 3];
        for id in &ids {
            let k = Shard::of(id, 3);
            assert_eq!(k, Shard::of(id, 3));
            per[k] += 1;
        }
        // Roughly even: every shard gets between 20 % and 47 % of 300 subjects.
        assert!(per.iter().all(|&n| (60..140).contains(&n)), "{per:?}");
        // The same id goes to the same shard whatever else is in the cohort.
        assert_eq!(Shard::of("sub-0007", 3), Shard::of("sub-0007", 3));
    }
}
