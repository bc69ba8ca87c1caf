//! The stages of a run, in execution order, and which of them a pipeline file asks for.

use std::fmt;

use crate::spec::PipelineFile;

/// A stage of a run, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Reading subjects (`[input]`).
    Input,
    /// Preprocessing into the slice store (`[preprocess]`).
    Preprocess,
    /// Training the generator (`[train]`).
    Train,
    /// Applying the generator (`[synthesize]`).
    Synthesize,
    /// Metrics (`[evaluate]`).
    Evaluate,
    /// Exports and the report (`[output]`).
    Output,
}

impl Stage {
    /// The stage a name (as [`Stage`]'s `Display` writes it) stands for.
    pub fn from_name(name: &str) -> Option<Stage> {
        [
            Stage::Input,
            Stage::Preprocess,
            Stage::Train,
            Stage::Synthesize,
            Stage::Evaluate,
            Stage::Output,
        ]
        .into_iter()
        .find(|s| s.to_string() == name)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Input => "input",
            Stage::Preprocess => "preprocess",
            Stage::Train => "train",
            Stage::Synthesize => "synthesize",
            Stage::Evaluate => "evaluate",
            Stage::Output => "output",
        })
    }
}

/// The stages a pipeline file asks for, in order.
pub fn stages(file: &PipelineFile) -> Vec<Stage> {
    let mut out = vec![Stage::Input, Stage::Preprocess];
    if file.train.is_some() {
        out.push(Stage::Train);
    }
    if file.synthesize.is_some() {
        out.push(Stage::Synthesize);
    }
    if file.evaluate.is_some() {
        out.push(Stage::Evaluate);
    }
    out.push(Stage::Output);
    out
}
