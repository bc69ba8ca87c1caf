//! `medsynth merge RUN_DIR`: combines the shards of a run into what one process would have
//! written: the slice store's manifest, every shard's per-subject files in the run folder,
//! each variant's synthetic manifest, `metrics.parquet` with the set-level scores over the
//! whole cohort, the nnU-Net export, the report and one `provenance.parquet`.
//!
//! Merge refuses, naming them, while shards have not finished; a shard re-run alone and a
//! merge run again give the same result.

use std::path::{Path, PathBuf};

use super::conductor::{Produced, begin, given_checkpoint, outputs};
use super::context::Run;
use super::error::RunError;
use super::handoff::Synthesized;
use super::outcome::Outcome;
use super::shard::{self, Shard};
use super::stage::Stage;
use super::stages::{evaluate, input, preprocess};
use crate::dataset::{ManifestRow, read_manifest, write_manifest};
use crate::provenance::now_rfc3339;

/// Files of a shard's folder that merge rebuilds rather than links (at its top level).
const REBUILT: [&str; 6] = [
    "pipeline.toml",
    "provenance.parquet",
    "metrics.parquet",
    shard::PREPARED,
    shard::APPLIED,
    super::lock::LOCK_FILE,
];

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Output, path, e.to_string())
}

/// The number of shards a run folder was split into.
fn shard_count(run_dir: &Path) -> Result<usize, RunError> {
    match shard::counts_found(run_dir).as_slice() {
        [n] => Ok(*n),
        [] => Err(RunError::Nothing {
            stage: Stage::Output,
            what: format!(
                "{} has no shard folders (shards/K-of-N); run the shards with `medsynth run FILE --shard K/N` first",
                run_dir.display()
            ),
        }),
        several => Err(RunError::Nothing {
            stage: Stage::Output,
            what: format!(
                "{} holds shards of several splits ({several:?} shards); remove the folders of the runs that are not wanted",
                shard::shards_dir(run_dir).display()
            ),
        }),
    }
}

