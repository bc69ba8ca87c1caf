//! The `[evaluate]` stage: scores the model's synthetic volumes (variant 0) and two trivial
//! baselines against the real target of every subject of the split that has one, on the
//! subject's original grid, and writes `metrics.parquet` (method, subject, modality, metric,
//! region, protocol, value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};

use crate::dataset::{ManifestRow, SliceSet, write_parquet};
use crate::metrics::inception::{FidInception, distances, slice_features, value_range};
use crate::metrics::protocol::{Score, brasyn_clip, score_regions};
use crate::pipeline::handoff::{Evaluation, MetricRow, Subjects, metric_name};
use crate::pipeline::{Run, RunError, Stage, Store, Synthesized, now_rfc3339};
use crate::segmentation::{Segmenter, subject_dice};
use crate::spec::{Baseline, Metric, SplitName};
use crate::synth::baseline::{HistogramBaseline, RegressionBaseline};
use crate::synth::unet_baseline::UnetBaseline;
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
            let device = crate::pipeline::model::device(train_section.device)
                .map_err(|e| failed(&run.plan.source, e))?;
            let fitted = UnetBaseline::fit(
                model,
                &train_section,
                file.pipeline.seed,
                (&train, val.as_ref()),
                &dir,
                &device,
            )
            .map_err(|e| failed(&dir, e))?;
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

