//! Fingerprints: everything that determines a piece of work (its settings, the seed and the
//! digests of what it consumed), recorded beside the work, so that a re-run reuses the work
//! only while its fingerprint is unchanged and says what changed when it is not.
//!
//! This is the one reuse mechanism of medsynth. Training records the fingerprint in each
//! checkpoint's `state.json` ([`crate::train`]); synthesis in the header of each subject's
//! sampled shard; evaluation and training's provenance in a [`Stamp`] file beside their
//! outputs. Every one of them decides with [`Stamp::verdict`] or [`changes`].
//!
//! ```
//! use medsynth::fingerprint::{Fingerprint, Stamp, Verdict};
//! let before = Fingerprint::new(serde_json::json!({"sampler": {"steps": 5}, "seed": 7}));
//! let stamp = Stamp::new(&before, "config-hash", serde_json::Value::Null);
//! let after = Fingerprint::new(serde_json::json!({"sampler": {"steps": 20}, "seed": 7}));
//! match Stamp::verdict(Some(stamp), &after) {
//!     Verdict::Run { why } => assert_eq!(why.as_deref(), Some("sampler.steps changed")),
//!     Verdict::Reuse(_) => unreachable!(),
//! }
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What determines a piece of work, and its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    value: Value,
    digest: String,
}

impl Fingerprint {
    /// The fingerprint of `value` (JSON objects keep their keys sorted, so equal values give
    /// equal digests whatever order they were built in).
    pub fn new(value: Value) -> Self {
        let value = sorted(value);
        let text = serde_json::to_string(&value).unwrap_or_default();
        let digest = crate::volume::hex(&Sha256::digest(text.as_bytes()));
        Fingerprint { value, digest }
    }

    /// What determines the work.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// SHA-256 (hex) of [`Fingerprint::value`].
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// `value` with every object's keys in sorted order, whichever map serde_json was built with.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Which keys a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Every key of either side: a key added or removed is a change.
    All,
    /// Only keys the recorded side has, so work recorded before a setting existed still
    /// matches (training checkpoints, which are expensive to redo).
    Recorded,
}

/// Dotted paths where `current` differs from `recorded` (`""` when the values themselves
/// differ at the top).
pub fn changes(recorded: &Value, current: &Value, keys: Keys) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, keys: Keys, out: &mut Vec<String>) {
        let path = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                let mut names: Vec<&String> = b.keys().collect();
                if keys == Keys::All {
                    names.extend(a.keys().filter(|k| !b.contains_key(*k)));
                }
                names.sort();
                for k in names {
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) => walk(&path(k), x, y, keys, out),
                        (None, _) if keys == Keys::Recorded => {}
                        _ => out.push(path(k)),
                    }
                }
            }
            (a, b) if a != b => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", recorded, current, keys, &mut out);
    out
}

/// What changed, in words: `sampler.steps, guidance.sag changed`.
pub fn describe(changed: &[String]) -> String {
    if changed.is_empty() || changed.iter().all(String::is_empty) {
        return "what it was made from changed".to_owned();
    }
    format!("{} changed", changed.join(", "))
}

/// The record of a piece of work, kept beside it: its fingerprint, the resolved pipeline
/// file's hash of the run that did it (provenance of reused work names that run, not the
/// current one), and what the work left that a reuse needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// SHA-256 of `fingerprint`.
    pub digest: String,
    pub fingerprint: Value,
    pub config_hash: String,
    /// Stage-specific facts about the work (what provenance or a reuse needs).
    #[serde(default)]
    pub outcome: Value,
}

/// Whether recorded work can be reused.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The work was made from exactly this fingerprint.
    Reuse(Stamp),
    /// The work must be done: `why` says what changed, `None` when nothing was recorded.
    Run { why: Option<String> },
}

impl Stamp {
    pub fn new(fingerprint: &Fingerprint, config_hash: &str, outcome: Value) -> Self {
        Stamp {
            digest: fingerprint.digest().to_owned(),
            fingerprint: fingerprint.value().clone(),
            config_hash: config_hash.to_owned(),
            outcome,
        }
    }

    /// Compares what was recorded with what the work would be made from now.
    pub fn verdict(recorded: Option<Stamp>, current: &Fingerprint) -> Verdict {
        match recorded {
            None => Verdict::Run { why: None },
            Some(s) if s.digest == current.digest() => Verdict::Reuse(s),
            Some(s) => Verdict::Run {
                why: Some(describe(&changes(
                    &s.fingerprint,
                    current.value(),
                    Keys::All,
                ))),
            },
        }
    }

    /// The stamp as one line of JSON (for a file header's metadata).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stamp from [`Stamp::to_text`]; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Stamp> {
        serde_json::from_str(text).ok()
    }

    /// The stamp file at `path`; `None` when it is missing or unreadable (the work is then
    /// done again).
    pub fn read(path: &Path) -> Option<Stamp> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| Stamp::from_text(&t))
    }

    /// Writes the stamp file atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::volume::AtomicFile::write(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_do_not_depend_on_key_order() {
        let a = Fingerprint::new(json!({"a": 1, "b": {"c": 2, "d": 3}}));
        let mut map = serde_json::Map::new();
        map.insert("b".into(), json!({"d": 3, "c": 2}));
        map.insert("a".into(), json!(1));
        assert_eq!(a.digest(), Fingerprint::new(Value::Object(map)).digest());
        assert_ne!(
            a.digest(),
            Fingerprint::new(json!({"a": 2, "b": {"c": 2, "d": 3}})).digest()
        );
    }

    #[test]
    fn changes_name_every_dotted_path() {
        let old = json!({"guidance": {"sag": 0.0, "cfg": 1.0}, "seed": 1, "gone": true});
        let new = json!({"guidance": {"sag": 0.5, "cfg": 1.0}, "seed": 1, "added": 2});
        assert_eq!(
            changes(&old, &new, Keys::All),
            ["added", "gone", "guidance.sag"]
        );
        assert_eq!(changes(&old, &new, Keys::Recorded), ["guidance.sag"]);
        assert!(changes(&old, &old, Keys::All).is_empty());
    }

    #[test]
    fn a_stamp_is_reused_only_for_the_same_fingerprint() {
        let fp = Fingerprint::new(json!({"steps": 5}));
        let stamp = Stamp::new(&fp, "abc", json!({"n": 1}));
        let text = stamp.to_text();
        let back = Stamp::from_text(&text).unwrap();
        assert_eq!(back, stamp);
        assert_eq!(
            Stamp::verdict(Some(back.clone()), &fp),
            Verdict::Reuse(stamp)
        );
        assert_eq!(
            Stamp::verdict(Some(back), &Fingerprint::new(json!({"steps": 20}))),
            Verdict::Run {
                why: Some("steps changed".into())
            }
        );
        assert_eq!(Stamp::verdict(None, &fp), Verdict::Run { why: None });
        assert_eq!(Stamp::from_text("not json"), None);
    }
}
