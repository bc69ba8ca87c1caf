//! The report (`output.report`): `report.md` and a self-contained `report.html` with the
//! pipeline file, the data, the training curves, the metrics of the model and the baselines
//! (per subject and mean ± sd), sample grids (inputs | real target | synthetic | absolute
//! error) and, with `output.attention_maps`, the model's attention over its own output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::s;

use crate::dataset::{ManifestRow, SliceSet, read_shard};
use crate::pipeline::comparison;
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Store;
use crate::pipeline::handoff::{
    Evaluation, NnunetExport, Skip, Synthesized, attention_maps, counts, report_positions,
};
use crate::pipeline::model::clip_range;
use crate::pipeline::stage::Stage;
use crate::provenance::now_rfc3339;
use crate::report::{Block, Document, Picture, Section, grey, grid, heat, overlay};
use crate::spec::SplitName;

/// How many subjects the pictures show (and [`report_positions`] which of their slices).
const SUBJECTS: usize = 3;
/// Pictures are enlarged so 64-pixel slices stay legible.
const ENLARGE: usize = 2;

/// What the run produced, as the report needs it.
pub struct Inputs<'a> {
    pub store: &'a Store,
    pub skipped: &'a [Skip],
    pub synthesized: Option<&'a Synthesized>,
    pub evaluation: Option<&'a Evaluation>,
    pub nnunet: Option<&'a NnunetExport>,
}

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Output, path, e.to_string())
}

fn fmt_mean(mean: f64, sd: f64, n: usize) -> String {
    if n > 1 {
        format!("{mean:.4} ± {sd:.4}")
    } else {
        format!("{mean:.4}")
    }
}

/// Writes the report; returns the path of `report.html`.
pub fn run(run: &mut Run, inputs: Inputs) -> Result<PathBuf, RunError> {
    let started = now_rfc3339();
    let file = run.plan.file.clone();
    let mut sections = vec![overview(run, &inputs)];
    sections.push(Section {
        title: "Pipeline file".into(),
        blocks: vec![Block::Code(
            "toml".into(),
            toml::to_string(&file).unwrap_or_default(),
        )],
    });
    sections.push(data(&inputs));
    if let Some(s) = training(run)? {
        sections.push(s);
    }
    if let Some(e) = inputs.evaluation {
        sections.push(metrics(e));
    }
    if let Some(synth) = inputs.synthesized {
        sections.extend(samples(run, inputs.store, synth)?);
    }
    sections.push(outputs(run, &inputs));
    let doc = Document {
        title: format!("medsynth report: {}", file.pipeline.name),
        sections,
    };
    let written = doc.write(run.dir()).map_err(|e| failed(run.dir(), e))?;
    let prefix = run.artifact_name(&run.dir().join("report"));
    run.forget(|a| a.starts_with(&format!("{prefix}/")));
    let mut html = run.dir().join("report.html");
    for path in written {
        let kind = if path.extension().is_some_and(|e| e == "png") {
            "report-picture"
        } else {
            "report"
        };
        if path.file_name().is_some_and(|n| n == "report.html") {
            html = path.clone();
        }
        let row = run.row(Stage::Output, kind, &path, "", &started)?;
        run.record(row);
    }
    run.save_provenance()?;
    Ok(html)
}

