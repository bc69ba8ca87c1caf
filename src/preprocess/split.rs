//! Assigning subjects to train / val / test: by subject, so no subject is in two splits;
//! deterministic from the seed; each subject's rank comes from a hash of (seed, subject id),
//! so adding subjects moves only those near the cut points.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::spec::{SplitConfig, SplitName};

/// Splits `subjects` by the fractions of `config`, using `seed`. Counts are the fractions
/// times the number of subjects, rounded by largest remainder so they add up.
pub fn assign(subjects: &[String], config: &SplitConfig, seed: u64) -> BTreeMap<String, SplitName> {
    let mut ranked: Vec<(&String, [u8; 32])> = subjects
        .iter()
        .map(|s| {
            let mut h = Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(s.as_bytes());
            (s, h.finalize().into())
        })
        .collect();
    ranked.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    ranked.dedup_by(|a, b| a.0 == b.0);
    let n = ranked.len();
    let fractions = [config.train, config.val, config.test];
    let exact: Vec<f64> = fractions.iter().map(|f| f * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut left = n.saturating_sub(counts.iter().sum());
    for &i in order.iter().cycle().take(3 * n.max(1)) {
        if left == 0 {
            break;
        }
        if fractions[i] > 0.0 {
            counts[i] += 1;
            left -= 1;
        }
    }
    let names = [SplitName::Train, SplitName::Val, SplitName::Test];
    let mut out = BTreeMap::new();
    let mut it = ranked.into_iter();
    for (name, count) in names.iter().zip(counts) {
        for (s, _) in it.by_ref().take(count) {
            out.insert(s.clone(), *name);
        }
    }
    out
}

/// The key of a preprocessed dataset: a hash of what produced it (the preprocessing section,
/// the run's seed, which draws the splits, and the cohort's identity: its subjects and a split
/// list's digest), so a re-run with the same cohort and settings finds it and any changed
/// setting or subject makes a new one. It needs no input's content, so every shard of a run
/// computes it alone; the store checks each subject's input digests instead.
/// `inputs` are (subject, modality, SHA-256).
pub fn cache_key(
    config: &crate::spec::PreprocessSection,
    seed: u64,
    inputs: &[(String, String, String)],
) -> String {
    let mut sorted: Vec<&(String, String, String)> = inputs.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    // Bump when the meaning of a preprocessing step changes, to invalidate old stores.
    h.update(b"medsynth-preprocess-v3\0");
    h.update(serde_json::to_vec(config).unwrap_or_default());
    h.update(seed.to_le_bytes());
    for (subject, modality, sha) in sorted {
        for part in [subject, modality, sha] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    crate::volume::hex(&h.finalize())
}

/// Reads a user's split list: a CSV file (a header with `subject` and `split` columns, comma
/// separated, no quoting) or a parquet file with those columns. Splits are `train`, `val` or
/// `test`; a subject listed twice is an error.
pub fn read_list(
    path: &std::path::Path,
) -> Result<BTreeMap<String, SplitName>, super::PreprocessError> {
    let bad = |what: String| super::PreprocessError::Config {
        step: "split",
        what: format!("preprocess.split.list {}: {what}", path.display()),
    };
    let pairs: Vec<(String, String)> = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        use polars::prelude::*;
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let df = ParquetReader::new(file)
            .finish()
            .map_err(|e| bad(format!("not a readable parquet file: {e}")))?;
        let column = |name: &str| -> Result<Vec<String>, super::PreprocessError> {
            let c = df
                .column(name)
                .and_then(|c| c.str().cloned())
                .map_err(|e| bad(format!("needs a text column {name:?}: {e}")))?;
            Ok(c.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
        };
        column("subject")?
            .into_iter()
            .zip(column("split")?)
            .collect()
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .ok_or_else(|| bad("the file is empty".into()))?;
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |n: &str| {
            names
                .iter()
                .position(|h| *h == n)
                .ok_or_else(|| bad(format!("the header {header:?} has no {n:?} column")))
        };
        let (s, p) = (find("subject")?, find("split")?);
        lines
            .map(|(i, line)| {
                let cells: Vec<&str> = line.split(',').map(str::trim).collect();
                match (cells.get(s), cells.get(p)) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(bad(format!(
                        "line {}: {} cells, expected {}",
                        i + 1,
                        cells.len(),
                        names.len()
                    ))),
                }
            })
            .collect::<Result<_, _>>()?
    };
    let mut out = BTreeMap::new();
    for (subject, split) in pairs {
        let name = match split.to_ascii_lowercase().as_str() {
            "train" => SplitName::Train,
            "val" | "validation" => SplitName::Val,
            "test" => SplitName::Test,
            other => {
                return Err(bad(format!(
                    "subject {subject}: split {other:?}, expected \"train\", \"val\" or \"test\""
                )));
            }
        };
        if out.insert(subject.clone(), name).is_some() {
            return Err(bad(format!("subject {subject} is listed twice")));
        }
    }
    Ok(out)
}
