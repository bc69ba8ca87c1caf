//! The `[evaluate]` stage: scores the model's synthetic volumes (variant 0) and two trivial
//! baselines against the real target of every subject of the split that has one, on the
//! subject's original grid, and writes `metrics.parquet` (method, subject, modality, metric,
//! region, protocol, value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};

use crate::dataset::{ManifestRow, SliceSet, write_parquet};
use crate::metrics::inception::{FidInception, distances, slice_features, value_range};
use crate::metrics::protocol::score;
use crate::pipeline::handoff::{Evaluation, MetricRow, Subjects, metric_name};
use crate::pipeline::{Run, RunError, Stage, Store, Synthesized, now_rfc3339};
use crate::spec::{Metric, SplitName};
use crate::synth::baseline::{HistogramBaseline, RegressionBaseline};
use crate::synth::volumes::to_original_grid;
use crate::synth::{Generator, SynthError};

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

/// Slices per Inception pass: features are computed a chunk at a time, so memory does not
/// grow with the split.
const CHUNK: usize = 256;

/// Inception features of the images `images` gives for each chunk of `rows`.
fn chunked_features(
    net: &FidInception,
    rows: &[usize],
    images: impl Fn(&[usize]) -> Result<ndarray::Array4<f32>, String>,
    range: [f32; 2],
    device: &burn::tensor::Device,
    path: &Path,
) -> Result<ndarray::Array2<f64>, RunError> {
    let mut parts = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        let x = images(chunk).map_err(|e| failed(path, e))?;
        parts.push(slice_features(net, &x, range, device).map_err(|e| failed(path, e))?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| failed(path, e))
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

/// Runs the stage on what synthesis wrote.
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
    fake_set: SliceSet,
    variant: PathBuf,
    store_dir: PathBuf,
}

fn scoring(run: &Run, store: &Store, synthesized: &Synthesized) -> Result<Scoring, RunError> {
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
    let Some(variant) = synthesized.variants.first() else {
        return Err(RunError::Nothing {
            stage: Stage::Evaluate,
            what: "synthesis wrote no variant".into(),
        });
    };
    let fake_set = SliceSet::load(variant, None).map_err(|e| failed(variant, e))?;

    // The model, then the baselines (only for tasks with input modalities), fitted on the
    // whole training split (every shard's).
    let mut methods: Vec<Method> = vec![(metric_method(model), None)];
    if model.task.uses_inputs() {
        let train = SliceSet::load(&store.dir, Some("train")).map_err(|e| failed(&store.dir, e))?;
        for target in model.target.iter() {
            let h = HistogramBaseline::fit(&train, &model.inputs, target)
                .map_err(|e| failed(&store.dir, e))?;
            let r = RegressionBaseline::fit(&train, &model.inputs, target)
                .map_err(|e| failed(&store.dir, e))?;
            methods.push(("baseline-histogram".into(), Some(Box::new(h))));
            methods.push(("baseline-regression".into(), Some(Box::new(r))));
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
        fake_set,
        variant: variant.clone(),
        store_dir: store.dir.clone(),
    })
}

/// Runs the stage: every subject's scores, then (unless this is a shard, whose set-level
/// scores `medsynth merge` computes over the whole cohort) FID and KID.
pub fn run(
    run: &mut Run,
    store: &Store,
    subjects: &Subjects,
    synthesized: &Synthesized,
) -> Result<Evaluation, RunError> {
    let scoring = scoring(run, store, synthesized)?;
    let rows = subject_rows(&scoring, subjects)?;
    finish(run, store, scoring, rows)
}

/// The evaluation of a merged run: the shards' per-subject `rows`, plus the set-level scores
/// over the whole cohort.
pub fn merged(
    run: &mut Run,
    store: &Store,
    synthesized: &Synthesized,
    rows: Vec<MetricRow>,
) -> Result<Evaluation, RunError> {
    let scoring = scoring(run, store, synthesized)?;
    finish(run, store, scoring, rows)
}

