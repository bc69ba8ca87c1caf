//! Checkpoints: one folder per saved step (`step-00000200/`) holding the parts a trainer
//! writes (model, EMA, optimizer) and `state.json`. A folder is written under a temporary name
//! and renamed when complete, so a crash never leaves a half checkpoint that looks whole; the
//! newest complete folder is where a run resumes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;

/// Where training stood when a checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps done.
    pub step: u64,
    /// The epoch and batch index the next step uses.
    pub epoch: u64,
    pub batch: u64,
    /// The run's seed: every random draw of step `s` comes from a generator seeded by
    /// (seed, s), so the seed and the step are the whole random state.
    pub seed: u64,
    /// Anything the trainer needs besides (e.g. the number of label classes).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// The checkpoint folder of a run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub dir: PathBuf,
    /// How many checkpoints to keep (older ones are deleted). At least 1.
    pub keep: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_owned(),
        what: e.to_string(),
    }
}

impl Checkpoints {
    pub fn new(dir: PathBuf) -> Self {
        Checkpoints { dir, keep: 3 }
    }

    /// Writes a checkpoint: `write(folder)` puts the parts into the (temporary) folder, then
    /// `state.json` is added and the folder renamed into place. Returns its path.
    pub fn save(
        &self,
        state: &CheckpointState,
        write: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<PathBuf, TrainError> {
        let name = format!("step-{:08}", state.step);
        let target = self.dir.join(&name);
        let temp = self.dir.join(format!(".{name}.partial"));
        if temp.exists() {
            std::fs::remove_dir_all(&temp).map_err(|e| io(&temp, e))?;
        }
        std::fs::create_dir_all(&temp).map_err(|e| io(&temp, e))?;
        write(&temp).map_err(|e| io(&temp, e))?;
        let text = serde_json::to_vec_pretty(state).map_err(|e| io(&temp, e))?;
        std::fs::write(temp.join("state.json"), text).map_err(|e| io(&temp, e))?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| io(&target, e))?;
        }
        std::fs::rename(&temp, &target).map_err(|e| io(&target, e))?;
        let all = self.list();
        for old in all.iter().rev().skip(self.keep.max(1)) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(target)
    }

    /// Removes every checkpoint, complete or partial, so training starts over.
    pub fn clear(&self) -> Result<(), TrainError> {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && (name.starts_with("step-") || name.starts_with(".step-")) {
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Complete checkpoint folders, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                    && p.join("state.json").is_file()
            })
            .collect();
        out.sort();
        out
    }

    /// The newest complete checkpoint and its state.
    pub fn latest(&self) -> Result<Option<(PathBuf, CheckpointState)>, TrainError> {
        let Some(dir) = self.list().pop() else {
            return Ok(None);
        };
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let state = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
        Ok(Some((dir, state)))
    }
}
