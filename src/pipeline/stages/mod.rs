//! The stages of a run, one module each, in order. Each has one entry point, `run`, that takes
//! the run context and what earlier stages handed over ([`super::handoff`]) and returns what
//! it wrote. No stage imports another: what they share lives a layer down, in
//! [`super::handoff`], [`super::model`] and [`super::write`].

pub mod bids;
pub mod evaluate;
pub mod export;
pub mod input;
pub mod preprocess;
pub mod publish;
pub mod report;
pub mod synthesize;
pub mod train;

#[cfg(test)]
mod tests {
    /// Each stage's source, by name.
    const SOURCES: [(&str, &str); 12] = [
        ("bids", include_str!("bids.rs")),
        ("evaluate", include_str!("evaluate/mod.rs")),
        ("evaluate", include_str!("evaluate/downstream.rs")),
        ("evaluate", include_str!("evaluate/scorer.rs")),
        ("evaluate", include_str!("evaluate/set_level.rs")),
        ("export", include_str!("export.rs")),
        ("input", include_str!("input.rs")),
        ("preprocess", include_str!("preprocess.rs")),
        ("publish", include_str!("publish.rs")),
        ("report", include_str!("report.rs")),
        ("synthesize", include_str!("synthesize.rs")),
        ("train", include_str!("train.rs")),
    ];

    /// The identifiers a source names through `crate::pipeline`, `stages` or `super` paths
    /// (in `use` trees and inline paths).
    fn pipeline_names(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["crate::pipeline::", "stages::", "super::"] {
            for (i, _) in source.match_indices(prefix) {
                let rest = &source[i + prefix.len()..];
                // A `{ ... }` tree reaches to its closing brace, a path to its end.
                let end = if rest.starts_with('{') {
                    rest.find('}').map_or(rest.len(), |e| e + 1)
                } else {
                    rest.find([';', '(', ' ', '\n', ',']).unwrap_or(rest.len())
                };
                out.extend(
                    rest[..end]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        out
    }

    #[test]
    fn no_stage_imports_another() {
        for (name, source) in SOURCES {
            let names = pipeline_names(source);
            for (other, _) in SOURCES {
                assert!(
                    other == name || !names.iter().any(|n| n == other),
                    "stage {name} names stage {other}: move what they share to handoff, model or write"
                );
            }
        }
        // The check sees a grouped import.
        let names = pipeline_names(concat!("use crate::", "pipeline::{Run, synthesize};"));
        assert!(names.iter().any(|n| n == "synthesize"));
    }
}
