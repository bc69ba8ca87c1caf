//! Reading a pipeline file: TOML syntax, then serde types, then semantic checks, each error
//! located at `file:line:column` with its key path.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::PipelineFile;
use super::check::{KeyPath, Seg, check};

/// One problem in a pipeline file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path, e.g. `model.attention.kind`; empty for syntax errors.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a pipeline file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read pipeline file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid pipeline.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Diagnostic>),
}

fn join_lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the pipeline file at `path`.
pub fn load(path: &Path) -> Result<PipelineFile, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates pipeline text; `file` is used in messages only.
pub fn parse(text: &str, file: &Path) -> Result<PipelineFile, SpecError> {
    let at = |span: Option<Range<usize>>, key: String, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    };

    let document = DeTable::parse(text).map_err(|e| {
        let mut message = tidy(e.message());
        // The parser says which rule broke; name the offending key too.
        if let Some(span) = e.span()
            && message == "duplicate key"
            && let Some(key) = text.get(span)
        {
            message = format!(
                "duplicate key {:?}, expected each key once per table",
                key.trim()
            );
        }
        SpecError::Invalid(vec![at(e.span(), String::new(), message)])
    })?;

    let deserializer = toml::de::Deserializer::from(document.clone());
    let parsed: PipelineFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        SpecError::Invalid(vec![at(inner.span(), key, tidy(inner.message()))])
    })?;

    let findings = check(&parsed);
    if findings.is_empty() {
        return Ok(parsed);
    }
    Err(SpecError::Invalid(
        findings
            .into_iter()
            .map(|f| {
                let span = locate(&document, &f.key);
                at(Some(span), f.key.to_string(), f.message)
            })
            .collect(),
    ))
}

/// serde quotes names in backticks; pipeline authors see TOML, where strings use `"`.
fn tidy(message: &str) -> String {
    message.trim().replace("`\"`", "'\"'").replace('`', "\"")
}

/// The span of the value at `key`, or of the nearest ancestor present in the document.
fn locate(document: &Spanned<DeTable<'_>>, key: &KeyPath) -> Range<usize> {
    let mut best = document.span();
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for seg in key.segments() {
        let next = match (seg, current) {
            (Seg::Key(k), None) => document
                .get_ref()
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == k.as_str())
                .map(|(_, v)| v),
            (Seg::Key(k), Some(v)) => v.get_ref().get(k.as_str()),
            (Seg::Index(i), Some(v)) => v.get_ref().get(*i),
            (Seg::Index(_), None) => None,
        };
        match next {
            Some(v) => {
                best = v.span();
                current = Some(v);
            }
            None => break,
        }
    }
    best
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé " is 4 bytes but 3 characters.
        assert_eq!(line_column(text, 6 + 4), (2, 4));
    }
}
