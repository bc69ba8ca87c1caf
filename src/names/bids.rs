//! BIDS file names: `sub-01_ses-pre_acq-fast_run-2_T1w.nii.gz` is the entities `sub`, `ses`,
//! `acq`, `run` with their labels, the suffix `T1w` and the extension `.nii.gz`.

use super::glob_match;

/// A parsed BIDS file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// `(key, label)` in file order.
    pub entities: Vec<(String, String)>,
    pub suffix: String,
    /// From the first dot: `.nii.gz`, `.json`, ...
    pub extension: String,
}

impl Name {
    /// Parses a file name; `None` when it is not `key-label_..._suffix.ext`.
    pub fn parse(file: &str) -> Option<Name> {
        let (stem, ext) = file.split_once('.').map_or((file, ""), |(s, e)| (s, e));
        let mut parts: Vec<&str> = stem.split('_').collect();
        let suffix = parts.pop()?;
        if !is_label(suffix) {
            return None;
        }
        let mut entities = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('-')?;
            if !is_label(k) || !is_label(v) {
                return None;
            }
            entities.push((k.to_owned(), v.to_owned()));
        }
        Some(Name {
            entities,
            suffix: suffix.to_owned(),
            extension: if ext.is_empty() {
                String::new()
            } else {
                format!(".{ext}")
            },
        })
    }

    /// The label of entity `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entities
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A BIDS letters-and-digits label.
fn is_label(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// What a modality's file looks like, e.g. `ce-gd_T1w` or `acq-*_FLAIR`: the suffix, and the
/// entities that must be there (labels may be globs). `sub` and `ses` come from the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub entities: Vec<(String, String)>,
    pub suffix: String,
}

/// Entities a pattern may not name: they come from where the file lies.
const PLACED: [&str; 2] = ["sub", "ses"];

impl Pattern {
    /// Parses `key-label_..._suffix`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts: Vec<&str> = text.split('_').collect();
        let suffix = parts.pop().unwrap_or_default();
        if !is_label(suffix) {
            return Err(format!(
                "{text:?} does not end in a BIDS suffix, expected e.g. \"T1w\", \"ce-gd_T1w\" or \"acq-*_FLAIR\""
            ));
        }
        let mut entities: Vec<(String, String)> = Vec::new();
        for p in parts {
            let Some((k, v)) = p.split_once('-') else {
                return Err(format!(
                    "{text:?}: {p:?} is not an entity, expected key-label such as \"ce-gd\""
                ));
            };
            let glob_ok = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '[' | ']'));
            if !is_label(k) || !glob_ok {
                return Err(format!(
                    "{text:?}: {p:?} is not an entity, expected key-label with letters and digits (globs allowed in the label)"
                ));
            }
            if PLACED.contains(&k) {
                return Err(format!(
                    "{text:?}: {k} comes from the folder a file lies in; leave it out of the pattern"
                ));
            }
            if entities.iter().any(|(e, _)| e == k) {
                return Err(format!("{text:?}: entity {k} named twice"));
            }
            entities.push((k.to_owned(), v.to_owned()));
        }
        Ok(Pattern {
            entities,
            suffix: suffix.to_owned(),
        })
    }

    /// Whether `name` is this pattern's file: same suffix, every named entity matching, and no
    /// other entity but `sub`, `ses` and `run`.
    pub fn matches(&self, name: &Name) -> bool {
        name.suffix == self.suffix
            && self
                .entities
                .iter()
                .all(|(k, v)| name.get(k).is_some_and(|l| glob_match(v, l)))
            && name.entities.iter().all(|(k, _)| {
                PLACED.contains(&k.as_str())
                    || k == "run"
                    || self.entities.iter().any(|(e, _)| e == k)
            })
    }

    /// The pattern as a file name part (`ce-gd_T1w`), for a pattern without globs.
    pub fn literal(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (k, v) in &self.entities {
            if !is_label(v) {
                return None;
            }
            parts.push(format!("{k}-{v}"));
        }
        parts.push(self.suffix.clone());
        Some(parts.join("_"))
    }
}

/// The BIDS suffix (with entities) a modality of that name usually is.
pub fn default_suffix(modality: &str) -> Option<&'static str> {
    Some(match modality {
        "t1" | "t1w" => "T1w",
        "t1ce" | "t1c" | "t1gd" => "ce-gadolinium_T1w",
        "t2" | "t2w" => "T2w",
        "flair" => "FLAIR",
        "pd" | "pdw" => "PDw",
        "t2star" | "t2starw" => "T2starw",
        _ => return None,
    })
}

/// `(subject, session)` labels for a medsynth subject id: `sub-01_ses-pre` as read from a
/// BIDS dataset, else the id's letters and digits (`sub-` dropped) as the subject label.
pub fn subject_label(id: &str) -> Option<(String, Option<String>)> {
    if let Some(name) = Name::parse(&format!("{id}_x"))
        && name.entities.first().is_some_and(|(k, _)| k == "sub")
        && name
            .entities
            .iter()
            .all(|(k, _)| PLACED.contains(&k.as_str()))
    {
        return Some((
            name.get("sub").unwrap_or_default().to_owned(),
            name.get("ses").map(str::to_owned),
        ));
    }
    let label: String = id
        .strip_prefix("sub-")
        .unwrap_or(id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    (!label.is_empty()).then_some((label, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let n = Name::parse("sub-01_ses-pre_ce-gd_run-2_T1w.nii.gz").unwrap();
        assert_eq!(n.suffix, "T1w");
        assert_eq!(n.extension, ".nii.gz");
        assert_eq!(n.get("run"), Some("2"));
        assert!(Pattern::parse("ce-gd_T1w").unwrap().matches(&n));
        assert!(Pattern::parse("ce-*_T1w").unwrap().matches(&n));
        // ce is present but not named: not the plain T1w.
        assert!(!Pattern::parse("T1w").unwrap().matches(&n));
        assert!(!Pattern::parse("ce-gd_T2w").unwrap().matches(&n));
        assert!(Name::parse("sub-01_T1w_extra.nii").is_none());
        assert!(Pattern::parse("ses-1_T1w").is_err());
        assert!(Pattern::parse("ce_T1w").is_err());
        assert!(Pattern::parse("t1-x_").is_err());
        assert_eq!(
            Pattern::parse("ce-gd_T1w").unwrap().literal().as_deref(),
            Some("ce-gd_T1w")
        );
        assert_eq!(
            subject_label("sub-01_ses-pre"),
            Some(("01".into(), Some("pre".into())))
        );
        assert_eq!(subject_label("sub-000"), Some(("000".into(), None)));
        assert_eq!(subject_label("case_7"), Some(("case7".into(), None)));
        assert_eq!(subject_label("__"), None);
    }
}
