//! Planning and running a pipeline file: which stages it asks for and whether this build of
//! medsynth can do them.
//!
//! A run never starts work it cannot finish: every stage the file asks for is checked before
//! the first voxel is read, and a stage this build does not provide yet stops the run with an
//! error that names it.

pub mod comparison;
mod conductor;
mod context;
mod error;
mod handoff;
pub mod lock;
mod merge;
mod model;
mod outcome;
mod plan;
pub mod shard;
mod stage;
mod stages;
mod write;

pub use crate::provenance::{now_rfc3339, sha256_file};
pub use conductor::execute;
pub use context::Run;
pub use error::RunError;
pub use handoff::{
    Action, Evaluation, MetricRow, NnunetExport, Skip, Store, Subjects, Synthesized, Work, counts,
    metric_name,
};
pub use merge::merge;
pub use model::{clip_range, diffusion_trainer, generator};
pub use outcome::Outcome;
pub use plan::{Mode, Part, Plan, plan};
pub use shard::Shard;
pub use stage::{Stage, stages};
pub use stages::evaluate::{read_metrics, write_metrics};
pub use stages::export::{FILE_ENDING, check_layout};
pub use stages::preprocess::channel_names;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Each module of `pipeline/` by name (the stages as one), with its sources.
    const SOURCES: [(&str, &str); 26] = [
        ("comparison", include_str!("comparison.rs")),
        ("conductor", include_str!("conductor.rs")),
        ("context", include_str!("context.rs")),
        ("error", include_str!("error.rs")),
        ("handoff", include_str!("handoff.rs")),
        ("lock", include_str!("lock.rs")),
        ("merge", include_str!("merge.rs")),
        ("model", include_str!("model.rs")),
        ("outcome", include_str!("outcome.rs")),
        ("plan", include_str!("plan.rs")),
        ("shard", include_str!("shard.rs")),
        ("stage", include_str!("stage.rs")),
        ("write", include_str!("write.rs")),
        ("stages", include_str!("stages/mod.rs")),
        ("stages", include_str!("stages/bids.rs")),
        ("stages", include_str!("stages/evaluate/mod.rs")),
        ("stages", include_str!("stages/evaluate/downstream.rs")),
        ("stages", include_str!("stages/evaluate/scorer.rs")),
        ("stages", include_str!("stages/evaluate/set_level.rs")),
        ("stages", include_str!("stages/export.rs")),
        ("stages", include_str!("stages/input.rs")),
        ("stages", include_str!("stages/preprocess.rs")),
        ("stages", include_str!("stages/publish.rs")),
        ("stages", include_str!("stages/report.rs")),
        ("stages", include_str!("stages/synthesize.rs")),
        ("stages", include_str!("stages/train.rs")),
    ];

    /// The first path segment after each `prefix` in `source`.
    fn after(source: &str, prefix: &str) -> Vec<String> {
        source
            .match_indices(prefix)
            .map(|(i, _)| {
                source[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
                    .collect()
            })
            .collect()
    }

    /// Which modules of `pipeline/` each one names.
    fn imports() -> BTreeMap<&'static str, BTreeSet<String>> {
        let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (name, source) in SOURCES {
            let mut named = after(source, "crate::pipeline::");
            if name != "stages" {
                named.extend(after(source, "super::"));
            }
            let entry = graph.entry(name).or_default();
            // `super::*` in a test module is the module itself.
            entry.extend(named.into_iter().filter(|n| n != name && !n.is_empty()));
        }
        graph
    }

    /// The modules inside `pipeline/` import modules, never this file: every path through
    /// `crate::pipeline` or a child's `super` names a module, and the modules import each
    /// other without a cycle, so each imports only modules below it.
    #[test]
    fn modules_inside_pipeline_import_only_modules_below_them() {
        let graph = imports();
        let modules: BTreeSet<&str> = graph.keys().copied().collect();
        for (name, named) in &graph {
            for n in named {
                assert!(
                    modules.contains(n.as_str()),
                    "{name} imports `{n}` from pipeline/mod.rs; import it from its own module"
                );
            }
        }
        // Depth-first search for a cycle.
        fn visit<'a>(
            at: &'a str,
            graph: &'a BTreeMap<&'static str, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if done.contains(at) {
                return;
            }
            assert!(!path.contains(&at), "import cycle: {path:?} -> {at}");
            path.push(at);
            for next in &graph[at] {
                visit(next, graph, path, done);
            }
            path.pop();
            done.insert(at);
        }
        let mut done = BTreeSet::new();
        for name in graph.keys() {
            visit(name, &graph, &mut Vec::new(), &mut done);
        }
        // The check sees a grouped import.
        assert_eq!(
            after("use crate::pipeline::{Run, Stage};", "crate::pipeline::"),
            ["{Run"]
        );
    }
}
