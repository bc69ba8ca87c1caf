//! The table a report and a sweep lead with: every scored method × modality × metric ×
//! region, mean ± sd over subjects, and a paired comparison against the best baseline of the
//! same modality, metric and region (Wilcoxon signed-rank over the subjects both scored).

use std::collections::BTreeMap;

use super::handoff::MetricRow;
use crate::metrics::wilcoxon::{Wilcoxon, wilcoxon};

/// Whether a higher value of `metric` is better; `None` for descriptive ones (`diversity`).
pub fn higher_is_better(metric: &str) -> Option<bool> {
    match metric {
        "ssim" | "ms-ssim" | "psnr" | "dice" => Some(true),
        "mae" | "mse" | "fid" | "kid" => Some(false),
        _ => None,
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// [`MetricRow::label`].
    pub method: String,
    pub modality: String,
    pub metric: String,
    pub region: String,
    pub mean: f64,
    /// Sample standard deviation (0 for one subject).
    pub sd: f64,
    pub n: usize,
    /// The best baseline's label and the paired test against it (absent for the baseline
    /// itself, for metrics without a direction, and where no baseline scored).
    pub versus: Option<(String, Wilcoxon)>,
}

type Key = (String, String, String);

/// The table of `rows` (set-level rows, scored over `all` subjects, have n = 1 and no test).
pub fn table(rows: &[MetricRow]) -> Vec<Line> {
    // (modality, metric, region) -> label -> subject -> value
    let mut groups: BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.modality.clone(), r.metric.clone(), r.region.clone()))
            .or_default()
            .entry(r.label())
            .or_default()
            .insert(r.subject.clone(), r.value);
    }
    let mut out = Vec::new();
    for ((modality, metric, region), methods) in groups {
        let stats = |values: &BTreeMap<String, f64>| {
            let v: Vec<f64> = values.values().copied().collect();
            let n = v.len();
            let mean = v.iter().sum::<f64>() / n.max(1) as f64;
            let sd = if n > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            (mean, sd, n)
        };
        let best = higher_is_better(&metric).and_then(|higher| {
            methods
                .iter()
                .filter(|(label, _)| label.starts_with("baseline-"))
                .map(|(label, values)| (label, stats(values).0))
                .filter(|(_, mean)| mean.is_finite())
                .max_by(|a, b| {
                    if higher {
                        a.1.total_cmp(&b.1)
                    } else {
                        b.1.total_cmp(&a.1)
                    }
                })
                .map(|(label, _)| label.clone())
        });
        for (label, values) in &methods {
            let (mean, sd, n) = stats(values);
            let versus = best.as_ref().filter(|b| *b != label && n > 1).map(|b| {
                let theirs = &methods[b];
                let (x, y): (Vec<f64>, Vec<f64>) = values
                    .iter()
                    .filter_map(|(s, v)| theirs.get(s).map(|w| (*v, *w)))
                    .unzip();
                (b.clone(), wilcoxon(&x, &y))
            });
            out.push(Line {
                method: label.clone(),
                modality: modality.clone(),
                metric: metric.clone(),
                region: region.clone(),
                mean,
                sd,
                n,
                versus,
            });
        }
    }
    out
}

/// The comparison cell of a line: `p = … (n = …) vs best-baseline`, or `best baseline`.
pub fn versus_cell(line: &Line, table: &[Line]) -> String {
    match &line.versus {
        Some((baseline, w)) if w.p.is_finite() => {
            format!("p = {:.3} (n = {}) vs {baseline}", w.p, w.n)
        }
        Some((baseline, w)) => format!("no difference (n = {}) vs {baseline}", w.n),
        None => {
            let is_best = table.iter().any(|l| {
                l.modality == line.modality
                    && l.metric == line.metric
                    && l.region == line.region
                    && l.versus.as_ref().is_some_and(|(b, _)| *b == line.method)
            });
            if is_best {
                "best baseline".into()
            } else {
                String::new()
            }
        }
    }
}
