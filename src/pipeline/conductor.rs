//! The conductor: runs a plan's stages in order (every stage in one process, a shard's
//! per-subject stages, or a sharded run's training job) and hands each stage what the earlier
//! ones produced.

use std::path::{Path, PathBuf};

use super::context::Run;
use super::error::RunError;
use super::handoff::{self, Evaluation, Skip, Store, Subjects, Synthesized};
use super::lock;
use super::outcome::Outcome;
use super::plan::{Mode, Part, Plan};
use super::shard::{self, Shard, write_record};
use super::stage::Stage;
use super::stages::{
    bids, evaluate, export, input, preprocess, publish, report, synthesize, train,
};
use crate::provenance::now_rfc3339;
use crate::spec::WriteFormat;

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
pub(super) fn begin(plan: Plan, root: &Path) -> Result<(Run, lock::RunLock), RunError> {
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
pub(super) fn given_checkpoint(run: &Run) -> Option<PathBuf> {
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
pub(super) struct Produced {
    pub(super) store: Store,
    pub(super) subjects: Subjects,
    pub(super) skipped: Vec<Skip>,
    pub(super) checkpoint: Option<PathBuf>,
    pub(super) synthesized: Option<Synthesized>,
    pub(super) evaluation: Option<Evaluation>,
}

/// The cohort-wide outputs (the nnU-Net export and the report) and the provenance, for a
/// whole run and for a merge.
pub(super) fn outputs(mut run: Run, p: Produced) -> Result<Outcome, RunError> {
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