fn overview(run: &Run, inputs: &Inputs) -> Section {
    let file = &run.plan.file;
    let mut blocks = vec![Block::Text(format!(
        "Written by medsynth {} on {}. Seed {}; configuration hash `{}`. Every file listed \
         below, with its SHA-256 and what it came from, is in `provenance.parquet`.",
        crate::VERSION,
        now_rfc3339(),
        file.pipeline.seed,
        &run.config_hash[..16.min(run.config_hash.len())]
    ))];
    if let Some(m) = &file.model {
        blocks.push(Block::Text(format!(
            "Model: {:?} for {:?}: inputs [{}] → target [{}].",
            m.kind,
            m.task,
            m.inputs.join(", "),
            m.target.iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(e) = inputs.evaluation {
        blocks.push(Block::Text(
            "Every method, metric and region, mean ± sd over the evaluated subjects, and each \
             method against the best baseline of the same metric and region (two-sided \
             Wilcoxon signed-rank test over the subjects both scored; with under six \
             subjects no p-value can fall below 0.05). `(posterior mean)` scores the \
             variant-averaged image, `(mean over variants)` averages the variants' scores; \
             `dice` rows are the segmentation network's, given the real target, a \
             synthesized one, or none (`missing`)."
                .into(),
        ));
        blocks.push(lead_table(e));
        let agg = e.aggregates();
        let mut lines = Vec::new();
        for ((method, modality, metric, region), (mean, sd, n)) in &agg {
            if region == "whole" && (metric == "ssim" || metric == "psnr") {
                lines.push(format!(
                    "{method} {modality} {metric} {}",
                    fmt_mean(*mean, *sd, *n)
                ));
            }
        }
        if !lines.is_empty() {
            blocks.push(Block::Text(format!(
                "Whole-volume scores on the evaluated subjects: {}.",
                lines.join("; ")
            )));
        }
    }
    Section {
        title: "Summary".into(),
        blocks,
    }
}

/// Method × metric × region with the paired test against the best baseline.
fn lead_table(e: &Evaluation) -> Block {
    let rows: Vec<_> = e.rows.iter().chain(&e.compared).cloned().collect();
    let table = comparison::table(&rows);
    let lines = table
        .iter()
        .map(|l| {
            vec![
                l.method.clone(),
                l.modality.clone(),
                l.metric.clone(),
                l.region.clone(),
                format!("{} (n={})", fmt_mean(l.mean, l.sd, l.n), l.n),
                comparison::versus_cell(l, &table),
            ]
        })
        .collect();
    Block::Table(
        [
            "method",
            "modality",
            "metric",
            "region",
            "mean ± sd",
            "paired test",
        ]
        .map(String::from)
        .to_vec(),
        lines,
    )
}

fn data(inputs: &Inputs) -> Section {
    let rows = counts(&inputs.store.rows)
        .into_iter()
        .map(|(split, (subjects, slices))| vec![split, subjects.to_string(), slices.to_string()])
        .collect();
    let mut blocks = vec![
        Block::Text(format!(
            "Slice store `{}` with channels {}.",
            inputs.store.key,
            inputs.store.channels.join(", ")
        )),
        Block::Table(
            vec!["split".into(), "subjects".into(), "slices".into()],
            rows,
        ),
    ];
    if inputs.skipped.is_empty() {
        blocks.push(Block::Text("No subject was skipped.".into()));
    } else {
        blocks.push(Block::Table(
            vec!["skipped subject".into(), "stage".into(), "reason".into()],
            inputs
                .skipped
                .iter()
                .map(|s| vec![s.subject.clone(), s.stage.to_string(), s.reason.clone()])
                .collect(),
        ));
    }
    Section {
        title: "Data".into(),
        blocks,
    }
}

fn training(run: &Run) -> Result<Option<Section>, RunError> {
    let path = run.dir().join("train_log.parquet");
    if !path.is_file() {
        return Ok(None);
    }
    let log = crate::train::read_log(&path).map_err(|e| failed(&path, e))?;
    if log.is_empty() {
        return Ok(None);
    }
    let gan = log.iter().any(|r| r.d_loss.is_some());
    let picture = if gan {
        crate::report::plot::gan_curves(&log, 720, 560)
    } else {
        crate::report::plot::training_curves(&log, 720, 360)
    }
    .map_err(|e| failed(&path, e))?;
    let tail = &log[log.len().saturating_sub(20)..];
    let final_loss = tail.iter().map(|r| r.loss).sum::<f64>() / tail.len() as f64;
    let rate = log.iter().map(|r| r.steps_per_s).sum::<f64>() / log.len() as f64;
    let val = log.iter().rev().find_map(|r| r.val_loss);
    let mut text = format!(
        "{} steps over {} epoch(s); loss {:.4} at the start, {:.4} over the last {} steps; {:.2} steps/s.",
        log.len(),
        log.last().map_or(0, |r| r.epoch + 1),
        log[0].loss,
        final_loss,
        tail.len(),
        rate
    );
    if let Some(v) = val {
        let what = if gan {
            "validation L1 (EMA generator)"
        } else {
            "validation loss"
        };
        text.push_str(&format!(" Last {what} {v:.4}."));
    }
    if let (true, Some(last)) = (gan, log.last()) {
        text.push_str(&format!(
            " Discriminator hinge loss {:.4} at the end; attention gate γ {:.4} in the generator and {:.4} in the discriminator (both start at 0: how far they moved is how much non-local evidence the networks use).",
            last.d_loss.unwrap_or(f64::NAN),
            last.gamma_g.unwrap_or(f64::NAN),
            last.gamma_d.unwrap_or(f64::NAN),
        ));
    }
    Ok(Some(Section {
        title: "Training".into(),
        blocks: vec![
            Block::Text(text),
            Block::Image {
                file: "training_curves.png".into(),
                caption: if gan {
                    "Generator and discriminator losses (running means) and the γ of both SAGAN attention blocks per generator step".into()
                } else {
                    "Training loss per step, its running mean, and the validation loss at each epoch's end".into()
                },
                png: picture.png().map_err(|e| failed(&path, e))?,
            },
        ],
    }))
}

fn metrics(e: &Evaluation) -> Section {
    let protocol = e
        .rows
        .first()
        .map(|r| r.protocol.clone())
        .unwrap_or_default();
    let head = |first: &str| {
        vec![
            first.to_owned(),
            "modality".into(),
            "metric".into(),
            "region".into(),
            "value".into(),
        ]
    };
    let agg: Vec<Vec<String>> = e
        .aggregates()
        .into_iter()
        .map(|((method, modality, metric, region), (mean, sd, n))| {
            vec![
                method,
                modality,
                metric,
                region,
                format!("{} (n={n})", fmt_mean(mean, sd, n)),
            ]
        })
        .collect();
    let mut per_subject: Vec<Vec<String>> = e
        .rows
        .iter()
        .chain(&e.compared)
        .map(|r| {
            vec![
                format!("{} / {}", r.subject, r.method),
                r.modality.clone(),
                r.metric.clone(),
                r.region.clone(),
                format!("{:.4}", r.value),
            ]
        })
        .collect();
    per_subject.sort();
    let mut blocks = vec![
        Block::Text(format!(
            "Protocol `{protocol}`. The model is compared on the same subjects with the \
             baselines `evaluate.baselines` names: `baseline-histogram` (the first available \
             input, histogram-matched to the target's training histogram), \
             `baseline-regression` (a per-voxel linear regression from the inputs to the \
             target, fitted on the training split) and `baseline-unet` (the model's UNet \
             trained as a deterministic L1 regressor on the same slices and epochs). Regions: \
             `whole` volume, `tumour` (label > 0), `healthy` (the rest) and `foreground` (the \
             head as preprocessing finds it, on the original grid). All values are in \
             `metrics.parquet`."
        )),
        Block::Table(head("method"), agg),
        Block::Table(head("subject / method"), per_subject),
    ];
    let others: std::collections::BTreeSet<&str> =
        e.compared.iter().map(|r| r.method.as_str()).collect();
    if !others.is_empty() {
        blocks.insert(
            1,
            Block::Text(format!(
                "Shown beside it, from earlier runs on the same subjects (`evaluate.compare`): {}.",
                others
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    for (metric, why) in &e.skipped {
        blocks.push(Block::Text(format!("{metric}: not computed: {why}")));
    }
    Section {
        title: "Metrics (mean ± sd over subjects)".into(),
        blocks,
    }
}

/// Rows of `set` grouped by subject, in store order.
fn by_subject(set: &SliceSet) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in set.rows.iter().enumerate() {
        out.entry(r.subject.clone()).or_default().push(i);
    }
    out
}

/// The display window of a channel: the normalization range when it bounds the data, else
/// the 1st to 99th percentile of the values shown.
fn window(values: impl Iterator<Item = f32>, clip: Option<[f32; 2]>) -> (f32, f32) {
    if let Some([lo, hi]) = clip {
        return (lo, hi);
    }
    let mut v: Vec<f32> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.01), at(0.99))
}

/// What the sample and attention pictures are drawn from.
struct Gallery<'a> {
    real: SliceSet,
    fake: SliceSet,
    /// The input channels shown (name, channel of `real`).
    inputs: Vec<(String, usize)>,
    clip: Option<[f32; 2]>,
    store: &'a Path,
    variant: &'a Path,
}

impl Gallery<'_> {
    /// One row of a sample grid: the inputs, the real target (when there is one), the
    /// synthetic target and the error, for fake slice `i` (real slice `j`) and target `t`.
    fn row(
        &self,
        i: usize,
        j: usize,
        t: usize,
        real_target: Option<usize>,
    ) -> Result<Vec<Picture>, RunError> {
        let fake_slice = self.fake.slice(i).map_err(|e| failed(self.variant, e))?;
        let real_slice = self.real.slice(j).map_err(|e| failed(self.store, e))?;
        let f = fake_slice.slice(s![t, .., ..]);
        let (lo, hi) = window(f.iter().copied(), self.clip);
        let mut row: Vec<Picture> = self
            .inputs
            .iter()
            .map(|(name, c)| {
                let x = real_slice.slice(s![*c, .., ..]);
                if name == crate::preprocess::LABEL {
                    heat(x, 0.0, 3.0)
                } else {
                    grey(x, lo, hi)
                }
            })
            .collect();
        if let Some(c) = real_target {
            row.push(grey(real_slice.slice(s![c, .., ..]), lo, hi));
        }
        row.push(grey(f, lo, hi));
        if let Some(c) = real_target {
            let err = (&real_slice.slice(s![c, .., ..]) - &f).mapv(f32::abs);
            row.push(heat(err.view(), 0.0, (hi - lo) * 0.5));
        }
        Ok(row.into_iter().map(|p| p.enlarged(ENLARGE)).collect())
    }

    /// The attention picture of `subject`'s target `t`: each shown fake slice `i` beside the
    /// map synthesis wrote for its position `k` in `maps` (`[n, 1, H, W]`).
    fn attention(
        &self,
        subject: &str,
        (t, target): (usize, &str),
        maps: &ndarray::Array4<f32>,
        shown: &[(usize, usize)],
        path: &Path,
    ) -> Result<Option<Block>, RunError> {
        let mut tiles = Vec::new();
        for &(i, k) in shown {
            if k >= maps.dim().0 {
                continue;
            }
            let f = self.fake.plane(i, t).map_err(|e| failed(self.variant, e))?;
            let (lo, hi) = window(f.iter().copied(), self.clip);
            let base = grey(f.view(), lo, hi);
            let m = maps.slice(s![k, 0, .., ..]);
            let top = m.iter().copied().fold(1.0f32, f32::max);
            tiles.push(vec![
                base.enlarged(ENLARGE),
                overlay(&base, m, 0.0, top).enlarged(ENLARGE),
            ]);
        }
        if tiles.is_empty() {
            return Ok(None);
        }
        Ok(Some(Block::Image {
            file: format!("attention_{subject}_{target}.png"),
            caption: format!(
                "{subject}, {target}: synthetic slice | attention of the middle block \
                 received per position (mean over heads and queries, t = T/2; \
                 dark = below uniform, bright = most attended)"
            ),
            png: grid(&tiles, 4).png().map_err(|e| failed(path, e))?,
        }))
    }
}

fn samples(run: &Run, store: &Store, synth: &Synthesized) -> Result<Vec<Section>, RunError> {
    let file = run.plan.file.clone();
    let Some(model) = &file.model else {
        return Ok(Vec::new());
    };
    let Some(variant) = synth.variants.first() else {
        return Ok(Vec::new());
    };
    let section = file.synthesize.clone().unwrap_or_default();
    let split = match section.split {
        SplitName::All => None,
        s => Some(s.as_str()),
    };
    let real = SliceSet::load(&store.dir, split).map_err(|e| failed(&store.dir, e))?;
    let fake = SliceSet::load(variant, None).map_err(|e| failed(variant, e))?;
    let inputs: Vec<(String, usize)> = if model.task.uses_inputs() {
        model
            .inputs
            .iter()
            .filter_map(|m| Some((m.clone(), real.channel(m)?)))
            .collect()
    } else {
        real.channel(crate::preprocess::LABEL)
            .map(|c| vec![(crate::preprocess::LABEL.to_owned(), c)])
            .unwrap_or_default()
    };
    let gallery = Gallery {
        real,
        fake,
        inputs,
        clip: clip_range(&file),
        store: &store.dir,
        variant,
    };
    let (real, fake) = (&gallery.real, &gallery.fake);
    let real_rows = by_subject(real);
    let mut grids = Vec::new();
    let mut maps = Vec::new();
    for (subject, rows) in by_subject(fake).into_iter().take(SUBJECTS) {
        let Some(real_of) = real_rows.get(&subject) else {
            continue;
        };
        // The slices synthesis drew attention maps of, at the same positions.
        let picks: Vec<usize> = report_positions(rows.len())
            .into_iter()
            .map(|p| rows[p])
            .collect();
        let maps_path = attention_maps(run.dir(), &subject);
        let attention = if file.output.attention_maps && maps_path.is_file() {
            Some(read_shard(&maps_path).map_err(|e| failed(&maps_path, e))?.0)
        } else {
            None
        };
        let find_real = |r: &ManifestRow| {
            real_of
                .iter()
                .copied()
                .find(|&i| real.rows[i].slice_index == r.slice_index)
        };
        for (t, target) in fake.channels.iter().enumerate() {
            let real_target = real.channel(target);
            let mut tiles = Vec::new();
            let mut described = Vec::new();
            // (fake slice, position among the picks) of each row shown.
            let mut shown = Vec::new();
            for (k, &i) in picks.iter().enumerate() {
                let Some(j) = find_real(&fake.rows[i]) else {
                    continue;
                };
                tiles.push(gallery.row(i, j, t, real_target)?);
                described.push(j);
                shown.push((i, k));
            }
            if tiles.is_empty() {
                continue;
            }
            let mut columns: Vec<String> = gallery.inputs.iter().map(|(n, _)| n.clone()).collect();
            if real_target.is_some() {
                columns.push(format!("real {target}"));
            }
            columns.push(format!("synthetic {target}"));
            if real_target.is_some() {
                columns.push("|error| (0 to half the range)".into());
            }
            grids.push(Block::Image {
                file: format!("samples_{subject}_{target}.png"),
                caption: format!(
                    "{subject}, {target}: slices {} ; columns: {}",
                    described
                        .iter()
                        .map(|&j| real.rows[j].slice_index.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    columns.join(" | ")
                ),
                png: grid(&tiles, 4).png().map_err(|e| failed(variant, e))?,
            });
            if let Some(a) = &attention
                && let Some(block) =
                    gallery.attention(&subject, (t, target), a, &shown, &maps_path)?
            {
                maps.push(block);
            }
        }
    }
    let mut out = Vec::new();
    if !grids.is_empty() {
        let mut blocks = vec![Block::Text(
            "Inputs and target in the model's normalized intensities, one shared window per \
             row; slices shown with anterior up."
                .into(),
        )];
        blocks.extend(grids);
        out.push(Section {
            title: "Samples".into(),
            blocks,
        });
    }
    if !maps.is_empty() {
        out.push(Section {
            title: "Attention".into(),
            blocks: maps,
        });
    }
    if let Some(s) = spread(&gallery, synth)? {
        out.push(s);
    }
    Ok(out)
}

/// The voxel standard deviation across the synthetic variants of the shown slices, which
/// users read as the model's uncertainty: per slice the posterior mean and the sd map.
fn spread(gallery: &Gallery, synth: &Synthesized) -> Result<Option<Section>, RunError> {
    if synth.variants.len() < 2 {
        return Ok(None);
    }
    let sets = synth
        .variants
        .iter()
        .map(|v| SliceSet::load(v, None).map_err(|e| failed(v, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut blocks = vec![Block::Text(format!(
        "Per pixel, the mean of the {} variants and their standard deviation (0 to a tenth \
         of the window), in the model's normalized intensities: where the model is unsure.",
        sets.len()
    ))];
    let fake = &gallery.fake;
    for (subject, rows) in by_subject(fake).into_iter().take(SUBJECTS) {
        let picks: Vec<usize> = report_positions(rows.len())
            .into_iter()
            .map(|p| rows[p])
            .collect();
        for (t, target) in fake.channels.iter().enumerate() {
            let mut tiles = Vec::new();
            for &i in &picks {
                let row = &fake.rows[i];
                let mut planes = Vec::new();
                for (set, path) in sets.iter().zip(&synth.variants) {
                    let Some(j) = set.rows.iter().position(|r| {
                        r.subject == row.subject
                            && r.axis == row.axis
                            && r.slice_index == row.slice_index
                    }) else {
                        continue;
                    };
                    planes.push(set.plane(j, t).map_err(|e| failed(path, e))?);
                }
                if planes.len() < 2 {
                    continue;
                }
                let n = planes.len() as f32;
                let mean = planes.iter().fold(
                    ndarray::Array2::<f32>::zeros(planes[0].raw_dim()),
                    |a, p| a + p,
                ) / n;
                let sd = planes
                    .iter()
                    .fold(ndarray::Array2::<f32>::zeros(mean.raw_dim()), |a, p| {
                        a + (p - &mean).mapv(|d| d * d)
                    })
                    .mapv(|v| (v / n).sqrt());
                let (lo, hi) = window(mean.iter().copied(), gallery.clip);
                tiles.push(vec![
                    grey(mean.view(), lo, hi).enlarged(ENLARGE),
                    heat(sd.view(), 0.0, (hi - lo) * 0.1).enlarged(ENLARGE),
                ]);
            }
            if tiles.is_empty() {
                continue;
            }
            blocks.push(Block::Image {
                file: format!("variants_{subject}_{target}.png"),
                caption: format!("{subject}, {target}: posterior mean | sd across variants"),
                png: grid(&tiles, 4)
                    .png()
                    .map_err(|e| failed(&synth.variants[0], e))?,
            });
        }
    }
    Ok(Some(Section {
        title: "Variation across variants".into(),
        blocks,
    }))
}

fn outputs(run: &Run, inputs: &Inputs) -> Section {
    let mut rows = Vec::new();
    if let Some(s) = inputs.synthesized {
        for v in &s.variants {
            rows.push(vec!["synthetic slices".into(), run.artifact_name(v)]);
        }
        rows.push(vec![
            "synthetic volumes (original grid)".into(),
            "synth/variant-K/<subject>/".into(),
        ]);
    }
    if let Some(e) = inputs.evaluation {
        rows.push(vec!["metrics".into(), run.artifact_name(&e.path)]);
    }
    if let Some(n) = inputs.nnunet {
        rows.push(vec![
            format!(
                "nnU-Net v2 dataset ({} training, {} test cases, {} synthesized channels)",
                n.training,
                n.test,
                n.synthetic.len()
            ),
            run.artifact_name(&n.dir),
        ]);
    }
    rows.push(vec!["provenance".into(), "provenance.parquet".into()]);
    Section {
        title: "Outputs".into(),
        blocks: vec![Block::Table(vec!["what".into(), "where".into()], rows)],
    }
}
