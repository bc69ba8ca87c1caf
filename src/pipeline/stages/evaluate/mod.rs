//! The `[evaluate]` stage: scores every synthetic variant of the model and the baselines
//! against the real target of every subject of the split that has one, on the subject's
//! original grid ([`scorer`]), the downstream segmentation ([`downstream`]) and the set-level
//! scores ([`set_level`]), and writes `metrics.parquet` (method, subject, modality, metric,
//! region, protocol, value, variant, setting).
//!
//! Beside it, `.metrics.stamp.json` records what the scores were computed from (the
//! `[evaluate]`, `[model]` and `[train]` settings, the seed, the slice store's key and the
//! synthesized variants' digests); a re-run with the same fingerprint reuses the scores, and
//! any change scores again.

mod downstream;
mod scorer;
mod set_level;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};

use crate::dataset::{ManifestRow, SliceSet, write_parquet};
use crate::fingerprint::{Fingerprint, Stamp, Verdict};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::{Action, Evaluation, MetricRow, Subjects, metric_name};
use crate::pipeline::handoff::{Store, Synthesized};
use crate::pipeline::stage::Stage;
use crate::provenance::{now_rfc3339, sha256_file};
use crate::spec::{Baseline, Metric, SplitName};
use crate::synth::baseline::{HistogramBaseline, RegressionBaseline};
use crate::synth::unet_baseline::UnetBaseline;
use crate::synth::volumes::to_original_grid;
use crate::synth::{Generator, SynthError};
use downstream::dice_rows;
use scorer::{Scorer, subject_foreground};
use set_level::set_level_rows;

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Evaluate, path, e.to_string())
}

/// Rows of each subject, in order.
fn by_subject(set: &SliceSet) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in set.rows.iter().enumerate() {
        out.entry(r.subject.clone()).or_default().push(i);
    }
    out
}

type Picked<'a> = (ndarray::Array4<f32>, Vec<&'a ManifestRow>);

/// Slices `rows` of `set`, read from the store, and their rows.
fn pick<'a>(set: &'a SliceSet, rows: &[usize]) -> Result<Picked<'a>, crate::dataset::StoreError> {
    Ok((
        set.gather(rows)?,
        rows.iter().map(|&i| &set.rows[i]).collect(),
    ))
}

