//! Planning and running a pipeline file: which stages it asks for and whether this build of
//! medsynth can do them.
//!
//! A run never starts work it cannot finish: every stage the file asks for is checked before
//! the first voxel is read, and a stage this build does not provide yet stops the run with an
//! error that names it.

pub mod comparison;
mod context;
mod handoff;
pub mod lock;
mod merge;
mod model;
pub mod shard;
mod stages;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};

pub use context::{Run, now_rfc3339, sha256_file};
pub use handoff::{
    Action, Evaluation, MetricRow, NnunetExport, Skip, Store, Subjects, Synthesized, Work, counts,
    metric_name,
};
pub use merge::merge;
pub use model::{clip_range, device, diffusion_trainer, generator};
pub use shard::Shard;
pub use stages::evaluate::{read_metrics, write_metrics};
pub use stages::export::{FILE_ENDING, check_layout};
pub use stages::preprocess::channel_names;
use stages::{bids, evaluate, export, input, preprocess, publish, report, synthesize, train};

use crate::spec::{PipelineFile, WriteFormat};
use shard::write_record;

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
    /// The BIDS derivatives folder, when `output.formats` has `bids`.
    pub bids: Option<PathBuf>,
    /// The DICOMweb server the synthesized series were stored on, and what was sent.
    pub stored: Option<(String, crate::dicomweb::Stored)>,
    /// `report.html`, when `output.report` is on.
    pub report: Option<PathBuf>,
    pub provenance: PathBuf,
    /// What to run next, for the parts of a sharded run.
    pub next: Option<String>,
    /// What each stage did or reused, and why it ran again.
    pub work: Vec<Work>,
}