/// Runs the stage: every subject's scores, then (unless this is a shard, whose set-level
/// scores `medsynth merge` computes over the whole cohort) FID and KID.
pub fn run(
    run: &mut Run,
    store: &Store,
    subjects: &Subjects,
    synthesized: &Synthesized,
) -> Result<Evaluation, RunError> {
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

/// Downstream segmentation (`evaluate.segmentation`): a segmentation network trained on the
/// real training split, run on each subject of the split with its real target, with every
/// method's synthesized target and with the target missing (filled with the normalized value
/// of intensity 0); Dice per label region on the original grid.
fn dice_rows(
    run: &Run,
    scoring: &Scoring,
    subjects: &Subjects,
    store: &Store,
) -> Result<Vec<MetricRow>, RunError> {
    let (Some(config), Some(model)) = (&scoring.section.segmentation, &scoring.file.model) else {
        return Ok(Vec::new());
    };
    let file = &scoring.file;
    let train_section = file.train.clone().unwrap_or_default();
    let device = crate::pipeline::model::device(train_section.device)
        .map_err(|e| failed(&run.plan.source, e))?;
    let train = SliceSet::load(&store.dir, Some("train")).map_err(|e| failed(&store.dir, e))?;
    let val = SliceSet::load(&store.dir, Some("val")).ok();
    let dir = run.dir().join("segmentation");
    let segmenter = Segmenter::fit(
        model,
        &train_section,
        config.epochs.unwrap_or(train_section.epochs),
        file.pipeline.seed,
        (&train, val.as_ref()),
        &dir,
        &device,
    )
    .map_err(|e| failed(&dir, e))?;
    if model.task == crate::spec::Task::LabelToImage {
        return augmentation_dice(
            run,
            scoring,
            subjects,
            store,
            (&segmenter, &train, val.as_ref()),
        );
    }
    let real_set = &scoring.real_set;
    let fake_set = &scoring.fake_sets[0];
    let fakes = by_subject(fake_set);
    let targets: Vec<(usize, usize)> = model
        .target
        .iter()
        .enumerate()
        .filter_map(|(t, m)| real_set.channel(m).map(|c| (c, t)))
        .collect();
    let mut rows = Vec::new();
    for (subject, real_rows) in by_subject(real_set) {
        let Some(label) = subjects
            .usable
            .iter()
            .find(|s| s.id == subject)
            .and_then(|s| s.label.as_ref())
        else {
            continue;
        };
        let Some(fake_rows) = fakes.get(&subject) else {
            continue;
        };
        let (data, described) = pick(real_set, &real_rows).map_err(|e| failed(&store.dir, e))?;
        if described.iter().any(|r| !r.channels_missing.is_empty()) {
            continue; // a modality is missing: no real setting to compare with
        }
        let reference = crate::volume::nifti::read(label)
            .map_err(|e| failed(label, e))?
            .frame(0)
            .to_owned()
            .into_dyn();
        let with = |channels: &[(usize, usize)], from: &ndarray::Array4<f32>| {
            let mut out = data.clone();
            for &(c, t) in channels {
                out.slice_mut(ndarray::s![.., c, .., ..])
                    .assign(&from.slice(ndarray::s![.., t, .., ..]));
            }
            out
        };
        let mut settings = vec![("real".to_owned(), "", "real", data.clone())];
        let mut missing = data.clone();
        let record: crate::preprocess::SubjectRecord =
            serde_json::from_str(&described[0].record)
                .map_err(|e| failed(&store.dir, format!("{subject}: {e}")))?;
        for (c, t) in &targets {
            let (steps, _) = crate::synth::volumes::target_record(&record, &model.target.0[*t])
                .map_err(|e| failed(&store.dir, e))?;
            missing
                .slice_mut(ndarray::s![.., *c, .., ..])
                .fill(crate::synth::volumes::background(&steps));
        }
        settings.push(("missing".to_owned(), "", "missing", missing));
        for (method, generator) in &scoring.methods {
            let (synthetic, channels, variant) = match generator {
                None => {
                    // Variant 0's slices, in the real slices' order.
                    let (fake, fake_described) =
                        pick(fake_set, fake_rows).map_err(|e| failed(&scoring.variants[0], e))?;
                    let order: Vec<usize> = described
                        .iter()
                        .map(|r| {
                            fake_described
                                .iter()
                                .position(|f| f.slice_index == r.slice_index && f.axis == r.axis)
                                .ok_or_else(|| {
                                    failed(
                                        &scoring.variants[0],
                                        format!(
                                            "{subject}: slice {} was not synthesized",
                                            r.slice_index
                                        ),
                                    )
                                })
                        })
                        .collect::<Result<_, _>>()?;
                    (fake.select(ndarray::Axis(0), &order), targets.clone(), "0")
                }
                Some(g) => {
                    let out = g
                        .generate(&data, &described, &vec![0; described.len()])
                        .map_err(|e| failed(&store.dir, format!("{subject}: {e}")))?;
                    let channels: Vec<(usize, usize)> = g
                        .targets()
                        .iter()
                        .enumerate()
                        .filter_map(|(t, m)| real_set.channel(m).map(|c| (c, t)))
                        .collect();
                    (out, channels, "")
                }
            };
            settings.push((
                method.clone(),
                variant,
                "synthesized",
                with(&channels, &synthetic),
            ));
        }
        let modality = model.target.0.join(",");
        for (method, variant, setting, input) in settings {
            let scores = subject_dice(&segmenter, &input, &described, reference.view())
                .map_err(|e| failed(label, format!("{subject}: {e}")))?;
            rows.extend(scores.into_iter().map(|(region, value)| MetricRow {
                method: method.clone(),
                subject: subject.clone(),
                modality: modality.clone(),
                metric: "dice".into(),
                region,
                protocol: "segmentation".into(),
                value,
                variant: variant.into(),
                setting: setting.into(),
            }));
        }
    }
    tracing::info!(rows = rows.len(), "downstream segmentation scored");
    Ok(rows)
}

/// Label-to-image: does adding the synthetic cases help a segmentation network? A second
/// network is trained on the real training slices plus every variant's synthetic slices of
/// training subjects (their synthesized modalities, the real ones where a modality is not
/// generated, and the label they were generated from); both are run on the evaluated
/// subjects' real images. Dice rows: method `real` (setting `real`) and the model's kind
/// (setting `real+synthetic`).
fn augmentation_dice(
    run: &Run,
    scoring: &Scoring,
    subjects: &Subjects,
    store: &Store,
    (real_only, train, val): (&Segmenter, &SliceSet, Option<&SliceSet>),
) -> Result<Vec<MetricRow>, RunError> {
    let (Some(config), Some(model)) = (&scoring.section.segmentation, &scoring.file.model) else {
        return Ok(Vec::new());
    };
    let file = &scoring.file;
    let train_section = file.train.clone().unwrap_or_default();
    let device = crate::pipeline::model::device(train_section.device)
        .map_err(|e| failed(&run.plan.source, e))?;
    let every: Vec<usize> = (0..train.len()).collect();
    let mut data = vec![train.gather(&every).map_err(|e| failed(&store.dir, e))?];
    let mut rows: Vec<ManifestRow> = train.rows.clone();
    let full = SliceSet::load(&store.dir, None).map_err(|e| failed(&store.dir, e))?;
    let training: std::collections::BTreeSet<&str> =
        train.rows.iter().map(|r| r.subject.as_str()).collect();
    for (set, path) in scoring.fake_sets.iter().zip(&scoring.variants) {
        for (i, row) in set.rows.iter().enumerate() {
            if !training.contains(row.subject.as_str()) {
                continue;
            }
            let Some(j) = full.rows.iter().position(|r| {
                r.subject == row.subject && r.axis == row.axis && r.slice_index == row.slice_index
            }) else {
                continue;
            };
            let mut slice = full.gather(&[j]).map_err(|e| failed(&store.dir, e))?;
            let fake = set.slice(i).map_err(|e| failed(path, e))?;
            for (t, target) in set.channels.iter().enumerate() {
                if let Some(c) = full.channel(target) {
                    slice
                        .slice_mut(ndarray::s![0, c, .., ..])
                        .assign(&fake.slice(ndarray::s![t, .., ..]));
                }
            }
            data.push(slice);
            rows.push(full.rows[j].clone());
        }
    }
    let added = rows.len() - train.len();
    let views: Vec<_> = data.iter().map(|d| d.view()).collect();
    let combined = SliceSet::from_memory(
        train.channels.clone(),
        ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| failed(&store.dir, e))?,
        rows,
    );
    tracing::info!(
        real = train.len(),
        synthetic = added,
        "training on real plus synthetic slices"
    );
    let dir = run.dir().join("segmentation-augmented");
    let augmented = Segmenter::fit(
        model,
        &train_section,
        config.epochs.unwrap_or(train_section.epochs),
        file.pipeline.seed,
        (&combined, val),
        &dir,
        &device,
    )
    .map_err(|e| failed(&dir, e))?;
    let mut out = Vec::new();
    for (subject, real_rows) in by_subject(&scoring.real_set) {
        let Some(label) = subjects
            .usable
            .iter()
            .find(|s| s.id == subject)
            .and_then(|s| s.label.as_ref())
        else {
            continue;
        };
        let (data, described) =
            pick(&scoring.real_set, &real_rows).map_err(|e| failed(&store.dir, e))?;
        if described.iter().any(|r| !r.channels_missing.is_empty()) {
            continue;
        }
        let reference = crate::volume::nifti::read(label)
            .map_err(|e| failed(label, e))?
            .frame(0)
            .to_owned()
            .into_dyn();
        for (method, setting, net) in [
            ("real".to_owned(), "real", real_only),
            (metric_method(model), "real+synthetic", &augmented),
        ] {
            let scores = subject_dice(net, &data, &described, reference.view())
                .map_err(|e| failed(label, format!("{subject}: {e}")))?;
            out.extend(scores.into_iter().map(|(region, value)| MetricRow {
                method: method.clone(),
                subject: subject.clone(),
                modality: model.target.0.join(","),
                metric: "dice".into(),
                region,
                protocol: "segmentation".into(),
                value,
                variant: String::new(),
                setting: setting.into(),
            }));
        }
    }
    Ok(out)
}

