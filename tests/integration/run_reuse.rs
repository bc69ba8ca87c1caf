//! Re-running a changed pipeline file in the same run folder: every stage reuses earlier work
//! only when everything that determines it is unchanged, and what a re-run writes equals what
//! the changed file writes with its synthesized outputs deleted first (volumes byte-equal,
//! tables equal after sorting, provenance included). The subjects are stored LPS, tilted and
//! anisotropic.
//!
//! The matrix: from one first run, one change per stage (a preprocessing field, the
//! sampler's steps, SAG, the variants, the baselines, the metrics, an output format, the
//! checkpoint applied), and a change that alters nothing downstream (`output.report`). The
//! first three changes in a row are the report that opened this test: SAG, then the steps,
//! then more epochs, each of which used to reuse the first run's slices.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

const NAME: &str = "reuse";

/// The first run: diffusion, 3 epochs, DDIM 5 steps, no SAG.
const BASE: &str = r#"
[pipeline]
name = "reuse"
seed = 3

[input]
format = "phantom"
phantom = { subjects = 5, shape = [40, 44, 30], spacing_mm = [5.0, 4.5, 6.0], orientation = "LPS", tilt_deg = [0.0, 12.0, 0.0] }

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.6, val = 0.0, test = 0.4 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { timesteps = 50 }

[train]
epochs = 3
batch_size = 4
checkpoint_every = 1000

[synthesize]
split = "test"
sampler = { kind = "ddim", steps = 5 }
guidance = { sag = 0.0 }

[evaluate]
metrics = ["ssim", "psnr"]
baselines = ["histogram"]

[output]
formats = ["nifti"]
report = false
"#;

/// `text` with `key = old` (first occurrence) replaced by `key = new`.
fn set(text: &str, old: &str, new: &str) -> String {
    assert!(text.contains(old), "{old:?} not in the pipeline");
    text.replacen(old, new, 1)
}

/// A run root holding a run folder.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A copy of `other`'s run folder.
    fn copy_of(other: &Root) -> Root {
        let root = Root::new();
        common::copy_tree(&other.run_dir(), &root.run_dir());
        root
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("runs").join(NAME)
    }

    /// Runs `pipeline` here; returns each stage's work as `stage what` → action (`ran again`
    /// with its reason after a colon).
    fn run(&self, pipeline: &str) -> BTreeMap<String, String> {
        let file = self.dir.path().join("pipeline.toml");
        std::fs::write(&file, pipeline).unwrap();
        let summary = self.dir.path().join("summary.json");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_medsynth"))
            .args(["run", "--root"])
            .arg(self.dir.path())
            .arg(&file)
            .arg("--summary-json")
            .arg(&summary)
            .env_remove("MEDSYNTH_LOG")
            .env_remove("MEDSYNTH_FID_WEIGHTS")
            .output()
            .unwrap();
        common::assert_success(&out);
        let s: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
        s["work"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let action = match w["why"].as_str() {
                    Some(why) => format!("{}: {why}", w["action"].as_str().unwrap()),
                    None => w["action"].as_str().unwrap().to_owned(),
                };
                (
                    format!(
                        "{} {}",
                        w["stage"].as_str().unwrap(),
                        w["what"].as_str().unwrap()
                    ),
                    action,
                )
            })
            .collect()
    }

    /// The provenance rows of `kind`.
    fn provenance(&self, kind: &str) -> Vec<medsynth::provenance::ProvenanceRow> {
        medsynth::provenance::read(&self.run_dir().join("provenance.parquet"))
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }
}

/// Runs `pipeline` on a copy of `before` (the re-run) and on another copy whose synthesized
/// outputs are deleted first (the reference), and asserts that both wrote the same; returns
/// the re-run and its work.
///
/// Where the re-run kept the synthesized slices, their provenance names the run that sampled
/// them (`before`'s pipeline file), and the reference's the changed file that sampled them
/// again: then `config_hash` is compared against `before` instead.
fn rerun(before: &Root, pipeline: &str) -> (Root, BTreeMap<String, String>) {
    let again = Root::copy_of(before);
    let work = again.run(pipeline);
    let reference = Root::copy_of(before);
    std::fs::remove_dir_all(reference.run_dir().join("synth")).unwrap();
    reference.run(pipeline);
    if work.get("synthesize variant-0").map(String::as_str) == Some("reused") {
        common::runs::assert_same_run_but(&again.run_dir(), &reference.run_dir(), &["config_hash"]);
        let made_by = |r: &Root| {
            r.provenance("synthetic-volume")
                .into_iter()
                .map(|row| (row.artifact, row.config_hash))
                .collect::<BTreeMap<_, _>>()
        };
        let (kept, first, fresh) = (made_by(&again), made_by(before), made_by(&reference));
        assert!(!kept.is_empty());
        for (artifact, hash) in &kept {
            // Kept from the earlier run, or made now as the reference made it.
            let made = first.get(artifact).or_else(|| fresh.get(artifact));
            assert_eq!(
                Some(hash),
                made,
                "{artifact}: not named after the run that made it"
            );
        }
    } else {
        common::runs::assert_same_run(&again.run_dir(), &reference.run_dir());
    }
    (again, work)
}

