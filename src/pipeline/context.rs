//! What every stage of a run shares: the plan, the run root, the settings hash and the
//! provenance rows collected so far (written after each stage, so an interrupted run keeps
//! the record of what it finished).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::RunError;
use super::handoff::{Action, Work};
use super::plan::Plan;
use super::stage::Stage;
use crate::provenance::{self, ProvenanceRow, now_rfc3339, sha256_file};
use crate::volume::hex;

/// A run in progress.
#[derive(Debug)]
pub struct Run {
    pub plan: Plan,
    /// Relative paths in the pipeline file are resolved against this.
    pub root: PathBuf,
    /// SHA-256 of the resolved pipeline file (every section, defaults filled in).
    pub config_hash: String,
    /// Where this process writes: the run folder, or a shard's folder inside it.
    out: PathBuf,
    provenance: Vec<ProvenanceRow>,
    /// What each stage did or reused, in order.
    work: Vec<Work>,
    /// The compute device (`train.device`), opened by the first stage that needs it.
    device: std::sync::OnceLock<burn::tensor::Device>,
}

impl Run {
    pub fn new(plan: Plan, root: &Path) -> Self {
        let resolved = toml::to_string(&plan.file).unwrap_or_default();
        let config_hash = hex(&Sha256::digest(resolved.as_bytes()));
        let out = match plan.mode.shard() {
            Some(shard) => shard.folder(&plan.run_dir),
            None => plan.run_dir.clone(),
        };
        Run {
            plan,
            root: root.to_owned(),
            config_hash,
            out,
            provenance: Vec::new(),
            work: Vec::new(),
            device: std::sync::OnceLock::new(),
        }
    }

    /// The compute device `train.device` names, opened (and logged) once per run, when a
    /// stage first needs it; training, synthesis and evaluation all run on it.
    /// `stage` is the one asking, named in the error when the device cannot be opened.
    pub fn device(&self, stage: Stage) -> Result<burn::tensor::Device, RunError> {
        if let Some(device) = self.device.get() {
            return Ok(device.clone());
        }
        let kind = self.plan.file.train.clone().unwrap_or_default().device;
        let device =
            crate::device::open(kind).map_err(|e| RunError::failed(stage, &self.plan.source, e))?;
        tracing::info!("device {}: {device:?}", kind.name());
        Ok(self.device.get_or_init(|| device).clone())
    }

    /// Where this process writes its outputs: the run folder, or for a shard its folder
    /// `RUN_DIR/shards/K-of-N`, laid out like the run folder.
    pub fn dir(&self) -> &Path {
        &self.out
    }

    /// The run folder itself, shared by every shard (the slice store, phantom inputs and
    /// checkpoints live here).
    pub fn run_dir(&self) -> &Path {
        &self.plan.run_dir
    }

    /// The folder series retrieved from a DICOMweb server are kept in: `input.dicomweb.cache`,
    /// else `dicomweb/` in the run folder.
    pub fn dicomweb_cache(&self) -> PathBuf {
        match self
            .plan
            .file
            .input
            .dicomweb
            .as_ref()
            .and_then(|d| d.cache.as_deref())
        {
            Some(c) => self.resolve(c),
            None => self.run_dir().join("dicomweb"),
        }
    }

    /// The shard this process works on, if any.
    pub fn shard(&self) -> Option<super::shard::Shard> {
        self.plan.mode.shard()
    }

    /// Whether `subject` is this process's to work on.
    pub fn owns(&self, subject: &str) -> bool {
        self.shard().is_none_or(|s| s.owns(subject))
    }

    /// A path of the pipeline file resolved against the run root.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// How an artifact is named in provenance: relative to the run folder when inside it,
    /// else as resolved against the run root.
    pub fn artifact_name(&self, path: &Path) -> String {
        path.strip_prefix(self.dir())
            .or_else(|_| path.strip_prefix(self.run_dir()))
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// A provenance row for a written file, filled with the run-wide columns.
    pub fn row(
        &self,
        stage: Stage,
        kind: &str,
        path: &Path,
        subject: &str,
        started: &str,
    ) -> Result<ProvenanceRow, RunError> {
        let sha256 = sha256_file(path).map_err(|e| RunError::failed(stage, path, e))?;
        Ok(ProvenanceRow {
            artifact: self.artifact_name(path),
            sha256,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            stage: stage.to_string(),
            config_hash: self.config_hash.clone(),
            seed: self.plan.file.pipeline.seed,
            medsynth_version: crate::VERSION.to_owned(),
            git_commit: option_env!("MEDSYNTH_GIT_COMMIT")
                .unwrap_or_default()
                .to_owned(),
            started: started.to_owned(),
            finished: now_rfc3339(),
            ..ProvenanceRow::default()
        })
    }

    /// Keeps a row; a later row for the same artifact replaces it.
    pub fn record(&mut self, row: ProvenanceRow) {
        self.provenance.retain(|r| r.artifact != row.artifact);
        self.provenance.push(row);
    }

    /// Drops the rows of artifacts `gone` names (files a stage rotated away).
    pub fn forget(&mut self, gone: impl Fn(&str) -> bool) {
        self.provenance.retain(|r| !gone(&r.artifact));
    }

    /// Adds rows recorded elsewhere (a shard's, the training job's), replacing rows of the
    /// same artifacts.
    pub fn adopt(&mut self, rows: impl IntoIterator<Item = ProvenanceRow>) {
        for row in rows {
            self.record(row);
        }
    }

    /// Writes `provenance.parquet` with every row so far, and a row for itself is not kept
    /// (a file cannot list its own digest).
    pub fn save_provenance(&self) -> Result<PathBuf, RunError> {
        let path = self.dir().join("provenance.parquet");
        provenance::write(&path, &self.provenance)
            .map_err(|e| RunError::failed(Stage::Output, &path, e))?;
        Ok(path)
    }

    /// Notes what `stage` did with the piece `what`, and says so in the log: reused work in
    /// one line, work done again with what changed.
    pub fn did(&mut self, stage: Stage, what: &str, action: Action) {
        match &action {
            Action::Reused => tracing::info!(
                %stage,
                "{what}: reused (made earlier from the same settings and inputs)"
            ),
            Action::RanAgain(why) => tracing::warn!(
                %stage,
                "{what}: {why} since it was made; made again, replacing the earlier one"
            ),
            Action::Ran => tracing::debug!(%stage, "{what}: made"),
        }
        self.work.push(Work {
            stage,
            what: what.to_owned(),
            action,
        });
    }

    /// What the stages did or reused so far.
    pub fn work(&self) -> &[Work] {
        &self.work
    }

    /// The rows so far.
    pub fn provenance(&self) -> &[ProvenanceRow] {
        &self.provenance
    }
}
