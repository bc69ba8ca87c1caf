//! Planning and running a pipeline file: which stages it asks for and whether this build of
//! medsynth can do them.
//!
//! A run never starts work it cannot finish: every stage the file asks for is checked before
//! the first voxel is read, and a stage this build does not provide yet stops the run with an
//! error that names it.

mod context;
mod evaluate;
mod export;
mod input;
pub mod lock;
mod preprocess;
mod report;
mod synthesize;
mod train;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};

pub use context::{Run, now_rfc3339, sha256_file};
pub use evaluate::{Evaluation, MetricRow, metric_name, read_metrics, write_metrics};
pub use export::{FILE_ENDING, NnunetExport, check_layout};
pub use input::{Skip, Subjects};
pub use preprocess::{Store, channel_names};
pub use synthesize::{Synthesized, clip_range, generator};
pub use train::{device, diffusion_trainer};

use crate::spec::{PipelineFile, WriteFormat};

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

/// A checked pipeline ready to run: the file and its run folder.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PipelineFile,
    pub source: PathBuf,
    pub run_dir: PathBuf,
    pub stages: Vec<Stage>,
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
    })
}

/// What a run did, for the summary it prints.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub store: Store,
    pub skipped: Vec<Skip>,
    /// The checkpoint trained (or given) when the file has `[train]`.
    pub checkpoint: Option<PathBuf>,
    pub synthesized: Option<Synthesized>,
    pub evaluation: Option<Evaluation>,
    pub nnunet: Option<NnunetExport>,
    /// `report.html`, when `output.report` is on.
    pub report: Option<PathBuf>,
    pub provenance: PathBuf,
}