/// The subject's foreground on the target's original grid, as preprocessing finds it: the
/// union over the subject's modalities stored on that grid (the target's own otherwise).
fn subject_foreground(
    inputs: &crate::preprocess::SubjectInputs,
    target: &crate::volume::Volume,
) -> Result<ndarray::ArrayD<bool>, RunError> {
    let mut same = vec![target.clone()];
    for source in inputs.modalities.values() {
        let v = source.read().map_err(|e| failed(&source.path(), e))?;
        if v.source != target.source && crate::preprocess::same_grid(&v.geometry, &target.geometry)
        {
            same.push(v);
        }
    }
    let refs: Vec<&crate::volume::Volume> = same.iter().collect();
    crate::preprocess::foreground_mask(&refs)
        .ok_or_else(|| failed(&target.source.path, "no volume to take a foreground from"))
}

/// Scores one subject's images of one target against its real one.
struct Scorer<'a> {
    scoring: &'a Scoring,
    real: ndarray::ArrayD<f32>,
    label: Option<&'a ndarray::ArrayD<f32>>,
    foreground: &'a ndarray::ArrayD<bool>,
    path: PathBuf,
    subject: &'a str,
    target: &'a str,
}

impl Scorer<'_> {
    fn score(&self, fake: &ndarray::ArrayD<f32>) -> Result<Vec<Score>, RunError> {
        if fake.shape() != self.real.shape() {
            return Err(failed(
                &self.path,
                format!(
                    "{}: the synthetic {} is {:?}, the real one {:?}",
                    self.subject,
                    self.target,
                    fake.shape(),
                    self.real.shape()
                ),
            ));
        }
        let section = &self.scoring.section;
        score_regions(
            self.real.view(),
            fake.view(),
            self.label.map(|l| l.view()),
            Some(self.foreground.view()),
            &self.scoring.metrics,
            section.protocol,
            section.data_range,
        )
        .map_err(|e| failed(&self.path, format!("{}: {e}", self.subject)))
    }

    fn row(
        &self,
        method: &str,
        variant: &str,
        metric: String,
        region: &str,
        value: f64,
    ) -> MetricRow {
        MetricRow {
            method: method.to_owned(),
            subject: self.subject.to_owned(),
            modality: self.target.to_owned(),
            metric,
            region: region.to_owned(),
            protocol: self.scoring.protocol.clone(),
            value,
            variant: variant.to_owned(),
            setting: String::new(),
        }
    }

    fn rows(&self, method: &str, variant: &str, scores: &[Score]) -> Vec<MetricRow> {
        scores
            .iter()
            .map(|s| self.row(method, variant, metric_name(s.metric), s.region, s.value))
            .collect()
    }

    /// With two or more variants: the score of their voxel-wise mean (`posterior-mean`), the
    /// mean of their scores (`variant-mean`) and their `diversity`: the voxel standard
    /// deviation across variants (population, in the protocol's intensities: BraSyn-clipped
    /// for `brasyn`, as written otherwise), averaged over the foreground.
    fn across_variants(
        &self,
        method: &str,
        images: &[(ndarray::ArrayD<f32>, Vec<Score>)],
    ) -> Result<Vec<MetricRow>, RunError> {
        let n = images.len();
        if n < 2 {
            return Ok(Vec::new());
        }
        let mut mean = ndarray::ArrayD::<f32>::zeros(self.real.raw_dim());
        for (image, _) in images {
            mean += image;
        }
        mean /= n as f32;
        let mut out = self.rows(method, "posterior-mean", &self.score(&mean)?);
        for (i, s) in images[0].1.iter().enumerate() {
            let values: Vec<f64> = images
                .iter()
                .filter_map(|(_, v)| v.get(i))
                .map(|v| v.value)
                .collect();
            let value = values.iter().sum::<f64>() / values.len() as f64;
            out.push(self.row(
                method,
                "variant-mean",
                metric_name(s.metric),
                s.region,
                value,
            ));
        }
        let scaled: Vec<ndarray::ArrayD<f32>> = images
            .iter()
            .map(|(image, _)| match self.scoring.section.protocol {
                crate::spec::Protocol::Brasyn => brasyn_clip(image.view()),
                _ => image.clone(),
            })
            .collect();
        let mut sum = 0.0f64;
        let mut count = 0usize;
        for (idx, &inside) in self.foreground.indexed_iter() {
            if !inside {
                continue;
            }
            let v: Vec<f64> = scaled.iter().map(|a| f64::from(a[&idx])).collect();
            let m = v.iter().sum::<f64>() / n as f64;
            sum += (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            count += 1;
        }
        if count > 0 {
            out.push(self.row(
                method,
                "all",
                "diversity".into(),
                "foreground",
                sum / count as f64,
            ));
        }
        Ok(out)
    }
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
                    variant: if generator.is_none() { "0" } else { "" }.into(),
                    setting: String::new(),
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
