//! Downstream segmentation for label-to-image (`evaluate.segmentation`): a segmentation
//! network trained on the real training slices against one trained on them plus the
//! synthetic slices generated from the training labels, both scored by Dice on the test
//! subjects' real images; and the check that refuses the comparison when no training subject
//! was synthesized.

use crate::common;

const FILE: &str = r#"
[pipeline]
name = "augment"
seed = 5

[input]
format = "phantom"
phantom = { subjects = 4, shape = [36, 40, 32], spacing_mm = 5.0, tumour_fraction = 1.0 }

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.5, val = 0.0, test = 0.5 }

[model]
kind = "diffusion"
task = "label-to-image"
target = ["t1", "t2"]
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { schedule = "cosine", timesteps = 50 }

[train]
epochs = 1
batch_size = 8

[synthesize]
split = "all"
sampler = { kind = "ddim", steps = 2 }

[evaluate]
metrics = ["ssim"]
protocol = "slice"
segmentation = { epochs = 1 }

[output]
formats = []
report = true
"#;

#[test]
fn label_to_image_compares_segmentation_trained_with_and_without_synthetic_cases() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("augment.toml");
    std::fs::write(&file, FILE).unwrap();
    let out = common::run_pipeline(root.path(), &file);
    common::assert_success(&out);
    let stderr = common::stderr(&out);
    // Two training subjects, one variant each: the synthetic slices double the real ones.
    let line = stderr
        .lines()
        .find(|l| l.contains("training on real plus synthetic slices"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let count = |key: &str| -> usize {
        let at = line.find(&format!("{key}=")).unwrap() + key.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        count("synthetic") > 0 && count("synthetic") == count("real"),
        "{line}"
    );
    let run_dir = root.path().join("runs/augment");
    let rows = medsynth::pipeline::read_metrics(&run_dir.join("metrics.parquet")).unwrap();
    let dice: Vec<_> = rows.iter().filter(|r| r.metric == "dice").collect();
    for (method, setting) in [("real", "real"), ("diffusion", "real+synthetic")] {
        for region in ["whole-tumour", "tumour-core", "enhancing"] {
            let n = dice
                .iter()
                .filter(|r| r.method == method && r.setting == setting && r.region == region)
                .count();
            // The two test subjects, each with a tumour.
            assert_eq!(n, 2, "{method} {setting} {region}: {dice:?}");
        }
    }
    assert!(dice.iter().all(|r| (0.0..=1.0).contains(&r.value)));
    assert!(run_dir.join("segmentation-augmented/checkpoints").is_dir());

    // Synthesizing only the test subjects leaves nothing to add: the check says so.
    let test_only = root.path().join("test-only.toml");
    std::fs::write(
        &test_only,
        FILE.replace("split = \"all\"", "split = \"test\""),
    )
    .unwrap();
    let out = common::medsynth(&["validate", test_only.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::stderr(&out);
    assert!(
        stderr.contains("evaluate.segmentation") && stderr.contains("synthesize.split"),
        "{stderr}"
    );
}

/// baseline-unet trains as the model does, so a file without `[train]` (applying a
/// checkpoint) cannot ask for it; validation says so instead of training for a default.
#[test]
fn baseline_unet_needs_a_train_section() {
    let root = tempfile::tempdir().unwrap();
    let text = FILE
        .replace("[train]\nepochs = 1\nbatch_size = 8\n", "")
        .replace(
            "segmentation = { epochs = 1 }",
            "segmentation = { epochs = 1 }\nbaselines = [\"unet\"]",
        )
        .replace("task = \"label-to-image\"", "task = \"missing-modality\"\ninputs = [\"t1\"]\ncheckpoint = \"runs/x/checkpoints/step-00000001\"")
        .replace("target = [\"t1\", \"t2\"]", "target = \"t2\"");
    let file = root.path().join("apply.toml");
    std::fs::write(&file, text).unwrap();
    let out = common::medsynth(&["validate", file.to_str().unwrap()]);
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("evaluate.baselines") && stderr.contains("[train]"),
        "{stderr}"
    );
}