/// Writes the rows as parquet.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<(), crate::dataset::StoreError> {
    let text = |name: &str, f: fn(&MetricRow) -> &String| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(r).clone()).collect::<Vec<String>>(),
        )
    };
    let mut df = DataFrame::new_infer_height(vec![
        text("method", |r| &r.method),
        text("subject", |r| &r.subject),
        text("modality", |r| &r.modality),
        text("metric", |r| &r.metric),
        text("region", |r| &r.region),
        text("protocol", |r| &r.protocol),
        text("variant", |r| &r.variant),
        text("setting", |r| &r.setting),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<f64>>(),
        ),
    ])
    .map_err(|e| crate::dataset::StoreError::Write {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    write_parquet(path, &mut df)
}

/// A scoring method: the model (`None`: its synthetic volumes) or a baseline.
type Method = (String, Option<Box<dyn Generator>>);

/// What scoring needs: the settings, the methods and both slice sets.
struct Scoring {
    file: crate::spec::PipelineFile,
    section: crate::spec::EvaluateSection,
    protocol: String,
    /// Per-subject metrics, and set-level ones (FID, KID).
    metrics: Vec<Metric>,
    set_level: Vec<Metric>,
    weights: Option<PathBuf>,
    skipped: Vec<(String, String)>,
    methods: Vec<Method>,
    real_set: SliceSet,
    /// Every synthetic variant's slices, variant 0 first, and their folders.
    fake_sets: Vec<SliceSet>,
    variants: Vec<PathBuf>,
    store_dir: PathBuf,
}

/// `trains`: whether this process may train the networks evaluation needs (`baseline-unet`,
/// the segmentation network): not in a shard or a merge, whose per-subject rows come from
/// the shards.
fn scoring(
    run: &Run,
    store: &Store,
    synthesized: &Synthesized,
    trains: bool,
) -> Result<Scoring, RunError> {
    let file = run.plan.file.clone();
    let section = file.evaluate.clone().unwrap_or_default();
    let Some(model) = &file.model else {
        return Err(RunError::Nothing {
            stage: Stage::Evaluate,
            what: "[evaluate] needs a [model] section".into(),
        });
    };
    let protocol = serde_json::to_value(section.protocol)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut skipped = Vec::new();
    let (set_level, metrics): (Vec<Metric>, Vec<Metric>) = section
        .metrics
        .iter()
        .copied()
        .partition(|m| matches!(m, Metric::Fid | Metric::Kid));
    let weights = fid_weights(run, &section)?;
    if weights.is_none() {
        for m in &set_level {
            skipped.push((
                metric_name(*m),
                "no Inception weights: set evaluate.fid_weights or MEDSYNTH_FID_WEIGHTS to \
                 pt_inception-2015-12-05-6726825d.pth (pytorch-fid's release file)"
                    .to_owned(),
            ));
        }
    }
    let split = match section.split {
        SplitName::All => None,
        s => Some(s.as_str()),
    };
    let real_set = store.load(split).map_err(|e| failed(&store.dir, e))?;
    if synthesized.variants.is_empty() {
        return Err(RunError::Nothing {
            stage: Stage::Evaluate,
            what: "synthesis wrote no variant".into(),
        });
    }
    let fake_sets = synthesized
        .variants
        .iter()
        .map(|v| SliceSet::load(v, None).map_err(|e| failed(v, e)))
        .collect::<Result<Vec<_>, _>>()?;

    // The model, then the baselines (only for tasks with input modalities), fitted on the
    // whole training split (every shard's).
    let mut methods: Vec<Method> = vec![(metric_method(model), None)];
    if model.task.uses_inputs() {
        let train = SliceSet::load(&store.dir, Some("train")).map_err(|e| failed(&store.dir, e))?;
        for target in model.target.iter() {
            for baseline in &section.baselines {
                let fitted: Box<dyn Generator> = match baseline {
                    Baseline::Histogram => Box::new(
                        HistogramBaseline::fit(&train, &model.inputs, target)
                            .map_err(|e| failed(&store.dir, e))?,
                    ),
                    Baseline::Regression => Box::new(
                        RegressionBaseline::fit(&train, &model.inputs, target)
                            .map_err(|e| failed(&store.dir, e))?,
                    ),
                    Baseline::Unet => continue,
                };
                methods.push((baseline.method().into(), Some(fitted)));
            }
        }
        if section.baselines.contains(&Baseline::Unet) && !trains {
            skipped.push((
                Baseline::Unet.method().into(),
                "not trained in sharded runs; run the pipeline unsharded to score it".into(),
            ));
        } else if section.baselines.contains(&Baseline::Unet) {
            let dir = run.dir().join("baselines").join("unet");
            let val = SliceSet::load(&store.dir, Some("val")).ok();
            let train_section = file.train.clone().unwrap_or_default();
            let device = run.device(Stage::Evaluate)?;
            let (net, conditioning) = crate::train::regression::fit(
                model,
                &train_section,
                crate::synth::unit_seed(file.pipeline.seed, "baseline-unet"),
                (&train, val.as_ref()),
                &dir,
                &device,
            )
            .map_err(|e| failed(&dir, format!("baseline-unet: {e}")))?;
            let fitted = UnetBaseline {
                net,
                conditioning,
                device,
            };
            methods.push((Baseline::Unet.method().into(), Some(Box::new(fitted))));
        }
    }
    Ok(Scoring {
        file,
        section,
        protocol,
        metrics,
        set_level,
        weights,
        skipped,
        methods,
        real_set,
        fake_sets,
        variants: synthesized.variants.clone(),
        store_dir: store.dir.clone(),
    })
}

/// The file beside `metrics.parquet` that records what its scores were computed from.
const STAMP_FILE: &str = ".metrics.stamp.json";

/// What the stamp records besides the fingerprint.
#[derive(serde::Serialize, serde::Deserialize)]
struct Scored {
    /// SHA-256 of `metrics.parquet` as written.
    sha256: String,
    /// Metrics not computed, and why.
    skipped: Vec<(String, String)>,
}

/// What the scores are computed from: the `[evaluate]` settings (but `compare`, which is read
/// anew each run), the model and training settings but the device and the checkpoint period
/// (the baselines and the segmentation network train with them), the seed, the slice store's key, each synthesized variant's
/// digest, the FID weights file and, for a shard, which one.
fn fingerprint(
    run: &Run,
    store: &Store,
    synthesized: &Synthesized,
    weights: Option<&Path>,
) -> Fingerprint {
    let file = &run.plan.file;
    let mut evaluate = serde_json::to_value(&file.evaluate).unwrap_or_default();
    if let Some(e) = evaluate.as_object_mut() {
        e.remove("compare");
    }
    let mut model = serde_json::to_value(&file.model).unwrap_or_default();
    if let Some(m) = model.as_object_mut() {
        m.remove("checkpoint");
    }
    // What the networks evaluation trains are trained with (not where, nor how often saved).
    let mut train = serde_json::to_value(&file.train).unwrap_or_default();
    if let Some(t) = train.as_object_mut() {
        t.remove("device");
        t.remove("checkpoint_every");
    }
    let weights = weights.map(|w| {
        let size = std::fs::metadata(w).map(|m| m.len()).unwrap_or(0);
        serde_json::json!({"file": w.file_name().map(|n| n.to_string_lossy().into_owned()), "bytes": size})
    });
    Fingerprint::new(serde_json::json!({
        "evaluate": evaluate,
        "model": model,
        "train": train,
        "seed": file.pipeline.seed,
        "store": store.key,
        "synthesized": synthesized.digests,
        "fid_weights": weights,
        "shard": run.shard().map(|s| s.to_string()),
    }))
}

/// Runs the stage: every subject's scores, then (unless this is a shard, whose set-level
/// scores `medsynth merge` computes over the whole cohort) FID and KID. Scores computed
/// earlier from the same fingerprint are reused.
pub fn run(
    run: &mut Run,
    store: &Store,
    subjects: &Subjects,
    synthesized: &Synthesized,
) -> Result<Evaluation, RunError> {
    let section = run.plan.file.evaluate.clone().unwrap_or_default();
    let weights = fid_weights(run, &section)?;
    let fingerprint = fingerprint(run, store, synthesized, weights.as_deref());
    let stamp_path = run.dir().join(STAMP_FILE);
    let path = run.dir().join("metrics.parquet");
    let action = match Stamp::verdict(Stamp::read(&stamp_path), &fingerprint) {
        Verdict::Reuse(stamp) => match reuse(run, &section, &path, stamp)? {
            Some(evaluation) => return Ok(evaluation),
            None => Action::RanAgain("metrics.parquet changed since it was written".into()),
        },
        Verdict::Run { why: Some(why) } => Action::RanAgain(why),
        Verdict::Run { why: None } => Action::Ran,
    };
    run.did(Stage::Evaluate, "metrics", action);
    let trains = run.shard().is_none();
    let mut scoring = scoring(run, store, synthesized, trains)?;
    let mut rows = subject_rows(&scoring, subjects)?;
    if trains {
        rows.extend(dice_rows(run, &scoring, subjects, store)?);
    } else if scoring.section.segmentation.is_some() {
        scoring.skipped.push((
            "dice".into(),
            "downstream segmentation is not trained in sharded runs".into(),
        ));
    }
    let evaluation = finish(run, store, scoring, rows)?;
    let scored = Scored {
        sha256: sha256_file(&evaluation.path).map_err(|e| failed(&evaluation.path, e))?,
        skipped: evaluation.skipped.clone(),
    };
    Stamp::new(
        &fingerprint,
        &run.config_hash,
        serde_json::to_value(&scored).unwrap_or_default(),
    )
    .write(&stamp_path)
    .map_err(|e| failed(&stamp_path, e))?;
    Ok(evaluation)
}

/// The evaluation an earlier run wrote from the same fingerprint, when `metrics.parquet` is
/// still what it wrote; its provenance names the run that computed it.
fn reuse(
    run: &mut Run,
    section: &crate::spec::EvaluateSection,
    path: &Path,
    stamp: Stamp,
) -> Result<Option<Evaluation>, RunError> {
    let Ok(scored) = serde_json::from_value::<Scored>(stamp.outcome.clone()) else {
        return Ok(None);
    };
    if sha256_file(path).ok().as_deref() != Some(scored.sha256.as_str()) {
        return Ok(None);
    }
    let rows = read_metrics(path).map_err(|e| failed(path, e))?;
    run.did(Stage::Evaluate, "metrics", Action::Reused);
    let mut row = run.row(Stage::Evaluate, "metrics", path, "", &now_rfc3339())?;
    row.config_hash = stamp.config_hash;
    run.record(row);
    run.save_provenance()?;
    let compared = if run.shard().is_none() {
        compare(run, section, &rows)?
    } else {
        Vec::new()
    };
    Ok(Some(Evaluation {
        rows,
        path: path.to_owned(),
        skipped: scored.skipped,
        compared,
    }))
}

/// The evaluation of a merged run: the shards' per-subject `rows`, plus the set-level scores
/// over the whole cohort.
pub fn merged(
    run: &mut Run,
    store: &Store,
    synthesized: &Synthesized,
    rows: Vec<MetricRow>,
) -> Result<Evaluation, RunError> {
    let mut scoring = scoring(run, store, synthesized, false)?;
    if scoring.section.segmentation.is_some() {
        scoring.skipped.push((
            "dice".into(),
            "downstream segmentation is not trained in sharded runs".into(),
        ));
    }
    finish(run, store, scoring, rows)
}

fn subject_rows(scoring: &Scoring, subjects: &Subjects) -> Result<Vec<MetricRow>, RunError> {
    let Scoring {
        file,
        section,
        methods,
        real_set,
        fake_sets,
        variants,
        store_dir,
        ..
    } = scoring;
    let Some(model) = &file.model else {
        return Ok(Vec::new());
    };
    let fakes: Vec<BTreeMap<String, Vec<usize>>> = fake_sets.iter().map(by_subject).collect();
    let reals = by_subject(real_set);
    let mut rows = Vec::new();
    for subject in fakes[0].keys() {
        let Some(inputs) = subjects.usable.iter().find(|s| &s.id == subject) else {
            continue;
        };
        let label = match (&inputs.label, section.protocol) {
            (Some(p), crate::spec::Protocol::Brasyn) => Some(
                crate::volume::nifti::read(p)
                    .map_err(|e| failed(p, e))?
                    .frame(0)
                    .to_owned()
                    .into_dyn(),
            ),
            _ => None,
        };
        for (t, target) in model.target.iter().enumerate() {
            let Some(source) = inputs.modalities.get(target) else {
                continue; // no real target to compare with
            };
            let real_volume = source.read().map_err(|e| failed(&source.path(), e))?;
            let foreground = subject_foreground(inputs, &real_volume)?;
            let scorer = Scorer {
                scoring,
                real: real_volume.frame(0).to_owned().into_dyn(),
                label: label.as_ref(),
                foreground: &foreground,
                path: source.path(),
                subject,
                target,
            };
            for (method, generator) in methods {
                let at = |e: SynthError, path: &Path| failed(path, format!("{subject}: {e}"));
                match generator {
                    None => {
                        let mut images = Vec::new();
                        for (k, (set, by)) in fake_sets.iter().zip(&fakes).enumerate() {
                            let Some(fake_rows) = by.get(subject) else {
                                continue;
                            };
                            let (data, described) =
                                pick(set, fake_rows).map_err(|e| failed(&variants[k], e))?;
                            let fake = to_original_grid(&data, &described, t, target)
                                .map_err(|e| at(e, &variants[k]))?
                                .0
                                .frame(0)
                                .to_owned()
                                .into_dyn();
                            let scores = scorer.score(&fake)?;
                            rows.extend(scorer.rows(method, &k.to_string(), &scores));
                            images.push((fake, scores));
                        }
                        rows.extend(scorer.across_variants(method, &images)?);
                    }
                    Some(g) if g.targets().first().map(String::as_str) == Some(target) => {
                        let Some(real_rows) = reals.get(subject) else {
                            continue;
                        };
                        let (data, described) =
                            pick(real_set, real_rows).map_err(|e| failed(store_dir, e))?;
                        let fake = g
                            .generate(&data, &described, &vec![0; described.len()])
                            .and_then(|out| to_original_grid(&out, &described, 0, target))
                            .map_err(|e| at(e, store_dir))?
                            .0
                            .frame(0)
                            .to_owned()
                            .into_dyn();
                        rows.extend(scorer.rows(method, "", &scorer.score(&fake)?));
                    }
                    Some(_) => continue,
                }
            }
        }
    }
    Ok(rows)
}

/// Adds the set-level scores (not in a shard), writes `metrics.parquet` and reads the runs
/// `evaluate.compare` names.
fn finish(
    run: &mut Run,
    store: &Store,
    scoring: Scoring,
    mut rows: Vec<MetricRow>,
) -> Result<Evaluation, RunError> {
    let started = now_rfc3339();
    let Scoring {
        file,
        section,
        set_level,
        weights,
        mut skipped,
        methods,
        real_set,
        fake_sets,
        ..
    } = scoring;
    if run.shard().is_some() {
        for m in &set_level {
            skipped.push((
                metric_name(*m),
                "set-level: computed over the whole cohort by medsynth merge".to_owned(),
            ));
        }
    }
    let weights = weights.filter(|_| run.shard().is_none());
    if let (Some(w), false) = (&weights, set_level.is_empty()) {
        rows.extend(set_level_rows(
            &file,
            &run.device(Stage::Evaluate)?,
            &section,
            &set_level,
            w,
            &methods,
            (&real_set, &fake_sets[0]),
            store,
        )?);
    }
    if rows.is_empty() && run.shard().is_none() {
        return Err(RunError::Nothing {
            stage: Stage::Evaluate,
            what: "no subject of the split has a real target to compare with".into(),
        });
    }
    let path = run.dir().join("metrics.parquet");
    write_metrics(&path, &rows).map_err(|e| failed(&path, e))?;
    let row = run.row(Stage::Evaluate, "metrics", &path, "", &started)?;
    run.record(row);
    run.save_provenance()?;
    let compared = if run.shard().is_none() {
        compare(run, &section, &rows)?
    } else {
        Vec::new()
    };
    Ok(Evaluation {
        rows,
        path,
        skipped,
        compared,
    })
}

/// Reads `metrics.parquet` rows.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, crate::dataset::StoreError> {
    let df = crate::dataset::read_parquet(path)?;
    let text = |n: &str| crate::dataset::text_column(&df, path, n);
    let (method, subject, modality) = (text("method")?, text("subject")?, text("modality")?);
    let (metric, region, protocol) = (text("metric")?, text("region")?, text("protocol")?);
    // Written since the variant and setting columns exist; earlier runs scored variant 0 only.
    let optional = |n: &str| {
        if df.column(n).is_ok() {
            text(n)
        } else {
            Ok(vec![String::new(); df.height()])
        }
    };
    let (variant, setting) = (optional("variant")?, optional("setting")?);
    let value: Vec<f64> = df
        .column("value")
        .and_then(|c| c.f64().cloned())
        .map_err(|e| crate::dataset::StoreError::Invalid {
            path: path.to_owned(),
            what: format!("column \"value\": {e}"),
        })?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    Ok((0..df.height())
        .map(|i| MetricRow {
            method: method[i].clone(),
            subject: subject[i].clone(),
            modality: modality[i].clone(),
            metric: metric[i].clone(),
            region: region[i].clone(),
            protocol: protocol[i].clone(),
            value: value[i],
            variant: variant[i].clone(),
            setting: setting[i].clone(),
        })
        .collect())
}