/// Asserts the action of each `stage what` named in `expected` (`ran again` matches any
/// reason; a reason after a colon must be contained in the actual one).
fn assert_work(work: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    for (what, action) in expected {
        let got = work
            .get(*what)
            .unwrap_or_else(|| panic!("no {what} in {work:#?}"));
        let ok = match action.split_once(": ") {
            Some((a, why)) => got.starts_with(a) && got.contains(why),
            None => got == action || got.starts_with(&format!("{action}:")),
        };
        assert!(ok, "{what}: expected {action:?}, got {got:?}\n{work:#?}");
    }
}

fn sha256(path: &Path) -> String {
    medsynth::pipeline::sha256_file(path).unwrap()
}

/// The newest checkpoint folder of a run.
fn checkpoint(run_dir: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .collect();
    all.sort();
    all.pop().unwrap()
}

#[test]
fn a_changed_setting_redoes_its_stage_and_everything_after_it_and_nothing_else() {
    let first = Root::new();
    let work = first.run(BASE);
    assert_work(
        &work,
        &[
            ("preprocess slice store", "ran"),
            ("train model", "ran"),
            ("synthesize variant-0", "ran"),
            ("evaluate metrics", "ran"),
        ],
    );
    let volume = |r: &Root| {
        let dir = r.run_dir().join("synth/variant-0");
        let subject = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap();
        std::fs::read(subject.join("t2.nii.gz")).unwrap()
    };

    // Nothing downstream changes: everything is reused, the same files come out.
    let (_, work) = rerun(&first, &set(BASE, "report = false", "report = true"));
    assert_work(
        &work,
        &[
            ("preprocess slice store", "reused"),
            ("train model", "reused"),
            ("synthesize variant-0", "reused"),
            ("evaluate metrics", "reused"),
        ],
    );

    // The report's chain, in one folder: SAG, then the steps, then more epochs.
    let sag = set(BASE, "guidance = { sag = 0.0 }", "guidance = { sag = 0.5 }");
    let (second, work) = rerun(&first, &sag);
    assert_work(
        &work,
        &[
            ("train model", "reused"),
            (
                "synthesize variant-0",
                "ran again: synthesize.guidance.sag changed",
            ),
            ("evaluate metrics", "ran again"),
        ],
    );
    assert_ne!(volume(&first), volume(&second), "SAG changed the samples");
    for row in second.provenance("synthetic-volume") {
        assert!(row.guidance.contains("sag=0.5"), "{}", row.guidance);
    }

    let steps = set(
        &sag,
        "sampler = { kind = \"ddim\", steps = 5 }",
        "sampler = { kind = \"ddim\", steps = 8 }",
    );
    let (third, work) = rerun(&second, &steps);
    assert_work(
        &work,
        &[
            ("train model", "reused"),
            (
                "synthesize variant-0",
                "ran again: synthesize.sampler.steps changed",
            ),
            ("evaluate metrics", "ran again"),
        ],
    );
    assert_ne!(volume(&second), volume(&third));
    for row in third.provenance("synthetic-slices") {
        assert_eq!(row.sampler, "ddim steps=8 eta=0");
    }

    let epochs = set(&steps, "epochs = 3", "epochs = 6");
    let step_before = checkpoint(&third.run_dir());
    let (fourth, work) = rerun(&third, &epochs);
    assert_work(
        &work,
        &[
            ("train model", "ran again: trained on from step"),
            (
                "synthesize variant-0",
                "ran again: checkpoint_sha256 changed",
            ),
            ("evaluate metrics", "ran again"),
        ],
    );
    // Provenance names the newest weights, which made the volumes.
    let newest = checkpoint(&fourth.run_dir());
    assert_ne!(
        newest.file_name(),
        step_before.file_name(),
        "training went on"
    );
    let weights = sha256(&newest.join("ema.bpk"));
    let rows = fourth.provenance("synthetic-volume");
    assert!(!rows.is_empty());
    for row in rows {
        assert_eq!(row.checkpoint_sha256, weights, "{}", row.artifact);
    }
    assert_ne!(volume(&third), volume(&fourth));

    // The checkpoint applied: another run's weights (the fourth's, with its settings) make
    // the first run's folder sample again, and give what the fourth run sampled.
    let given = set(
        &set(
            &epochs,
            "[train]\nepochs = 6\nbatch_size = 4\ncheckpoint_every = 1000\n",
            "",
        ),
        "target = \"t2\"",
        "target = \"t2\"\ncheckpoint = \"given-checkpoint\"",
    );
    let again = Root::copy_of(&first);
    common::copy_tree(&newest, &again.dir.path().join("given-checkpoint"));
    let work = again.run(&given);
    assert_work(
        &work,
        &[("synthesize variant-0", "ran again: checkpoint_sha256")],
    );
    assert_eq!(
        volume(&again),
        volume(&fourth),
        "the given weights made them"
    );
    for row in again.provenance("synthetic-volume") {
        assert_eq!(row.checkpoint_sha256, weights, "{}", row.artifact);
    }

    // A preprocessing field: a new slice store, and everything after it runs again.
    let (_, work) = rerun(
        &first,
        &set(BASE, "min_foreground = 0.2", "min_foreground = 0.3"),
    );
    assert_work(
        &work,
        &[
            ("preprocess slice store", "ran"),
            (
                "train model",
                "ran again: trained again from step 0: data changed",
            ),
            ("synthesize variant-0", "ran again"),
            ("evaluate metrics", "ran again"),
        ],
    );

    // One more variant: variant 0 is kept, variant 1 is sampled; one fewer removes it.
    let two = set(
        BASE,
        "guidance = { sag = 0.0 }",
        "guidance = { sag = 0.0 }\nvariants = 2",
    );
    let (with_two, work) = rerun(&first, &two);
    assert_work(
        &work,
        &[
            ("synthesize variant-0", "reused"),
            ("synthesize variant-1", "ran"),
            ("evaluate metrics", "ran again: synthesized changed"),
        ],
    );
    let (back, _) = rerun(&with_two, BASE);
    assert!(!back.run_dir().join("synth/variant-1").exists());
    assert!(!back.run_dir().join("synth/slices/variant-1").exists());

    // A baseline and a metric: evaluation runs again, synthesis is kept.
    for (old, new, why) in [
        (
            "baselines = [\"histogram\"]",
            "baselines = [\"histogram\", \"regression\"]",
            "evaluate.baselines changed",
        ),
        (
            "metrics = [\"ssim\", \"psnr\"]",
            "metrics = [\"ssim\", \"psnr\", \"mae\"]",
            "evaluate.metrics changed",
        ),
    ] {
        let (_, work) = rerun(&first, &set(BASE, old, new));
        assert_work(
            &work,
            &[
                ("train model", "reused"),
                ("synthesize variant-0", "reused"),
                ("evaluate metrics", &format!("ran again: {why}")),
            ],
        );
    }

    // An output format: written from the kept work.
    let (nnunet, work) = rerun(
        &first,
        &set(
            BASE,
            "formats = [\"nifti\"]",
            "formats = [\"nifti\", \"nnunet\"]\nnnunet = { id = 9, name = \"Reuse\" }",
        ),
    );
    assert_work(
        &work,
        &[
            ("synthesize variant-0", "reused"),
            ("evaluate metrics", "reused"),
        ],
    );
    assert!(nnunet.run_dir().join("export/nnunet").is_dir());
}

#[test]
fn a_shard_sampled_under_other_settings_without_a_record_is_sampled_again() {
    // Shards written before their stamps existed (or whose header was rewritten) say nothing
    // of what made them: they are never taken for current work.
    let first = Root::new();
    first.run(BASE);
    let dir = first.run_dir().join("synth/slices/variant-0");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "safetensors") {
            let (data, channels) = medsynth::dataset::read_shard(&path).unwrap();
            medsynth::dataset::write_shard(&path, &data, &channels, &Default::default()).unwrap();
        }
    }
    let work = first.run(BASE);
    assert_work(
        &work,
        &[(
            "synthesize variant-0",
            "ran again: its record of what made it is missing",
        )],
    );
}
