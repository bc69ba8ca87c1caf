//! What the stages hand each other: the subjects found, the slice store, what synthesis,
//! evaluation and the nnU-Net export wrote. Stages import these, never each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::stage::Stage;
use crate::dataset::{ManifestRow, SliceSet, StoreError};
use crate::preprocess::SubjectInputs;
use crate::spec::Metric;

/// A subject left out of the run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub subject: String,
    pub stage: Stage,
    pub reason: String,
}

/// The subjects the input stage found.
#[derive(Debug, Default)]
pub struct Subjects {
    /// The usable subjects this process works on (a shard's, or all).
    pub usable: Vec<SubjectInputs>,
    /// Subjects left out, of those this process works on.
    pub skipped: Vec<Skip>,
    /// Every usable subject of the cohort, whichever shard it belongs to: the splits and the
    /// slice store's key are computed from these, the same in every shard.
    pub cohort: Vec<String>,
    /// Subjects are named by pseudonyms and their DICOM UIDs already replaced by keyed ones.
    pub pseudonymized: bool,
}

/// The slice store a run reads.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
    pub key: String,
    /// Channel names of every shard, in order.
    pub channels: Vec<String>,
    pub rows: Vec<ManifestRow>,
    /// Whether a complete store from an earlier run was used as it was.
    pub reused: bool,
    /// A shard's subjects: the stages of a shard see only these, though the store holds the
    /// whole cohort.
    pub only: Option<BTreeSet<String>>,
}

impl Store {
    /// The manifest's path.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.parquet")
    }

    /// The slices of `split` (all when `None`) of the subjects this process works on.
    pub fn load(&self, split: Option<&str>) -> Result<SliceSet, StoreError> {
        let what = match (split, &self.only) {
            (Some(s), Some(_)) => format!("split {s} of this shard's subjects"),
            (Some(s), None) => format!("split {s}"),
            (None, Some(_)) => "this shard's subjects".to_owned(),
            (None, None) => "split (any)".to_owned(),
        };
        SliceSet::load_where(&self.dir, &what, |r| {
            split.is_none_or(|s| r.split == s)
                && self.only.as_ref().is_none_or(|o| o.contains(&r.subject))
        })
    }
}

/// The subjects of manifest rows, sorted, each once.
pub fn subjects_of(rows: &[ManifestRow]) -> Vec<String> {
    let set: BTreeSet<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Slices per split, for the summary.
pub fn counts(rows: &[ManifestRow]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (std::collections::BTreeSet<&str>, usize)> = BTreeMap::new();
    for r in rows {
        let e = out.entry(r.split.clone()).or_default();
        e.0.insert(&r.subject);
        e.1 += 1;
    }
    out.into_iter()
        .map(|(k, (s, n))| (k, (s.len(), n)))
        .collect()
}

/// What the synthesis stage wrote.
#[derive(Debug, Clone)]
pub struct Synthesized {
    /// `synth/slices/variant-K/` per variant.
    pub variants: Vec<PathBuf>,
    pub slices: usize,
    /// Per variant, the digest of what made its subjects' slices (their fingerprints), so
    /// later stages know when synthesis changed; empty where unknown (a merged run).
    pub digests: Vec<String>,
}

/// What a stage did with one piece of its work, for the log and the run's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub stage: Stage,
    /// The piece: `slice store`, `model`, `variant-0`, `metrics`.
    pub what: String,
    pub action: Action,
}

/// Whether work was done or reused.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Made earlier from exactly the same settings and inputs, and kept.
    Reused,
    /// Done for the first time in this run folder.
    Ran,
    /// Done again, replacing what an earlier run made: what changed.
    RanAgain(String),
}

impl Action {
    /// `reused`, `ran` or `ran again`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Reused => "reused",
            Action::Ran => "ran",
            Action::RanAgain(_) => "ran again",
        }
    }
}

