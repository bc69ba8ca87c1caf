//! Why a run stops: the error every stage returns.

use std::path::{Path, PathBuf};

use super::lock;
use super::stage::Stage;

/// Why a run cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A stage failed; what it finished before is kept and a re-run resumes.
    #[error("stage [{stage}]: {path}")]
    Failed {
        stage: Stage,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stage had nothing to work on.
    #[error("stage [{stage}]: {what}")]
    Nothing { stage: Stage, what: String },
    /// Another process writes the run folder.
    #[error(transparent)]
    Locked(#[from] lock::LockError),
}

impl RunError {
    /// A failure of `stage` on `path` (a file, folder or the pipeline file).
    pub fn failed(
        stage: Stage,
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        RunError::Failed {
            stage,
            path: path.to_owned(),
            source: source.into(),
        }
    }
}
