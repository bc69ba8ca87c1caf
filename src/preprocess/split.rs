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
/// and each input file's identity), so a re-run with the same inputs and settings finds it
/// and any changed setting or input makes a new one. `inputs` are (subject, modality, SHA-256).
pub fn cache_key(
    config: &crate::spec::PreprocessSection,
    inputs: &[(String, String, String)],
) -> String {
    let mut sorted: Vec<&(String, String, String)> = inputs.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    // Bump when the meaning of a preprocessing step changes, to invalidate old stores.
    h.update(b"medsynth-preprocess-v1\0");
    h.update(serde_json::to_vec(config).unwrap_or_default());
    for (subject, modality, sha) in sorted {
        for part in [subject, modality, sha] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    crate::volume::hex(&h.finalize())
}