fn subject_rows(scoring: &Scoring, subjects: &Subjects) -> Result<Vec<MetricRow>, RunError> {
    let Scoring {
        file,
        section,
        protocol,
        metrics,
        methods,
        real_set,
        fake_set,
        variant,
        store_dir,
        ..
    } = scoring;
    let Some(model) = &file.model else {
        return Ok(Vec::new());
    };
    let fakes = by_subject(fake_set);
    let reals = by_subject(real_set);
    let mut rows = Vec::new();
    for (subject, fake_rows) in &fakes {
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
            let real = source
                .read()
                .map_err(|e| failed(&source.path(), e))?
                .frame(0)
                .to_owned()
                .into_dyn();
            for (method, generator) in methods {
                let fake = match generator {
                    None => {
                        let (data, described) =
                            pick(fake_set, fake_rows).map_err(|e| failed(variant, e))?;
                        to_original_grid(&data, &described, t, target)
                    }
                    Some(g) if g.targets().first().map(String::as_str) == Some(target) => {
                        let Some(rows) = reals.get(subject) else {
                            continue;
                        };
                        let (data, described) =
                            pick(real_set, rows).map_err(|e| failed(store_dir, e))?;
                        g.generate(&data, &described, &vec![0; described.len()])
                            .and_then(|out| to_original_grid(&out, &described, 0, target))
                    }
                    Some(_) => continue,
                }
                .map_err(|e: SynthError| failed(variant, format!("{subject}: {e}")))?
                .0;
                let fake = fake.frame(0).to_owned().into_dyn();
                if fake.shape() != real.shape() {
                    return Err(failed(
                        &source.path(),
                        format!(
                            "{subject}: the synthetic {target} is {:?}, the real one {:?}",
                            fake.shape(),
                            real.shape()
                        ),
                    ));
                }
                let scores = score(
                    real.view(),
                    fake.view(),
                    label.as_ref().map(|l| l.view()),
                    metrics,
                    section.protocol,
                    section.data_range,
                )
                .map_err(|e| failed(&source.path(), format!("{subject}: {e}")))?;
                rows.extend(scores.into_iter().map(|s| MetricRow {
                    method: method.clone(),
                    subject: subject.clone(),
                    modality: target.to_owned(),
                    metric: metric_name(s.metric),
                    region: s.region.to_owned(),
                    protocol: protocol.clone(),
                    value: s.value,
                }));
            }
        }
    }
    Ok(rows)
}

/// FID and KID of every method against the real slices of the split, over Inception
/// features computed a chunk at a time; `w` is the weights file.
fn set_level_rows(
    file: &crate::spec::PipelineFile,
    section: &crate::spec::EvaluateSection,
    set_level: &[Metric],
    w: &Path,
    methods: &[Method],
    (real_set, fake_set): (&SliceSet, &SliceSet),
    store: &Store,
) -> Result<Vec<MetricRow>, RunError> {
    let Some(model) = &file.model else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    // The run's device (train.device), as for training and synthesis.
    let kind = file.train.clone().unwrap_or_default().device;
    let device = crate::device::open(kind).map_err(|e| failed(w, e))?;
    let net = FidInception::load(w, &device).map_err(|e| failed(w, e))?;
    let clip = crate::pipeline::model::clip_range(file);
    let seed = crate::synth::unit_seed(file.pipeline.seed, "evaluate/kid");
    for (t, target) in model.target.iter().enumerate() {
        let Some(rc) = real_set.channels.iter().position(|c| c == target) else {
            continue;
        };
        let with_target: Vec<usize> = (0..real_set.len())
            .filter(|&i| {
                !real_set.rows[i]
                    .channels_missing
                    .split(',')
                    .any(|m| m == target)
            })
            .collect();
        if with_target.len() < 2 {
            continue;
        }
        let real_images =
            |rows: &[usize]| real_set.gather_channel(rows, rc).map_err(|e| e.to_string());
        let range = match clip {
            Some(r) => r,
            None => {
                let mut range = [f32::INFINITY, f32::NEG_INFINITY];
                for chunk in with_target.chunks(CHUNK) {
                    let [lo, hi] =
                        value_range(&real_images(chunk).map_err(|e| failed(&store.dir, e))?);
                    range = [range[0].min(lo), range[1].max(hi)];
                }
                range
            }
        };
        tracing::info!(%target, slices = with_target.len(), "Inception features of the real slices");
        let real_features = chunked_features(&net, &with_target, real_images, range, &device, w)?;
        let every: Vec<usize> = (0..real_set.len()).collect();
        for (method, generator) in methods {
            let fake_features = match generator {
                None => {
                    let all: Vec<usize> = (0..fake_set.len()).collect();
                    let images = |rows: &[usize]| {
                        fake_set.gather_channel(rows, t).map_err(|e| e.to_string())
                    };
                    tracing::info!(%method, %target, slices = all.len(), "Inception features");
                    chunked_features(&net, &all, images, range, &device, w)?
                }
                Some(g) if g.targets().first().map(String::as_str) == Some(target) => {
                    let images = |rows: &[usize]| {
                        let (x, described) = pick(real_set, rows).map_err(|e| e.to_string())?;
                        let out = g
                            .generate(&x, &described, &vec![0; described.len()])
                            .map_err(|e| e.to_string())?;
                        Ok(out.slice_move(ndarray::s![.., 0..1, .., ..]))
                    };
                    tracing::info!(%method, %target, slices = every.len(), "Inception features");
                    chunked_features(&net, &every, images, range, &device, w)?
                }
                Some(_) => continue,
            };
            let (fid, (kid, _)) =
                distances(&real_features, &fake_features, section.kid_subsets, seed)
                    .map_err(|e| failed(w, e))?;
            for m in set_level {
                rows.push(MetricRow {
                    method: method.clone(),
                    subject: "all".into(),
                    modality: target.to_owned(),
                    metric: metric_name(*m),
                    region: "whole".into(),
                    protocol: "slices".into(),
                    value: if *m == Metric::Fid { fid } else { kid },
                });
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
        fake_set,
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
            &section,
            &set_level,
            w,
            &methods,
            (&real_set, &fake_set),
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