/// The models' scores of the runs `evaluate.compare` names, on exactly this run's subjects,
/// modalities, metrics and protocol. A run that has not been evaluated yet, or that scored
/// other subjects, is an error that says so.
fn compare(
    run: &Run,
    section: &crate::spec::EvaluateSection,
    own: &[MetricRow],
) -> Result<Vec<MetricRow>, RunError> {
    // What a score is of, whichever method produced it.
    let scored = |r: &MetricRow| {
        (
            r.subject.clone(),
            r.modality.clone(),
            r.metric.clone(),
            r.region.clone(),
            r.protocol.clone(),
        )
    };
    let keys: std::collections::BTreeSet<_> = own.iter().map(scored).collect();
    let ours: std::collections::BTreeSet<&str> = own.iter().map(|r| r.subject.as_str()).collect();
    let mut out = Vec::new();
    for folder in &section.compare {
        let path = run.resolve(folder).join("metrics.parquet");
        if !path.is_file() {
            return Err(failed(
                &path,
                format!(
                    "evaluate.compare names {folder:?}, which has no metrics.parquet; run that pipeline first"
                ),
            ));
        }
        let name = Path::new(folder)
            .file_name()
            .map_or_else(|| folder.clone(), |n| n.to_string_lossy().into_owned());
        let rows = read_metrics(&path).map_err(|e| failed(&path, e))?;
        let models: Vec<MetricRow> = rows
            .into_iter()
            .filter(|r| !r.method.starts_with("baseline-"))
            .filter(|r| keys.contains(&scored(r)))
            .map(|r| MetricRow {
                method: format!("{} [{name}]", r.method),
                ..r
            })
            .collect();
        let theirs: std::collections::BTreeSet<&str> =
            models.iter().map(|r| r.subject.as_str()).collect();
        if theirs != ours {
            return Err(failed(
                &path,
                format!(
                    "evaluate.compare: {folder:?} scored subjects {theirs:?}, this run {ours:?}; compare runs of the same data, seed and split"
                ),
            ));
        }
        out.extend(models);
    }
    Ok(out)
}

/// The Inception weights file: `evaluate.fid_weights`, else `MEDSYNTH_FID_WEIGHTS`; a named
/// file that does not exist is an error.
fn fid_weights(
    run: &Run,
    section: &crate::spec::EvaluateSection,
) -> Result<Option<PathBuf>, RunError> {
    let path = match (
        &section.fid_weights,
        std::env::var_os("MEDSYNTH_FID_WEIGHTS"),
    ) {
        (Some(p), _) => run.resolve(p),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => return Ok(None),
    };
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err(failed(
            &path,
            "evaluate.fid_weights (or MEDSYNTH_FID_WEIGHTS) names this file, but it does not exist; \
             expected pt_inception-2015-12-05-6726825d.pth",
        ))
    }
}

/// The method name of the model in metrics: its kind.
fn metric_method(model: &crate::spec::ModelSection) -> String {
    serde_json::to_value(model.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "model".into())
}
