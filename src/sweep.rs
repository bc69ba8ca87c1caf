//! Sweeps: one pipeline file run under every combination of a few settings (an ablation), as
//! runs that share the slice store, and one comparison report over them.
//!
//! - Each combination is the file with its dotted keys set (`model.attention.kind = "none"`)
//!   and named `{name}--{slug}`, so it runs in its own folder; every run keeps its slice store
//!   in the same cache (`preprocess.cache`, `runs/{name}/slice-cache` unless the file names
//!   one), so preprocessing runs once.
//! - Combinations that differ only in settings applied after training (`synthesize.*`,
//!   `evaluate.*` except `evaluate.segmentation`, `output.*`) train once: the later ones start
//!   from copies of the first one's checkpoints, which the trainers resume only when the seed,
//!   the data and every training setting match (and otherwise train again, naming what
//!   differs).
//! - The comparison report (`runs/{name}/sweep/report.md` and `.html`) has every metric per
//!   setting, and each setting's scores paired by subject (Wilcoxon signed-rank) against the
//!   first setting's and against every setting differing from it in one key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::wilcoxon::wilcoxon;
use crate::pipeline::MetricRow;
use crate::pipeline::comparison::{higher_is_better, table};
use crate::report::{Block, Document, Section};
use crate::spec::SweepValue;

/// One combination: the settings, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub values: Vec<(String, SweepValue)>,
}