impl Outcome {
    /// The summary as JSON (`medsynth run --summary-json`): the same content as the printed
    /// table, with every metric region.
    pub fn summary_json(&self) -> serde_json::Value {
        use serde_json::json;
        let path = |p: &Path| p.display().to_string();
        let splits: serde_json::Map<String, serde_json::Value> =
            preprocess::counts(&self.store.rows)
                .into_iter()
                .map(|(split, (subjects, slices))| {
                    (split, json!({"subjects": subjects, "slices": slices}))
                })
                .collect();
        let skipped = |s: &[Skip]| -> Vec<serde_json::Value> {
            s.iter()
                .map(|s| json!({"subject": s.subject, "stage": s.stage.to_string(), "reason": s.reason}))
                .collect()
        };
        let evaluation = self.evaluation.as_ref().map(|e| {
            let metrics: Vec<serde_json::Value> = e
                .aggregates()
                .into_iter()
                .map(|((method, modality, metric, region), (mean, sd, n))| {
                    json!({"method": method, "modality": modality, "metric": metric,
                        "region": region, "mean": mean, "sd": sd, "n": n})
                })
                .collect();
            let not_computed: Vec<serde_json::Value> = e
                .skipped
                .iter()
                .map(|(metric, why)| json!({"metric": metric, "why": why}))
                .collect();
            json!({"path": path(&e.path), "metrics": metrics, "not_computed": not_computed})
        });
        json!({
            "run_dir": path(&self.run_dir),
            "slice_store": {"dir": path(&self.store.dir), "reused": self.store.reused,
                "channels": self.store.channels},
            "splits": splits,
            "skipped": skipped(&self.skipped),
            "checkpoint": self.checkpoint.as_deref().map(path),
            "synthesized": self.synthesized.as_ref().map(|s| {
                s.variants.iter().map(|v| json!({"dir": path(v), "slices": s.slices})).collect::<Vec<_>>()
            }),
            "evaluation": evaluation,
            "nnunet": self.nnunet.as_ref().map(|n| json!({"dir": path(&n.dir), "training": n.training,
                "test": n.test, "synthetic_channels": n.synthetic.len(), "skipped": skipped(&n.skipped)})),
            "report": self.report.as_deref().map(path),
            "provenance": path(&self.provenance),
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run folder   {}", self.run_dir.display())?;
        writeln!(
            f,
            "slice store  {} ({}{})",
            self.store.dir.display(),
            if self.store.reused { "reused, " } else { "" },
            self.store.channels.join(", ")
        )?;
        writeln!(f, "{:<8} {:>8} {:>8}", "split", "subjects", "slices")?;
        for (split, (subjects, slices)) in preprocess::counts(&self.store.rows) {
            writeln!(f, "{split:<8} {subjects:>8} {slices:>8}")?;
        }
        if self.skipped.is_empty() {
            writeln!(f, "skipped      none")?;
        } else {
            writeln!(f, "skipped      {} subject(s):", self.skipped.len())?;
            for s in &self.skipped {
                writeln!(f, "  {} [{}]: {}", s.subject, s.stage, s.reason)?;
            }
        }
        if let Some(c) = &self.checkpoint {
            writeln!(f, "checkpoint   {}", c.display())?;
        }
        if let Some(s) = &self.synthesized {
            for v in &s.variants {
                writeln!(f, "synthesized  {} ({} slices)", v.display(), s.slices)?;
            }
        }
        if let Some(e) = &self.evaluation {
            writeln!(
                f,
                "metrics      {} (mean ± sd over subjects, whole volume)",
                e.path.display()
            )?;
            writeln!(
                f,
                "  {:<20} {:<8} {:<8} {:>20}",
                "method", "modality", "metric", "value"
            )?;
            for ((method, modality, metric, region), (mean, sd, n)) in e.aggregates() {
                if region != "whole" {
                    continue;
                }
                writeln!(
                    f,
                    "  {method:<20} {modality:<8} {metric:<8} {:>20}",
                    format!("{mean:.4} ± {sd:.4} (n={n})")
                )?;
            }
            for (metric, why) in &e.skipped {
                writeln!(f, "  {metric}: not computed: {why}")?;
            }
        }
        if let Some(n) = &self.nnunet {
            writeln!(
                f,
                "nnU-Net      {} ({} training, {} test cases; {} synthesized channel(s))",
                n.dir.display(),
                n.training,
                n.test,
                n.synthetic.len()
            )?;
        }
        if let Some(r) = &self.report {
            writeln!(f, "report       {}", r.display())?;
        }
        write!(f, "provenance   {}", self.provenance.display())
    }
}

/// Runs every stage of a plan, in order, resolving relative paths against `root`.
pub fn execute(plan: Plan, root: &Path) -> Result<Outcome, RunError> {
    // Held until the run returns: one writer per run folder.
    let _lock = lock::RunLock::acquire(&plan.run_dir)?;
    let mut run = Run::new(plan, root);
    let spec_copy = run.dir().join("pipeline.toml");
    let started = now_rfc3339();
    let text = toml::to_string(&run.plan.file)
        .map_err(|e| RunError::failed(Stage::Input, &spec_copy, e))?;
    crate::volume::AtomicFile::write(&spec_copy, text.as_bytes())
        .map_err(|e| RunError::failed(Stage::Input, &spec_copy, e))?;
    let row = run.row(Stage::Input, "pipeline", &spec_copy, "", &started)?;
    run.record(row);

    let subjects = input::run(&mut run)?;
    let mut skipped = subjects.skipped.clone();
    run.save_provenance()?;
    let store = preprocess::run(&mut run, &subjects, &mut skipped)?;
    run.save_provenance()?;
    let stages = run.plan.stages.clone();
    let checkpoint = if stages.contains(&Stage::Train) {
        Some(train::run(&mut run, &store)?)
    } else {
        run.plan
            .file
            .model
            .as_ref()
            .and_then(|m| m.checkpoint.as_ref())
            .map(|c| run.resolve(c))
    };
    let synthesized = match (stages.contains(&Stage::Synthesize), &checkpoint) {
        (true, Some(c)) => Some(synthesize::run(&mut run, &store, c)?),
        (true, None) => {
            return Err(RunError::Nothing {
                stage: Stage::Synthesize,
                what: "no model to apply: add [train] or set model.checkpoint".into(),
            });
        }
        (false, _) => None,
    };
    let evaluation = match (stages.contains(&Stage::Evaluate), &synthesized) {
        (true, Some(s)) => Some(evaluate::run(&mut run, &store, &subjects, s)?),
        _ => None,
    };
    let nnunet = if run.plan.file.output.formats.contains(&WriteFormat::Nnunet) {
        let variants = synthesized.as_ref().map_or(0, |s| s.variants.len());
        let export = export::run(&mut run, &store, &subjects, variants)?;
        skipped.extend(export.skipped.iter().cloned());
        Some(export)
    } else {
        None
    };
    let report = if run.plan.file.output.report {
        Some(report::run(
            &mut run,
            report::Inputs {
                store: &store,
                skipped: &skipped,
                checkpoint: checkpoint.as_deref(),
                synthesized: synthesized.as_ref(),
                evaluation: evaluation.as_ref(),
                nnunet: nnunet.as_ref(),
            },
        )?)
    } else {
        None
    };
    let provenance = run.save_provenance()?;
    Ok(Outcome {
        run_dir: run.dir().to_owned(),
        store,
        skipped,
        checkpoint,
        synthesized,
        evaluation,
        nnunet,
        report,
        provenance,
    })
}