/// Merges the shards of the run in `run_dir`.
pub fn merge(run_dir: &Path) -> Result<Outcome, RunError> {
    let count = shard_count(run_dir)?;
    let prepared = shard::prepared(run_dir, count)?;
    let (plan, root) = merged_plan(run_dir, count, &prepared[0])?;
    let synthesizes = plan.stages.contains(&Stage::Synthesize);
    if synthesizes {
        all_applied(run_dir, count)?;
    }
    let (mut run, _lock) = begin(plan, &root)?;
    // The run folder as the run names it (paths in provenance are relative to it).
    let run_dir = &run.dir().to_owned();
    adopt_provenance(&mut run, count)?;
    let (store, skipped) = preprocess::gather(&mut run, &prepared)?;
    let mut linked = 0usize;
    for index in 0..count {
        let folder = Shard { index, count }.folder(run_dir);
        linked += link_tree(&folder, &folder, run_dir)?;
    }
    tracing::info!(
        shards = count,
        files = linked,
        "linked the shards' files into the run folder"
    );
    let synthesized = if synthesizes {
        Some(synthetic_manifests(&mut run, count)?)
    } else {
        None
    };
    let evaluation = match (&run.plan.file.evaluate, &synthesized) {
        (Some(_), Some(s)) => {
            let mut rows = Vec::new();
            for index in 0..count {
                let path = Shard { index, count }
                    .folder(run_dir)
                    .join("metrics.parquet");
                if path.is_file() {
                    rows.extend(evaluate::read_metrics(&path).map_err(|e| failed(&path, e))?);
                }
            }
            rows.sort_by(|a, b| a.subject.cmp(&b.subject));
            Some(evaluate::merged(&mut run, &store, s, rows)?)
        }
        _ => None,
    };
    let checkpoint = if run.plan.stages.contains(&Stage::Train) {
        let path = shard::shards_dir(run_dir).join(shard::TRAINED);
        let t: shard::Trained = shard::read_record(&path).map_err(|e| failed(&path, e))?;
        Some(t.checkpoint)
    } else {
        given_checkpoint(&run)
    };
    let subjects = input::discover(&run)?;
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

/// The plan of the merged run, from shard 0's copy of the pipeline file, and the run root.
///
/// The root is the one the shards were given when it leads here from this folder (paths in
/// provenance then read as a single run's), else that root made absolute; a moved run folder
/// is taken where it is.
fn merged_plan(
    run_dir: &Path,
    count: usize,
    first: &shard::Prepared,
) -> Result<(super::plan::Plan, PathBuf), RunError> {
    let spec_path = Shard { index: 0, count }
        .folder(run_dir)
        .join("pipeline.toml");
    let file = crate::spec::load(&spec_path).map_err(|e| failed(&spec_path, e))?;
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let output = file.output_dir();
    let root = [&first.root, &first.root_absolute]
        .into_iter()
        .find(|r| same(&r.join(&output), run_dir))
        .unwrap_or(&first.root_absolute)
        .clone();
    let mut plan = super::plan(file, &spec_path, &root)?;
    if !same(&plan.run_dir, run_dir) {
        plan.run_dir = run_dir.to_owned();
    }
    Ok((plan, root))
}

/// Fails, naming them, when shards have not finished synthesis and evaluation.
fn all_applied(run_dir: &Path, count: usize) -> Result<(), RunError> {
    let missing: Vec<String> = (0..count)
        .filter(|&index| {
            !Shard { index, count }
                .folder(run_dir)
                .join(shard::APPLIED)
                .is_file()
        })
        .map(|index| format!("{index}/{count}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RunError::Nothing {
        stage: Stage::Output,
        what: format!(
            "shard(s) {} of {} have not finished synthesis (no {}); run them with `medsynth run FILE --shard K/N --stage apply`",
            missing.join(", "),
            run_dir.display(),
            shard::APPLIED
        ),
    })
}

/// Takes over the provenance rows of the training job and of every shard.
fn adopt_provenance(run: &mut Run, count: usize) -> Result<(), RunError> {
    let run_dir = run.dir().to_owned();
    let mut sources = vec![run_dir.join("provenance.parquet")];
    sources.extend((0..count).map(|index| {
        Shard { index, count }
            .folder(&run_dir)
            .join("provenance.parquet")
    }));
    for path in sources.iter().filter(|p| p.is_file()) {
        let rows = crate::provenance::read(path).map_err(|e| failed(path, e))?;
        run.adopt(rows.into_iter().filter(|r| r.artifact != "pipeline.toml"));
    }
    Ok(())
}

/// Each variant's synthetic manifest from the shards' rows, as one process writes it.
fn synthetic_manifests(run: &mut Run, count: usize) -> Result<Synthesized, RunError> {
    let started = now_rfc3339();
    let run_dir = run.dir().to_owned();
    let variants = run
        .plan
        .file
        .synthesize
        .as_ref()
        .map_or(1, |s| s.variants.max(1));
    let mut dirs = Vec::new();
    let mut slices = 0;
    for v in 0..variants {
        let rel = Path::new("synth")
            .join("slices")
            .join(format!("variant-{v}"))
            .join("manifest.parquet");
        let mut rows: Vec<ManifestRow> = Vec::new();
        for index in 0..count {
            // A shard that owned no subject of the split has none.
            let path = Shard { index, count }.folder(&run_dir).join(&rel);
            if path.is_file() {
                rows.extend(read_manifest(&path).map_err(|e| failed(&path, e))?);
            }
        }
        // One process writes subjects in order, each subject's slices in store order.
        rows.sort_by(|a, b| a.subject.cmp(&b.subject));
        let path = run_dir.join(&rel);
        write_manifest(&path, &rows).map_err(|e| failed(&path, e))?;
        let row = run.row(Stage::Synthesize, "synthetic-manifest", &path, "", &started)?;
        run.record(row);
        if v == 0 {
            slices = rows.len();
        }
        dirs.push(path.parent().map(Path::to_owned).unwrap_or_default());
    }
    Ok(Synthesized {
        variants: dirs,
        slices,
        digests: Vec::new(),
    })
}

/// Hard-links (or copies, across file systems) every file under `dir` into the same place
/// under `run_dir`, except what merge rebuilds and half-written (hidden) files; returns how
/// many it linked. A file already there is replaced atomically.
fn link_tree(top: &Path, dir: &Path, run_dir: &Path) -> Result<usize, RunError> {
    let mut n = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| failed(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| failed(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = path.strip_prefix(top).unwrap_or(&path).to_owned();
        let at_top = dir == top;
        if name.starts_with('.') || (at_top && REBUILT.contains(&name.as_str())) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| failed(&path, e))?;
        if kind.is_dir() {
            n += link_tree(top, &path, run_dir)?;
            continue;
        }
        // Per-variant synthetic manifests are rebuilt from all shards.
        if name == "manifest.parquet" && rel.starts_with("synth") {
            continue;
        }
        let dest = run_dir.join(&rel);
        link(&path, &dest)?;
        n += 1;
    }
    Ok(n)
}

fn link(src: &Path, dest: &Path) -> Result<(), RunError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
    }
    let temp: PathBuf = crate::volume::temp_path(dest);
    if std::fs::hard_link(src, &temp).is_err() {
        std::fs::copy(src, &temp).map_err(|e| failed(src, e))?;
    }
    std::fs::rename(&temp, dest).map_err(|e| failed(dest, e))?;
    // Renaming a link onto another link of the same file (a merge run again) leaves both
    // names in place; the temporary one goes.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(&temp, e)),
        _ => Ok(()),
    }
}