impl Outcome {
    /// The summary as JSON (`medsynth run --summary-json`): the same content as the printed
    /// table, with every metric region.
    pub fn summary_json(&self) -> serde_json::Value {
        use serde_json::json;
        let path = |p: &Path| p.display().to_string();
        let splits: serde_json::Map<String, serde_json::Value> = counts(&self.store.rows)
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
            "bids": self.bids.as_deref().map(path),
            "dicomweb_stored": self.stored.as_ref().map(|(url, s)| json!({"server": url,
                "series_sent": s.sent_series, "series_already_there": s.present_series,
                "instances_sent": s.sent_instances})),
            "report": self.report.as_deref().map(path),
            "provenance": path(&self.provenance),
            "next": self.next,
            "work": self.work.iter().map(|w| {
                let why = match &w.action {
                    Action::RanAgain(why) => Some(why.as_str()),
                    _ => None,
                };
                json!({"stage": w.stage.to_string(), "what": w.what, "action": w.action.name(), "why": why})
            }).collect::<Vec<_>>(),
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
        for (split, (subjects, slices)) in counts(&self.store.rows) {
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
        if let Some(b) = &self.bids {
            writeln!(f, "BIDS         {}", b.display())?;
        }
        if let Some((url, s)) = &self.stored {
            writeln!(
                f,
                "stored on    {url}: {} series sent ({} instances), {} already there",
                s.sent_series, s.sent_instances, s.present_series
            )?;
        }
        if let Some(r) = &self.report {
            writeln!(f, "report       {}", r.display())?;
        }
        for w in &self.work {
            match &w.action {
                Action::RanAgain(why) => {
                    writeln!(f, "ran again    [{}] {}: {why}", w.stage, w.what)?
                }
                Action::Reused => writeln!(f, "reused       [{}] {}", w.stage, w.what)?,
                Action::Ran => {}
            }
        }
        write!(f, "provenance   {}", self.provenance.display())?;
        if let Some(next) = &self.next {
            write!(f, "\nnext         {next}")?;
        }
        Ok(())
    }
}

/// Runs a plan, resolving relative paths against `root`: every stage (one process), a
/// shard's per-subject stages, or a sharded run's training job.
pub fn execute(plan: Plan, root: &Path) -> Result<Outcome, RunError> {
    match plan.mode {
        Mode::Whole => whole(plan, root),
        Mode::Shard(shard, part) => sharded(plan, root, shard, part),
        Mode::Train { shards } => train_job(plan, root, shards),
    }
}

/// Starts a run: locks the folder it writes and keeps the resolved pipeline file there.
fn begin(plan: Plan, root: &Path) -> Result<(Run, lock::RunLock), RunError> {
    let run = Run::new(plan, root);
    // Held until the run returns: one writer per folder.
    let lock = lock::RunLock::acquire(run.dir())?;
    let mut run = run;
    let spec_copy = run.dir().join("pipeline.toml");
    let started = now_rfc3339();
    let text = toml::to_string(&run.plan.file)
        .map_err(|e| RunError::failed(Stage::Input, &spec_copy, e))?;
    crate::volume::AtomicFile::write(&spec_copy, text.as_bytes())
        .map_err(|e| RunError::failed(Stage::Input, &spec_copy, e))?;
    let row = run.row(Stage::Input, "pipeline", &spec_copy, "", &started)?;
    run.record(row);
    Ok((run, lock))
}

/// The checkpoint synthesis applies when the file does not train: `model.checkpoint`.
fn given_checkpoint(run: &Run) -> Option<PathBuf> {
    run.plan
        .file
        .model
        .as_ref()
        .and_then(|m| m.checkpoint.as_ref())
        .map(|c| run.resolve(c))
}

fn no_model() -> RunError {
    RunError::Nothing {
        stage: Stage::Synthesize,
        what: "no model to apply: add [train] or set model.checkpoint".into(),
    }
}

/// Every stage in one process.
fn whole(plan: Plan, root: &Path) -> Result<Outcome, RunError> {
    let (mut run, _lock) = begin(plan, root)?;
    let subjects = input::run(&mut run)?;
    let mut skipped = subjects.skipped.clone();
    run.save_provenance()?;
    let store = preprocess::run(&mut run, &subjects, &mut skipped)?;
    run.save_provenance()?;
    let stages = run.plan.stages.clone();
    let checkpoint = if stages.contains(&Stage::Train) {
        Some(train::run(&mut run, &store)?)
    } else {
        given_checkpoint(&run)
    };
    let synthesized = match (stages.contains(&Stage::Synthesize), &checkpoint) {
        (true, Some(c)) => Some(synthesize::run(&mut run, &store, c, &subjects)?),
        (true, None) => return Err(no_model()),
        (false, _) => None,
    };
    let evaluation = match (stages.contains(&Stage::Evaluate), &synthesized) {
        (true, Some(s)) => Some(evaluate::run(&mut run, &store, &subjects, s)?),
        _ => None,
    };
    outputs(
        run,
        Produced {
            store,
            subjects,
            skipped,
            checkpoint,
            synthesized,
            evaluation,
        },
    )
}

/// What the stages before `[output]` produced.
struct Produced {
    store: Store,
    subjects: Subjects,
    skipped: Vec<Skip>,
    checkpoint: Option<PathBuf>,
    synthesized: Option<Synthesized>,
    evaluation: Option<Evaluation>,
}

/// The cohort-wide outputs (the nnU-Net export and the report) and the provenance, for a
/// whole run and for a merge.
fn outputs(mut run: Run, p: Produced) -> Result<Outcome, RunError> {
    let Produced {
        store,
        subjects,
        mut skipped,
        checkpoint,
        synthesized,
        evaluation,
    } = p;
    let nnunet = if run.plan.file.output.formats.contains(&WriteFormat::Nnunet) {
        let variants = synthesized.as_ref().map_or(0, |s| s.variants.len());
        let export = export::run(&mut run, &store, &subjects, variants)?;
        skipped.extend(export.skipped.iter().cloned());
        Some(export)
    } else {
        None
    };
    let bids = if run.plan.file.output.formats.contains(&WriteFormat::Bids) && synthesized.is_some()
    {
        Some(bids::run(&mut run, &subjects)?)
    } else {
        None
    };
    let stored = match (&run.plan.file.output.dicomweb, &synthesized) {
        (Some(server), Some(_)) => Some((server.url.clone(), publish::run(&run, server)?)),
        _ => None,
    };
    let report = if run.plan.file.output.report {
        Some(report::run(
            &mut run,
            report::Inputs {
                store: &store,
                skipped: &skipped,
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
        bids,
        stored,
        report,
        provenance,
        next: None,
        work: run.work().to_vec(),
    })
}

/// The per-subject stages of one shard.
fn sharded(plan: Plan, root: &Path, shard: Shard, part: Part) -> Result<Outcome, RunError> {
    let (mut run, _lock) = begin(plan, root)?;
    let subjects = input::run(&mut run)?;
    let mut skipped = subjects.skipped.clone();
    run.save_provenance()?;
    let store = preprocess::run(&mut run, &subjects, &mut skipped)?;
    let record = shard::Prepared {
        key: store.key.clone(),
        store: store.dir.clone(),
        channels: store.channels.clone(),
        root: root.to_owned(),
        root_absolute: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()),
        subjects: handoff::subjects_of(&store.rows),
        skipped: skipped.iter().map(shard::SkipRecord::from).collect(),
    };
    write_record(&run.dir().join(shard::PREPARED), &record, Stage::Preprocess)?;
    run.save_provenance()?;
    let source = run.plan.source.display().to_string();
    let count = shard.count;
    let train_next = format!(
        "when every shard is prepared: medsynth run {source} --shards {count} --stage train"
    );
    let wants_model = run.plan.stages.contains(&Stage::Synthesize);
    let mut outcome = Outcome {
        run_dir: run.dir().to_owned(),
        store,
        skipped,
        checkpoint: None,
        synthesized: None,
        evaluation: None,
        nnunet: None,
        bids: None,
        stored: None,
        report: None,
        provenance: run.dir().join("provenance.parquet"),
        next: None,
        work: run.work().to_vec(),
    };
    if part == Part::Prepare || !wants_model {
        outcome.next = Some(if wants_model {
            train_next
        } else {
            format!(
                "when every shard is done: medsynth merge {}",
                run.run_dir().display()
            )
        });
        return Ok(outcome);
    }
    // Synthesis needs the gathered store (baselines fit on the whole training split) and the
    // trained model.
    if !outcome.store.manifest().is_file() {
        if part == Part::All {
            outcome.next = Some(train_next);
            return Ok(outcome);
        }
        return Err(RunError::Nothing {
            stage: Stage::Synthesize,
            what: format!(
                "the shards' slice stores are not gathered yet ({} is missing); {train_next}",
                outcome.store.manifest().display()
            ),
        });
    }
    let checkpoint = if run.plan.stages.contains(&Stage::Train) {
        let path = shard::shards_dir(run.run_dir()).join(shard::TRAINED);
        let trained: shard::Trained = match shard::read_record(&path) {
            Ok(t) => t,
            Err(_) if part == Part::All => {
                outcome.next = Some(train_next);
                return Ok(outcome);
            }
            Err(e) => {
                return Err(RunError::Nothing {
                    stage: Stage::Synthesize,
                    what: format!("the model is not trained yet ({e}); {train_next}"),
                });
            }
        };
        trained.checkpoint
    } else {
        given_checkpoint(&run).ok_or_else(no_model)?
    };
    // A shard may own no subject of the split synthesis or evaluation reads.
    let has = |split: crate::spec::SplitName| {
        outcome
            .store
            .rows
            .iter()
            .any(|r| split == crate::spec::SplitName::All || r.split == split.as_str())
    };
    let file = run.plan.file.clone();
    let synthesized = match &file.synthesize {
        Some(s) if has(s.split) => Some(synthesize::run(
            &mut run,
            &outcome.store,
            &checkpoint,
            &subjects,
        )?),
        _ => None,
    };
    let evaluation = match (&file.evaluate, &synthesized) {
        (Some(e), Some(s)) if has(e.split) => {
            Some(evaluate::run(&mut run, &outcome.store, &subjects, s)?)
        }
        _ => None,
    };
    write_record(
        &run.dir().join(shard::APPLIED),
        &shard::Applied {
            checkpoint: checkpoint.clone(),
            subjects: handoff::subjects_of(&outcome.store.rows),
        },
        Stage::Synthesize,
    )?;
    outcome.provenance = run.save_provenance()?;
    outcome.checkpoint = Some(checkpoint);
    outcome.work = run.work().to_vec();
    outcome.synthesized = synthesized;
    outcome.evaluation = evaluation;
    outcome.next = Some(format!(
        "when every shard is done: medsynth merge {}",
        run.run_dir().display()
    ));
    Ok(outcome)
}

/// The training job of a sharded run: gathers the shards' slice stores and trains.
fn train_job(plan: Plan, root: &Path, shards: usize) -> Result<Outcome, RunError> {
    let (mut run, _lock) = begin(plan, root)?;
    let prepared = shard::prepared(run.run_dir(), shards)?;
    let (store, skipped) = preprocess::gather(&mut run, &prepared)?;
    let checkpoint = if run.plan.stages.contains(&Stage::Train) {
        let checkpoint = train::run(&mut run, &store)?;
        write_record(
            &shard::shards_dir(run.run_dir()).join(shard::TRAINED),
            &shard::Trained {
                checkpoint: checkpoint.clone(),
            },
            Stage::Train,
        )?;
        Some(checkpoint)
    } else {
        None
    };
    let provenance = run.save_provenance()?;
    let source = run.plan.source.display().to_string();
    Ok(Outcome {
        run_dir: run.dir().to_owned(),
        store,
        skipped,
        checkpoint,
        synthesized: None,
        evaluation: None,
        nnunet: None,
        bids: None,
        stored: None,
        report: None,
        provenance,
        next: Some(format!(
            "then every shard: medsynth run {source} --shard K/{shards} --stage apply"
        )),
        work: run.work().to_vec(),
    })
}
