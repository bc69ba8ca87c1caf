//! Semantic checks: the rules that tie fields of a pipeline file together.
//!
//! serde already guarantees shapes and types; this module checks meaning, and reports every
//! problem it finds (not just the first), each with the key path it belongs to.

use std::fmt;

use super::PipelineFile;

/// One segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `model.attention.kind` or `preprocess.size[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// Parses `a.b[2].c`.
    pub fn parse(path: &str) -> Self {
        let mut segs = Vec::new();
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                segs.push(Seg::Key(name.to_owned()));
            }
            for index in rest.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
        }
        KeyPath(segs)
    }

    /// This path with `key` appended.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    /// This path with an array index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(i));
        KeyPath(segs)
    }

    pub(crate) fn segments(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A semantic problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: KeyPath,
    pub message: String,
}

#[derive(Default)]
pub(super) struct Findings(Vec<Finding>);

impl Findings {
    pub(super) fn add(&mut self, key: &str, message: impl Into<String>) {
        self.add_at(KeyPath::parse(key), message);
    }
    pub(super) fn add_at(&mut self, key: KeyPath, message: impl Into<String>) {
        self.0.push(Finding {
            key,
            message: message.into(),
        });
    }
    /// `value` must lie in `[low, high]` (or `[low, high)` when `high_open`).
    pub(super) fn range(&mut self, key: &str, value: f64, low: f64, high: f64, high_open: bool) {
        let ok = value.is_finite()
            && value >= low
            && if high_open {
                value < high
            } else {
                value <= high
            };
        if !ok {
            let close = if high_open { ")" } else { "]" };
            self.add(
                key,
                format!("{value} is out of range, expected a number in [{low}, {high}{close}"),
            );
        }
    }
    pub(super) fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.add(
                key,
                format!("{value} is not allowed, expected a positive number"),
            );
        }
    }
    pub(super) fn at_least_one(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "0 is not allowed, expected at least 1");
        }
    }
}

/// Checks the rules that tie a parsed pipeline file's fields together.
pub fn check(file: &PipelineFile) -> Vec<Finding> {
    let mut out = Findings::default();
    check_pipeline(file, &mut out);
    let declared = super::input::check(file, &mut out);
    super::preprocess::check(file, &declared, &mut out);
    if let Some(model) = &file.model {
        super::model::check(file, model, &declared, &mut out);
    }
    super::train::check(file, &mut out);
    super::synthesize::check(file, &mut out);
    super::evaluate::check(file, &mut out);
    super::output::check(file, &mut out);
    out.0
}

pub(super) fn is_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

pub(super) fn is_modality_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Placeholders in `{...}` that are not in `allowed`.
pub(super) fn unknown_placeholders<'a>(template: &'a str, allowed: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !allowed.contains(&name) {
                    out.push(name);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

/// Whether a relative path stays inside its base folder (no absolute path, no `..` that climbs
/// above the start).
pub(super) fn stays_inside(path: &str) -> bool {
    let p = std::path::Path::new(path);
    if p.is_absolute() || path.starts_with('/') || path.starts_with('\\') {
        return false;
    }
    let mut depth: i64 = 0;
    for comp in p.components() {
        match comp {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    depth > 0
}

fn check_pipeline(file: &PipelineFile, out: &mut Findings) {
    let p = &file.pipeline;
    if !is_name(&p.name, &['-', '_', '.']) || p.name.starts_with('.') {
        out.add(
            "pipeline.name",
            format!(
                "{:?} is not a valid run name, expected 1-64 ASCII letters, digits, '-', '_' or '.', not starting with '.'",
                p.name
            ),
        );
    }
    let unknown = unknown_placeholders(&p.output, &["name", "seed"]);
    if !unknown.is_empty() {
        out.add(
            "pipeline.output",
            format!(
                "unknown placeholder {{{}}}, expected only {{name}} and {{seed}}",
                unknown[0]
            ),
        );
    } else if !stays_inside(&file.output_dir()) {
        out.add(
            "pipeline.output",
            format!(
                "{:?} escapes the run root, expected a relative folder inside it (no absolute path, no '..' above it)",
                p.output
            ),
        );
    }
}

/// Checks `[input]` and returns the declared modality names.
pub(super) fn check_template(key: &str, template: &str, out: &mut Findings) {
    let unknown = unknown_placeholders(template, &["subject"]);
    if let Some(u) = unknown.first() {
        out.add(
            key,
            format!("unknown placeholder {{{u}}}, expected only {{subject}}"),
        );
    } else if !stays_inside(template) {
        out.add(
            key,
            format!("{template:?} leaves input.root, expected a path relative to it"),
        );
    }
}

pub(super) fn unknown_modality(name: &str, declared: &[String]) -> String {
    format!(
        "unknown modality {name:?}, expected one of {}",
        declared
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(super) fn is_orientation(code: &str) -> bool {
    crate::volume::parse_orientation(code).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        for p in ["model.attention.kind", "preprocess.size[1]", "a.b[2][3].c"] {
            assert_eq!(KeyPath::parse(p).to_string(), p);
        }
    }

    #[test]
    fn output_must_stay_inside() {
        assert!(stays_inside("runs/demo"));
        assert!(stays_inside("runs/../other"));
        assert!(!stays_inside("../runs"));
        assert!(!stays_inside("runs/../../x"));
        assert!(!stays_inside("/tmp/x"));
        assert!(!stays_inside("."));
    }

    #[test]
    fn orientation_codes() {
        for ok in ["RAS", "LPS", "LPI", "ASR"] {
            assert!(is_orientation(ok), "{ok}");
        }
        for bad in ["RAX", "RRS", "RA", "RASS", "ras"] {
            assert!(!is_orientation(bad), "{bad}");
        }
    }
}
