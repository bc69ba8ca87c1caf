//! `medsynth sweep`: runs a pipeline file under every combination of settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use medsynth::pipeline;
use medsynth::sweep::{self, Finished};

/// Run a pipeline file under every combination of settings (an ablation) and compare them.
///
/// The settings are the file's `[sweep]` table (dotted key = list of values) and every
/// `--set KEY=V1,V2` (which replaces the file's values for that key). Each combination runs
/// as its own run, `runs/{name}--{setting}`; the runs share one slice store, and
/// combinations that differ only in settings applied after training (synthesis, evaluation,
/// output) train once. Every combination is validated before any runs; one the check refuses
/// (Self-Attention Guidance without attention) is skipped and listed. A re-run resumes:
/// finished runs are reused. The comparison report (every metric per setting, and paired
/// Wilcoxon tests against the first setting and between settings that differ in one key)
/// goes to `runs/{name}/sweep/report.md` and `report.html`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  medsynth sweep pipelines/ablation-attention.toml\n  medsynth sweep pipelines/demo.toml --set model.attention.kind=none,mhsa,tmsa --set synthesize.guidance.sag=0,0.3,0.75"
)]
pub struct SweepArgs {
    /// The pipeline file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A setting to vary: a dotted key of the file and its values, comma-separated.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub set: Vec<String>,
    /// Run root: relative paths in the file are resolved against it. Default: the current folder.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = super::load_pipeline(&args.file)? else {
        return Ok(ExitCode::from(super::EXIT_INVALID));
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let base: toml::Table = text
        .parse()
        .with_context(|| format!("cannot parse {}", args.file.display()))?;
    let mut axes: BTreeMap<String, Vec<medsynth::spec::SweepValue>> = file.sweep.clone();
    for arg in &args.set {
        match sweep::parse_set(arg) {
            Ok((key, values)) => {
                axes.insert(key, values);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(super::EXIT_INVALID));
            }
        }
    }
    if axes.is_empty() {
        eprintln!(
            "error: {}: nothing to sweep; add a [sweep] table or --set KEY=V1,V2",
            args.file.display()
        );
        return Ok(ExitCode::from(super::EXIT_INVALID));
    }
    let name = file.pipeline.name.clone();
    let settings = sweep::combinations(&axes);
    // Every combination is checked before anything runs; one the file check refuses (Self-
    // Attention Guidance without attention, say) is skipped and listed, as long as one runs.
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for setting in &settings {
        let child = sweep::child(&base, &name, setting)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
        let shown = args
            .file
            .with_file_name(format!("{name}--{}.toml", setting.slug()));
        match medsynth::spec::parse(&child, &shown) {
            Ok(parsed) => files.push((setting.clone(), parsed, shown)),
            Err(medsynth::spec::SpecError::Invalid(diagnostics)) => {
                let why: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
                refused.push((setting.label(), why.join("; ")));
                for d in diagnostics {
                    eprintln!("setting {} is skipped: {d}", setting.label());
                }
            }
            Err(e) => return Err(e).context("cannot check a sweep setting"),
        }
    }
    if files.is_empty() {
        eprintln!(
            "error: {}: every setting of the sweep is invalid",
            args.file.display()
        );
        return Ok(ExitCode::from(super::EXIT_INVALID));
    }
    tracing::info!(runs = files.len(), settings = ?axes.keys().collect::<Vec<_>>(), "sweep planned");
    let mut finished: Vec<Finished> = Vec::new();
    // The first run folder of each training setting, whose checkpoints the others reuse.
    let mut trained: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut segmented: BTreeMap<String, PathBuf> = BTreeMap::new();
    let total = files.len();
    for (k, (setting, parsed, shown)) in files.into_iter().enumerate() {
        tracing::info!(run = k + 1, of = total, setting = %setting.label(), "sweep run");
        let plan = pipeline::plan(parsed, &shown, &args.root)?;
        let run_dir = plan.run_dir.clone();
        if let Some(from) = trained.get(&setting.training_key()) {
            sweep::reuse_training(from, &run_dir).with_context(|| {
                format!(
                    "cannot copy the checkpoints of {} into {}",
                    from.display(),
                    run_dir.display()
                )
            })?;
        } else if let Some(from) = segmented.get(&sweep::segmentation_key(&setting)) {
            sweep::reuse_segmentation(from, &run_dir).with_context(|| {
                format!("cannot copy the segmentation network of {}", from.display())
            })?;
        }
        let outcome = pipeline::execute(plan, &args.root)?;
        trained
            .entry(setting.training_key())
            .or_insert_with(|| run_dir.clone());
        segmented
            .entry(sweep::segmentation_key(&setting))
            .or_insert_with(|| run_dir.clone());
        let rows = outcome
            .evaluation
            .as_ref()
            .map(|e| e.rows.clone())
            .unwrap_or_default();
        finished.push(Finished {
            setting,
            run_dir,
            rows,
        });
    }
    let dir = args.root.join(format!("runs/{name}/sweep"));
    let written = sweep::report(&name, &finished, &refused)
        .write(&dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (head, lines) = sweep::headline(&finished);
    let mut out = format!(
        "sweep        {} runs\n  {}\n",
        finished.len(),
        head.join(" | ")
    );
    for line in lines {
        out.push_str(&format!("  {}\n", line.join(" | ")));
    }
    for (label, why) in &refused {
        out.push_str(&format!("  skipped {label}: {why}\n"));
    }
    for path in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e != "png"))
    {
        out.push_str(&format!("report       {}\n", path.display()));
    }
    super::print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