/// One score.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// What made the image scored: the model's kind, `baseline-histogram`,
    /// `baseline-regression` or `baseline-unet`; for `dice`, also `real` (the real target) or
    /// `missing` (the target zero-filled).
    pub method: String,
    pub subject: String,
    pub modality: String,
    pub metric: String,
    pub region: String,
    pub protocol: String,
    pub value: f64,
    /// The model's synthetic variant (`0`, `1`, ...), `posterior-mean` (the score of the
    /// variant-averaged image), `variant-mean` (the mean of the variants' scores) or `all`
    /// (`diversity`, a property of the variants together); empty for deterministic methods.
    pub variant: String,
    /// For `dice`: which target the segmentation model was given (`real`, `synthesized`,
    /// `missing`) or, for `label-to-image`, what it was trained on (`real`,
    /// `real+synthetic`). Empty for image metrics.
    pub setting: String,
}

impl MetricRow {
    /// The name the report and summary give the scored method: the method, with the variant
    /// when it is not the model's first (variant 0 is what the model's plain name has always
    /// meant) and the setting of a Dice score.
    pub fn label(&self) -> String {
        let mut out = self.method.clone();
        match self.variant.as_str() {
            "" | "0" => {}
            "posterior-mean" => out.push_str(" (posterior mean)"),
            "variant-mean" => out.push_str(" (mean over variants)"),
            "all" => out.push_str(" (variants)"),
            v => out.push_str(&format!(" (variant {v})")),
        }
        if !self.setting.is_empty() && self.setting != self.method {
            out.push_str(&format!(" [{}]", self.setting));
        }
        out
    }
}

/// (method, modality, metric, region).
pub type Group = (String, String, String, String);
/// (mean, sample standard deviation, count).
pub type Summary = (f64, f64, usize);

/// What the stage measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub rows: Vec<MetricRow>,
    pub path: PathBuf,
    /// Metrics asked for but not computed, with why.
    pub skipped: Vec<(String, String)>,
    /// Scores of other runs' models on the same subjects (`evaluate.compare`), for the report
    /// and the summary only.
    pub compared: Vec<MetricRow>,
}

impl Evaluation {
    /// Mean, sample standard deviation and count over subjects of each (method, modality,
    /// metric, region).
    pub fn aggregates(&self) -> BTreeMap<Group, Summary> {
        let mut groups: BTreeMap<Group, Vec<f64>> = BTreeMap::new();
        for r in self.rows.iter().chain(&self.compared) {
            groups
                .entry((
                    r.label(),
                    r.modality.clone(),
                    r.metric.clone(),
                    r.region.clone(),
                ))
                .or_default()
                .push(r.value);
        }
        groups
            .into_iter()
            .map(|(k, v)| {
                let n = v.len();
                let mean = v.iter().sum::<f64>() / n as f64;
                let var = if n > 1 {
                    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
                } else {
                    0.0
                };
                (k, (mean, var.sqrt(), n))
            })
            .collect()
    }
}

/// The name a metric has in pipeline files.
pub fn metric_name(m: Metric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What the export wrote.
#[derive(Debug, Clone)]
pub struct NnunetExport {
    pub dir: PathBuf,
    pub training: usize,
    pub test: usize,
    /// (case, channel) pairs filled with synthesized volumes.
    pub synthetic: Vec<(String, String)>,
    pub skipped: Vec<Skip>,
}

/// Slices per subject the report shows: at a quarter, half and three quarters of its kept
/// slices.
pub const REPORT_SLICES: usize = 3;

/// Which of a subject's `len` slices (positions in its rows) the report shows; synthesis
/// writes the attention maps of the same slices.
pub fn report_positions(len: usize) -> Vec<usize> {
    (1..=REPORT_SLICES)
        .map(|k| (len * k / (REPORT_SLICES + 1)).min(len.saturating_sub(1)))
        .collect()
}

/// Where synthesis writes a subject's attention maps (of the slices at
/// [`report_positions`], `[n, 1, H, W]`), under the folder a process writes.
pub fn attention_maps(dir: &std::path::Path, subject: &str) -> PathBuf {
    dir.join("synth")
        .join("attention")
        .join(format!("{subject}.safetensors"))
}
