//! A checked pipeline ready to run, and what of it this process does (the whole run, a
//! shard's part, or a sharded run's training job).

use std::path::{Path, PathBuf};

use super::error::RunError;
use super::shard::Shard;
use super::stage::{Stage, stages};
use crate::spec::PipelineFile;

/// Which per-subject stages a shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Input and preprocessing.
    Prepare,
    /// Synthesis and evaluation (after the training job, when the file trains).
    Apply,
    /// Both: preprocessing, then synthesis and evaluation when the slice store has been
    /// gathered (and the model trained), else stop after preprocessing.
    All,
}

/// What this process does of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every stage, in one process.
    Whole,
    /// The per-subject stages of one shard.
    Shard(Shard, Part),
    /// The training job of a run split into `shards`: gathers their slice stores into one and
    /// trains (when the file has `[train]`).
    Train { shards: usize },
}

impl Mode {
    /// The shard, for shard processes.
    pub fn shard(&self) -> Option<Shard> {
        match self {
            Mode::Shard(s, _) => Some(*s),
            _ => None,
        }
    }
}

/// A checked pipeline ready to run: the file and its run folder.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PipelineFile,
    pub source: PathBuf,
    pub run_dir: PathBuf,
    pub stages: Vec<Stage>,
    pub mode: Mode,
}

/// Plans a run of `file` (loaded from `source`) under `root`.
pub fn plan(file: PipelineFile, source: &Path, root: &Path) -> Result<Plan, RunError> {
    let stages = stages(&file);
    let run_dir = root.join(file.output_dir());
    Ok(Plan {
        file,
        source: source.to_owned(),
        run_dir,
        stages,
        mode: Mode::Whole,
    })
}
