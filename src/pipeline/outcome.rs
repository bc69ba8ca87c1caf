//! What a run did: the summary it prints and writes as JSON.

use std::fmt;
use std::path::{Path, PathBuf};

use super::handoff::{Action, Evaluation, NnunetExport, Skip, Store, Synthesized, Work, counts};

/// What a run did, for the summary it prints.
#[derive(Debug)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub store: Store,
    pub skipped: Vec<Skip>,
    /// The checkpoint trained (or given) when the file has `[train]`.
    pub checkpoint: Option<PathBuf>,
    pub synthesized: Option<Synthesized>,
    pub evaluation: Option<Evaluation>,
    pub nnunet: Option<NnunetExport>,
    /// The BIDS derivatives folder, when `output.formats` has `bids`.
    pub bids: Option<PathBuf>,
    /// The DICOMweb server the synthesized series were stored on, and what was sent.
    pub stored: Option<(String, crate::dicomweb::Stored)>,
    /// `report.html`, when `output.report` is on.
    pub report: Option<PathBuf>,
    pub provenance: PathBuf,
    /// What to run next, for the parts of a sharded run.
    pub next: Option<String>,
    /// What each stage did or reused, and why it ran again.
    pub work: Vec<Work>,
}

impl Outcome {
    /// The summary as JSON (`medsynth run --summary-json`): the same content as the printed
    /// table, with every metric region.
    pub fn summary_json(&self) -> serde_json::Value {
        use serde_json::json;
        let path = |p: &Path| p.display().to_string();
        let splits: serde_json::Map<String, serde_json::Value> = counts(&self.store.rows)
            .into_iter()
            .map(|(split, (subjects, slices))| {
                (split, json!({"subjects": subjects, "slices": slices}))
            })
            .collect();
        let skipped = |s: &[Skip]| -> Vec<serde_json::Value> {
            s.iter()
                .map(|s| json!({"subject": s.subject, "stage": s.stage.to_string(), "reason": s.reason}))
                .collect()
        };
        let evaluation = self.evaluation.as_ref().map(|e| {
            let metrics: Vec<serde_json::Value> = e
                .aggregates()
                .into_iter()
                .map(|((method, modality, metric, region), (mean, sd, n))| {
                    json!({"method": method, "modality": modality, "metric": metric,
                        "region": region, "mean": mean, "sd": sd, "n": n})
                })
                .collect();
            let not_computed: Vec<serde_json::Value> = e
                .skipped
                .iter()
                .map(|(metric, why)| json!({"metric": metric, "why": why}))
                .collect();
            json!({"path": path(&e.path), "metrics": metrics, "not_computed": not_computed})
        });
        json!({
            "run_dir": path(&self.run_dir),
            "slice_store": {"dir": path(&self.store.dir), "reused": self.store.reused,
                "channels": self.store.channels},
            "splits": splits,
            "skipped": skipped(&self.skipped),
            "checkpoint": self.checkpoint.as_deref().map(path),
            "synthesized": self.synthesized.as_ref().map(|s| {
                s.variants.iter().map(|v| json!({"dir": path(v), "slices": s.slices})).collect::<Vec<_>>()
            }),
            "evaluation": evaluation,
            "nnunet": self.nnunet.as_ref().map(|n| json!({"dir": path(&n.dir), "training": n.training,
                "test": n.test, "synthetic_channels": n.synthetic.len(), "skipped": skipped(&n.skipped)})),
            "bids": self.bids.as_deref().map(path),
            "dicomweb_stored": self.stored.as_ref().map(|(url, s)| json!({"server": url,
                "series_sent": s.sent_series, "series_already_there": s.present_series,
                "instances_sent": s.sent_instances})),
            "report": self.report.as_deref().map(path),
            "provenance": path(&self.provenance),
            "next": self.next,
            "work": self.work.iter().map(|w| {
                let why = match &w.action {
                    Action::RanAgain(why) => Some(why.as_str()),
                    _ => None,
                };
                json!({"stage": w.stage.to_string(), "what": w.what, "action": w.action.name(), "why": why})
            }).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run folder   {}", self.run_dir.display())?;
        writeln!(
            f,
            "slice store  {} ({}{})",
            self.store.dir.display(),
            if self.store.reused { "reused, " } else { "" },
            self.store.channels.join(", ")
        )?;
        writeln!(f, "{:<8} {:>8} {:>8}", "split", "subjects", "slices")?;
        for (split, (subjects, slices)) in counts(&self.store.rows) {
            writeln!(f, "{split:<8} {subjects:>8} {slices:>8}")?;
        }
        if self.skipped.is_empty() {
            writeln!(f, "skipped      none")?;
        } else {
            writeln!(f, "skipped      {} subject(s):", self.skipped.len())?;
            for s in &self.skipped {
                writeln!(f, "  {} [{}]: {}", s.subject, s.stage, s.reason)?;
            }
        }
        if let Some(c) = &self.checkpoint {
            writeln!(f, "checkpoint   {}", c.display())?;
        }
        if let Some(s) = &self.synthesized {
            for v in &s.variants {
                writeln!(f, "synthesized  {} ({} slices)", v.display(), s.slices)?;
            }
        }
        if let Some(e) = &self.evaluation {
            writeln!(
                f,
                "metrics      {} (mean ± sd over subjects, whole volume)",
                e.path.display()
            )?;
            writeln!(
                f,
                "  {:<20} {:<8} {:<8} {:>20}",
                "method", "modality", "metric", "value"
            )?;
            for ((method, modality, metric, region), (mean, sd, n)) in e.aggregates() {
                if region != "whole" {
                    continue;
                }
                writeln!(
                    f,
                    "  {method:<20} {modality:<8} {metric:<8} {:>20}",
                    format!("{mean:.4} ± {sd:.4} (n={n})")
                )?;
            }
            for (metric, why) in &e.skipped {
                writeln!(f, "  {metric}: not computed: {why}")?;
            }
        }
        if let Some(n) = &self.nnunet {
            writeln!(
                f,
                "nnU-Net      {} ({} training, {} test cases; {} synthesized channel(s))",
                n.dir.display(),
                n.training,
                n.test,
                n.synthetic.len()
            )?;
        }
        if let Some(b) = &self.bids {
            writeln!(f, "BIDS         {}", b.display())?;
        }
        if let Some((url, s)) = &self.stored {
            writeln!(
                f,
                "stored on    {url}: {} series sent ({} instances), {} already there",
                s.sent_series, s.sent_instances, s.present_series
            )?;
        }
        if let Some(r) = &self.report {
            writeln!(f, "report       {}", r.display())?;
        }
        for w in &self.work {
            match &w.action {
                Action::RanAgain(why) => {
                    writeln!(f, "ran again    [{}] {}: {why}", w.stage, w.what)?
                }
                Action::Reused => writeln!(f, "reused       [{}] {}", w.stage, w.what)?,
                Action::Ran => {}
            }
        }
        write!(f, "provenance   {}", self.provenance.display())?;
        if let Some(next) = &self.next {
            write!(f, "\nnext         {next}")?;
        }
        Ok(())
    }
}