impl Setting {
    /// `attention.kind=none sag=0.3`: each key by its last two parts.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{}={}", short(k), text(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A folder-safe name: `kind-none_sag-0.3`.
    pub fn slug(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| {
                let key = k.rsplit('.').next().unwrap_or(k);
                format!("{key}-{}", text(v))
            })
            .collect::<Vec<_>>()
            .join("_")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// The values of the keys that change what training does (everything but settings
    /// applied after training).
    pub fn training_key(&self) -> String {
        self.values
            .iter()
            .filter(|(k, _)| trains(k))
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The values of the keys that change the segmentation network (data, training, the UNet
/// backbone and `evaluate.segmentation`; not attention, the generator or its sampling).
pub fn segmentation_key(setting: &Setting) -> String {
    setting
        .values
        .iter()
        .filter(|(k, _)| {
            [
                "input.",
                "preprocess.",
                "pipeline.",
                "train.",
                "model.unet.",
                "evaluate.segmentation",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether setting `key` changes what is trained.
fn trains(key: &str) -> bool {
    !(key.starts_with("synthesize.")
        || key.starts_with("output.")
        || (key.starts_with("evaluate.") && !key.starts_with("evaluate.segmentation")))
}

fn short(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    parts[parts.len().saturating_sub(2)..].join(".")
}

fn text(v: &SweepValue) -> String {
    match v {
        SweepValue::Bool(b) => b.to_string(),
        SweepValue::Integer(i) => i.to_string(),
        SweepValue::Float(f) => f.to_string(),
        SweepValue::Text(s) => s.clone(),
    }
}

fn toml_value(v: &SweepValue) -> toml::Value {
    match v {
        SweepValue::Bool(b) => toml::Value::Boolean(*b),
        SweepValue::Integer(i) => toml::Value::Integer(*i),
        SweepValue::Float(f) => toml::Value::Float(*f),
        SweepValue::Text(s) => toml::Value::String(s.clone()),
    }
}

/// Parses a command-line `--set KEY=V1,V2`: numbers and booleans as such, the rest as text.
pub fn parse_set(arg: &str) -> Result<(String, Vec<SweepValue>), String> {
    let (key, values) = arg
        .split_once('=')
        .ok_or_else(|| format!("--set {arg:?}: expected KEY=VALUE[,VALUE...]"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "--set {arg:?}: expected a dotted key such as model.attention.kind"
        ));
    }
    let values: Vec<SweepValue> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            if let Ok(b) = v.parse::<bool>() {
                SweepValue::Bool(b)
            } else if let Ok(i) = v.parse::<i64>() {
                SweepValue::Integer(i)
            } else if let Ok(f) = v.parse::<f64>() {
                SweepValue::Float(f)
            } else {
                SweepValue::Text(v.to_owned())
            }
        })
        .collect();
    if values.is_empty() {
        return Err(format!("--set {arg:?}: no value"));
    }
    Ok((key.to_owned(), values))
}

/// Every combination of `axes` (key -> values), the first key varying slowest.
pub fn combinations(axes: &BTreeMap<String, Vec<SweepValue>>) -> Vec<Setting> {
    let mut out = vec![Setting { values: Vec::new() }];
    for (key, values) in axes {
        out = out
            .into_iter()
            .flat_map(|s| {
                values.iter().map(move |v| {
                    let mut values = s.values.clone();
                    values.push((key.clone(), v.clone()));
                    Setting { values }
                })
            })
            .collect();
    }
    out
}

/// The pipeline text of `setting` applied to the file `base` (its TOML table): the keys set,
/// the sweep removed, the name suffixed and the slice store shared.
pub fn child(base: &toml::Table, name: &str, setting: &Setting) -> Result<String, String> {
    let mut table = base.clone();
    table.remove("sweep");
    for (key, value) in &setting.values {
        let parts: Vec<&str> = key.split('.').collect();
        let mut at = &mut table;
        for part in &parts[..parts.len() - 1] {
            let entry = at
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry
                .as_table_mut()
                .ok_or_else(|| format!("sweep key {key:?}: {part:?} is not a table"))?;
        }
        at.insert(parts[parts.len() - 1].to_owned(), toml_value(value));
    }
    let pipeline = table
        .entry("pipeline")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("[pipeline] is not a table")?;
    pipeline.insert(
        "name".into(),
        toml::Value::String(format!("{name}--{}", setting.slug())),
    );
    let preprocess = table
        .entry("preprocess")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("[preprocess] is not a table")?;
    preprocess
        .entry("cache")
        .or_insert_with(|| toml::Value::String(format!("runs/{name}/slice-cache")));
    toml::to_string(&table).map_err(|e| e.to_string())
}

/// Copies the training outputs (model checkpoints and log, baseline-unet's and the
/// segmentation network's) of the finished run `from` into the run folder `to`, so its
/// trainers resume at their last step; what `to` already has is kept.
pub fn reuse_training(from: &Path, to: &Path) -> std::io::Result<()> {
    reuse(
        from,
        to,
        &[
            "checkpoints",
            ".train.stamp.json",
            "train_log.parquet",
            "baselines",
            "segmentation",
        ],
    )
}

/// Copies the segmentation network's checkpoints of the run `from` into the run folder `to`.
pub fn reuse_segmentation(from: &Path, to: &Path) -> std::io::Result<()> {
    reuse(from, to, &["segmentation"])
}

fn reuse(from: &Path, to: &Path, parts: &[&str]) -> std::io::Result<()> {
    for part in parts {
        let (src, dst) = (from.join(part), to.join(part));
        if src.exists() && !dst.exists() {
            copy_tree(&src, &dst)?;
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    if src.is_file() {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = dst.with_extension("part");
        std::fs::copy(src, &tmp)?;
        return std::fs::rename(tmp, dst);
    }
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
    }
    Ok(())
}

/// A finished run of a sweep.
pub struct Finished {
    pub setting: Setting,
    pub run_dir: PathBuf,
    pub rows: Vec<MetricRow>,
}

/// The model's headline scores per setting: variant 0's SSIM, PSNR and MAE over the whole
/// volume and the foreground, its diversity, and the Dice of segmentation given its
/// synthesized target.
pub fn headline(runs: &[Finished]) -> (Vec<String>, Vec<Vec<String>>) {
    let columns: Vec<(&str, &str, &str)> = vec![
        ("ssim", "whole", ""),
        ("ssim", "foreground", ""),
        ("psnr", "foreground", ""),
        ("mae", "foreground", ""),
        ("diversity", "foreground", "all"),
        ("dice", "whole-tumour", "synthesized"),
        ("dice", "tumour-core", "synthesized"),
        ("dice", "enhancing", "synthesized"),
    ];
    let mut head = vec!["setting".to_owned()];
    head.extend(columns.iter().map(|(m, r, _)| format!("{m} {r}")));
    let lines = runs
        .iter()
        .map(|run| {
            let mut line = vec![run.setting.label()];
            for (metric, region, extra) in &columns {
                let values: Vec<f64> = run
                    .rows
                    .iter()
                    .filter(|r| model_row(r) || (*extra == "all" && r.variant == "all"))
                    .filter(|r| r.metric == *metric && r.region == *region)
                    .filter(|r| *metric != "dice" || r.setting == *extra)
                    .map(|r| r.value)
                    .collect();
                line.push(mean_sd(&values));
            }
            line
        })
        .collect();
    (head, lines)
}

/// A row of the model itself, variant 0 (not a baseline, not `real`/`missing`).
fn model_row(r: &MetricRow) -> bool {
    r.variant == "0" && !r.method.starts_with("baseline-")
}

fn mean_sd(values: &[f64]) -> String {
    let n = values.len();
    if n == 0 {
        return "–".into();
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return format!("{mean:.4}");
    }
    let sd = (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    format!("{mean:.4} ± {sd:.4}")
}

/// The pairs of settings compared: each setting against the first, and against every
/// earlier setting it differs from in exactly one key (so each factor is also tested with
/// the others held fixed).
fn pairs(runs: &[Finished]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for b in 1..runs.len() {
        for a in 0..b {
            let differing = runs[a]
                .setting
                .values
                .iter()
                .zip(&runs[b].setting.values)
                .filter(|(x, y)| x != y)
                .count();
            if a == 0 || differing == 1 {
                out.push((a, b));
            }
        }
    }
    out
}

/// The model's scores of pairs of settings, paired by subject: per metric and region, the
/// mean difference and the Wilcoxon p-value.
pub fn paired(runs: &[Finished]) -> (Vec<String>, Vec<Vec<String>>) {
    let head = [
        "setting",
        "vs",
        "metric",
        "region",
        "mean difference",
        "p (n)",
    ]
    .map(String::from)
    .to_vec();
    let by_key = |rows: &[MetricRow]| {
        let mut out: BTreeMap<(String, String, String), BTreeMap<String, f64>> = BTreeMap::new();
        for r in rows.iter().filter(|r| model_row(r)) {
            if higher_is_better(&r.metric).is_none() {
                continue;
            }
            out.entry((r.metric.clone(), r.region.clone(), r.setting.clone()))
                .or_default()
                .insert(r.subject.clone(), r.value);
        }
        out
    };
    let mut lines = Vec::new();
    for (a, b) in pairs(runs) {
        let (reference, run) = (&runs[a], &runs[b]);
        let base = by_key(&reference.rows);
        for (key, values) in by_key(&run.rows) {
            let Some(theirs) = base.get(&key) else {
                continue;
            };
            let (x, y): (Vec<f64>, Vec<f64>) = values
                .iter()
                .filter_map(|(s, v)| theirs.get(s).map(|w| (*v, *w)))
                .unzip();
            if x.is_empty() {
                continue;
            }
            let diff = x.iter().zip(&y).map(|(a, b)| a - b).sum::<f64>() / x.len() as f64;
            let w = wilcoxon(&x, &y);
            let region = if key.2.is_empty() {
                key.1.clone()
            } else {
                format!("{} [{}]", key.1, key.2)
            };
            lines.push(vec![
                run.setting.label(),
                reference.setting.label(),
                key.0.clone(),
                region,
                format!("{diff:+.4}"),
                if w.p.is_finite() {
                    format!("{:.3} ({})", w.p, w.n)
                } else {
                    format!("– ({})", w.n)
                },
            ]);
        }
    }
    (head, lines)
}

/// The comparison report of a finished sweep.
pub fn report(name: &str, runs: &[Finished], refused: &[(String, String)]) -> Document {
    let (head, lines) = headline(runs);
    let mut sections = vec![Section {
        title: "Settings".into(),
        blocks: vec![
            Block::Text(if refused.is_empty() {
                "Every combination of the settings ran.".into()
            } else {
                format!(
                    "Skipped, as the pipeline check refuses them: {}.",
                    refused
                        .iter()
                        .map(|(l, why)| format!("`{l}` ({why})"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }),
            Block::Text(format!(
                "{} runs of `{name}`, one per setting, on the same subjects, seed and slice \
                 store. The model's variant 0 (mean ± sd over subjects); `dice` is the \
                 segmentation network's given the synthesized target.",
                runs.len()
            )),
            Block::Table(head, lines),
        ],
    }];
    let (head, lines) = paired(runs);
    sections.push(Section {
        title: "Paired tests".into(),
        blocks: vec![
            Block::Text(
                "Each setting against the first, and against every other setting it differs \
                 from in one key, paired by subject: mean difference (this setting minus the \
                 other) and the two-sided Wilcoxon signed-rank p-value over the subjects both \
                 scored (with six subjects, 0.031 is the smallest p there is)."
                    .into(),
            ),
            Block::Table(head, lines),
        ],
    });
    for run in runs {
        let lines = table(&run.rows)
            .into_iter()
            .map(|l| {
                vec![
                    l.method,
                    l.modality,
                    l.metric,
                    l.region,
                    format!("{} (n={})", mean_sd_of(l.mean, l.sd, l.n), l.n),
                ]
            })
            .collect();
        let mut text = String::new();
        let _ = write!(text, "Run folder `{}`.", run.run_dir.display());
        sections.push(Section {
            title: format!("Every metric: {}", run.setting.label()),
            blocks: vec![
                Block::Text(text),
                Block::Table(
                    ["method", "modality", "metric", "region", "mean ± sd"]
                        .map(String::from)
                        .to_vec(),
                    lines,
                ),
            ],
        });
    }
    Document {
        title: format!("Sweep {name}"),
        sections,
    }
}

fn mean_sd_of(mean: f64, sd: f64, n: usize) -> String {
    if n > 1 {
        format!("{mean:.4} ± {sd:.4}")
    } else {
        format!("{mean:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_expand_to_their_product_first_key_slowest() {
        let mut axes = BTreeMap::new();
        axes.insert(
            "a.x".to_owned(),
            vec![SweepValue::Integer(1), SweepValue::Integer(2)],
        );
        axes.insert(
            "b.y".to_owned(),
            vec![
                SweepValue::Text("p".into()),
                SweepValue::Text("q".into()),
                SweepValue::Bool(true),
            ],
        );
        let all = combinations(&axes);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0].label(), "a.x=1 b.y=p");
        assert_eq!(all[5].label(), "a.x=2 b.y=true");
        assert_eq!(all[1].slug(), "x-1_y-q");
    }

    #[test]
    fn command_line_values_are_typed() {
        let (key, values) = parse_set("synthesize.guidance.sag=0,0.3,on").unwrap();
        assert_eq!(key, "synthesize.guidance.sag");
        assert_eq!(
            values,
            vec![
                SweepValue::Integer(0),
                SweepValue::Float(0.3),
                SweepValue::Text("on".into())
            ]
        );
        assert!(parse_set("model.attention.kind").is_err());
        assert!(parse_set("model..kind=a").is_err());
        assert!(parse_set("model.kind=").is_err());
    }

    #[test]
    fn a_child_sets_its_keys_names_itself_and_shares_the_store() {
        let base: toml::Table = "[pipeline]\nname = \"n\"\n[model]\nkind = \"diffusion\"\n[sweep]\n\"model.kind\" = [\"sagan\"]\n"
            .parse()
            .unwrap();
        let setting = Setting {
            values: vec![
                ("model.kind".into(), SweepValue::Text("sagan".into())),
                ("synthesize.guidance.sag".into(), SweepValue::Float(0.5)),
            ],
        };
        let child: toml::Table = child(&base, "n", &setting).unwrap().parse().unwrap();
        assert_eq!(child["model"]["kind"].as_str(), Some("sagan"));
        assert_eq!(child["synthesize"]["guidance"]["sag"].as_float(), Some(0.5));
        assert_eq!(
            child["pipeline"]["name"].as_str(),
            Some("n--kind-sagan_sag-0.5")
        );
        assert_eq!(
            child["preprocess"]["cache"].as_str(),
            Some("runs/n/slice-cache")
        );
        assert!(!child.contains_key("sweep"));
        // Sampling settings do not change what is trained; the model kind does.
        assert_eq!(setting.training_key(), "model.kind=sagan");
        assert_eq!(segmentation_key(&setting), "");
    }
}
