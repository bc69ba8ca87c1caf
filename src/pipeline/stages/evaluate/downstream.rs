//! Downstream segmentation (`evaluate.segmentation`): Dice of a segmentation network given
//! the real, synthesized or missing target, or trained with and without synthetic cases.

use super::{Scoring, by_subject, failed, metric_method, pick};
use crate::dataset::{ManifestRow, SliceSet};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Store;
use crate::pipeline::handoff::{MetricRow, Subjects};
use crate::pipeline::stage::Stage;
use crate::segmentation::{Segmenter, subject_dice};

/// Downstream segmentation (`evaluate.segmentation`): a segmentation network trained on the
/// real training split, run on each subject of the split with its real target, with every
/// method's synthesized target and with the target missing (filled with the normalized value
/// of intensity 0); Dice per label region on the original grid.
pub(super) fn dice_rows(
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
    let device = run.device(Stage::Evaluate)?;
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
        let setup = Setup {
            model,
            train_section: &train_section,
            epochs: config.epochs.unwrap_or(train_section.epochs),
            device: &device,
        };
        return augmentation_dice(
            run,
            scoring,
            subjects,
            store,
            &setup,
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
        let Some(label) = label_of(subjects, &subject) else {
            continue;
        };
        let Some(fake_rows) = fakes.get(&subject) else {
            continue;
        };
        let (data, described) = pick(real_set, &real_rows).map_err(|e| failed(&store.dir, e))?;
        if described.iter().any(|r| !r.channels_missing.is_empty()) {
            continue; // a modality is missing: no real setting to compare with
        }
        let reference = read_label(label)?;
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
    setup: &Setup,
    (real_only, train, val): (&Segmenter, &SliceSet, Option<&SliceSet>),
) -> Result<Vec<MetricRow>, RunError> {
    let model = setup.model;
    let every: Vec<usize> = (0..train.len()).collect();
    let mut data = vec![train.gather(&every).map_err(|e| failed(&store.dir, e))?];
    let mut rows: Vec<ManifestRow> = train.rows.clone();
    let full = SliceSet::load(&store.dir, None).map_err(|e| failed(&store.dir, e))?;
    let training: std::collections::BTreeSet<&str> =
        train.rows.iter().map(|r| r.subject.as_str()).collect();
    let stored: std::collections::HashMap<(&str, &str, u32), usize> = full
        .rows
        .iter()
        .enumerate()
        .map(|(j, r)| ((r.subject.as_str(), r.axis.as_str(), r.slice_index), j))
        .collect();
    for (set, path) in scoring.fake_sets.iter().zip(&scoring.variants) {
        for (i, row) in set.rows.iter().enumerate() {
            if !training.contains(row.subject.as_str()) {
                continue;
            }
            let Some(&j) = stored.get(&(row.subject.as_str(), row.axis.as_str(), row.slice_index))
            else {
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
        setup.train_section,
        setup.epochs,
        scoring.file.pipeline.seed,
        (&combined, val),
        &dir,
        setup.device,
    )
    .map_err(|e| failed(&dir, e))?;
    let mut out = Vec::new();
    for (subject, real_rows) in by_subject(&scoring.real_set) {
        let Some(label) = label_of(subjects, &subject) else {
            continue;
        };
        let (data, described) =
            pick(&scoring.real_set, &real_rows).map_err(|e| failed(&store.dir, e))?;
        if described.iter().any(|r| !r.channels_missing.is_empty()) {
            continue;
        }
        let reference = read_label(label)?;
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

/// What both segmentation networks are trained with, resolved once.
struct Setup<'a> {
    model: &'a crate::spec::ModelSection,
    train_section: &'a crate::spec::TrainSection,
    epochs: u32,
    device: &'a burn::tensor::Device,
}

/// The label file of a usable subject, when it has one.
fn label_of<'a>(subjects: &'a Subjects, subject: &str) -> Option<&'a std::path::PathBuf> {
    subjects
        .usable
        .iter()
        .find(|s| s.id == subject)
        .and_then(|s| s.label.as_ref())
}

/// A subject's label volume (frame 0) on its original grid.
fn read_label(path: &std::path::Path) -> Result<ndarray::ArrayD<f32>, RunError> {
    Ok(crate::volume::nifti::read(path)
        .map_err(|e| failed(path, e))?
        .frame(0)
        .to_owned()
        .into_dyn())
}
