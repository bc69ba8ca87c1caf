//! Planning and running a pipeline file: which stages it asks for and whether this build of
//! medsynth can do them.
//!
//! A run never starts work it cannot finish: every stage the file asks for is checked before
//! the first voxel is read, and a stage this build does not provide yet stops the run with an
//! error that names it.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::spec::{InputFormat, PipelineFile};

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

/// Whether this build can run `stage` as `file` configures it; `Err` says why not.
fn available(stage: Stage, file: &PipelineFile) -> Result<(), &'static str> {
    match stage {
        Stage::Input if file.input.format == InputFormat::Phantom => Ok(()),
        Stage::Input => Err(
            "discovering subjects from [input] (globs, templates, series matching) arrives with the preprocessing stage",
        ),
        Stage::Preprocess => Err("preprocessing and the slice store are not built yet"),
        Stage::Train => Err("training arrives with the diffusion and GAN models"),
        Stage::Synthesize => Err("synthesis arrives with the diffusion and GAN models"),
        Stage::Evaluate => Err("metrics arrive with the evaluation stage"),
        Stage::Output => Err("exports and reports arrive with the evaluation stage"),
    }
}

/// Why a run cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Stages the file asks for that this build does not provide yet.
    #[error("{}: cannot run: {}; nothing was done", file.display(), describe(missing))]
    StageUnavailable {
        file: PathBuf,
        missing: Vec<(Stage, &'static str)>,
    },
}

fn describe(missing: &[(Stage, &'static str)]) -> String {
    missing
        .iter()
        .map(|(s, why)| {
            format!(
                "stage [{s}] is not available yet in medsynth {} ({why})",
                crate::VERSION
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A checked pipeline ready to run: the file and its run folder.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PipelineFile,
    pub source: PathBuf,
    pub run_dir: PathBuf,
    pub stages: Vec<Stage>,
}

/// Plans a run of `file` (loaded from `source`) under `root`, refusing before any work if a
/// stage is not available.
pub fn plan(file: PipelineFile, source: &Path, root: &Path) -> Result<Plan, RunError> {
    let stages = stages(&file);
    let missing: Vec<_> = stages
        .iter()
        .filter_map(|&s| available(s, &file).err().map(|why| (s, why)))
        .collect();
    if !missing.is_empty() {
        return Err(RunError::StageUnavailable {
            file: source.to_owned(),
            missing,
        });
    }
    let run_dir = root.join(file.output_dir());
    Ok(Plan {
        file,
        source: source.to_owned(),
        run_dir,
        stages,
    })
}
