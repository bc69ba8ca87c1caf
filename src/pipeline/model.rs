//! Building the model a pipeline file describes, shared by the stages that train it, apply it
//! and score it: the trainers, the generator rebuilt from what a checkpoint recorded, and the
//! range outputs are clamped to.

use std::path::Path;

use burn::tensor::Device;

use super::error::RunError;
use super::stage::Stage;
use crate::conditioning::{Conditioning, GanInputs, SliceClasses};
use crate::dataset::SliceSet;
use crate::models::UnetSpec;
use crate::models::diffusion::NoiseSchedule;
use crate::models::gan::{GanArch, GanSpec};
use crate::spec::{ModelKind, ModelSection, NormalizeMethod, PipelineFile, Task};
use crate::synth::diffusion::sampling;
use crate::synth::{DiffusionGenerator, Generator, SaganGenerator, load_weights};
use crate::train::diffusion::DiffusionTrainer;
use crate::train::gan::GanTrainer;
use crate::train::{CheckpointState, Checkpoints};

fn failed(path: &Path, e: impl ToString) -> RunError {
    RunError::failed(Stage::Synthesize, path, e.to_string())
}

/// The data range x̂0 may be clamped to: the normalization range when it bounds the data.
pub fn clip_range(file: &PipelineFile) -> Option<[f32; 2]> {
    let n = &file.preprocess.normalize;
    match n.method {
        NormalizeMethod::Percentile | NormalizeMethod::Minmax => {
            let [a, b] = n.range;
            Some([a.min(b) as f32, a.max(b) as f32])
        }
        NormalizeMethod::Zscore | NormalizeMethod::None => None,
    }
}

/// The diffusion trainer the pipeline file describes, for slices like those of `set`.
pub fn diffusion_trainer(
    file: &PipelineFile,
    model: &ModelSection,
    set: &SliceSet,
    run_dir: &Path,
) -> Result<DiffusionTrainer, String> {
    let conditioning = Conditioning::new(model, set)?;
    let (_, _, h, w) = set.dim();
    let spec = UnetSpec::from_model(
        model,
        conditioning.in_channels(),
        conditioning.targets.len(),
        h.min(w),
    );
    let diffusion = model.diffusion.clone().unwrap_or_default();
    Ok(DiffusionTrainer {
        spec,
        schedule: NoiseSchedule::new(&diffusion),
        conditioning,
        train: file.train.clone().unwrap_or_default(),
        seed: file.pipeline.seed,
        checkpoints: Checkpoints::new(run_dir.join("checkpoints")),
        log: run_dir.join("train_log.parquet"),
        max_steps: None,
        progress: true,
    })
}

/// The GAN networks' shape for `model`, `conditioning` and slices of `[h, w]`.
pub fn gan_spec(
    file: &PipelineFile,
    model: &ModelSection,
    conditioning: &Conditioning,
    [h, w]: [usize; 2],
) -> GanSpec {
    let gan = model.gan.clone().unwrap_or_default();
    let noise_channels = usize::from(model.task == Task::LabelToImage);
    GanSpec {
        arch: if model.task == Task::Generation {
            GanArch::Noise
        } else {
            GanArch::Unet
        },
        in_channels: conditioning.cond_channels() + noise_channels,
        noise_channels,
        out_channels: conditioning.targets.len(),
        base_channels: model.unet.base_channels as usize,
        channel_mult: model.unet.multipliers(),
        groups: model.unet.groups as usize,
        z_dim: gan.z_dim as usize,
        classes: gan.classes as usize,
        image_size: [h, w],
        attention_resolution: gan.attention_resolution as usize,
        output_range: clip_range(file),
    }
}

/// The GAN trainer the pipeline file describes, for slices like those of `set`.
pub fn gan_trainer(
    file: &PipelineFile,
    model: &ModelSection,
    set: &SliceSet,
    run_dir: &Path,
) -> Result<GanTrainer, String> {
    let mut conditioning = Conditioning::new(model, set)?;
    // Whole-condition dropout trains the unconditional model classifier-free guidance needs;
    // a GAN has no such guidance, and with the L1 term it would only pull G to the mean image.
    conditioning.cond_dropout = 0.0;
    let (_, _, h, w) = set.dim();
    let size = [h, w];
    Ok(GanTrainer {
        inputs: GanInputs {
            spec: gan_spec(file, model, &conditioning, size),
            conditioning,
        },
        gan: model.gan.clone().unwrap_or_default(),
        train: file.train.clone().unwrap_or_default(),
        seed: file.pipeline.seed,
        checkpoints: Checkpoints::new(run_dir.join("checkpoints")),
        log: run_dir.join("train_log.parquet"),
        max_steps: None,
        progress: true,
    })
}

/// The generator of the checkpoint folder `checkpoint`, rebuilt from what training recorded
/// in its `state.json` (the network's shape, the label classes) with the pipeline file's
/// modalities resolved against the store's channels (those of `set`), on `device`.
///
/// A file whose `[model]` describes another network than the checkpoint holds, or whose
/// noise schedule differs from the one the model was trained with, is an error naming both.
pub fn generator(
    file: &PipelineFile,
    set: &SliceSet,
    checkpoint: &Path,
    device: &Device,
) -> Result<Box<dyn Generator>, RunError> {
    let Some(model) = &file.model else {
        return Err(RunError::Nothing {
            stage: Stage::Synthesize,
            what: "[synthesize] needs a [model] section".into(),
        });
    };
    let state_path = checkpoint.join("state.json");
    let state: CheckpointState = std::fs::read_to_string(&state_path)
        .map_err(|e| {
            failed(
                &state_path,
                format!("cannot read the checkpoint state: {e}"),
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| failed(&state_path, e)))?;
    let recorded = &state.extra;
    let label_classes = recorded["label_classes"].as_u64().map(|k| k as usize);
    // A checkpoint from before label classes were recorded: count them in the slices.
    let mut conditioning = match label_classes {
        Some(_) => Conditioning::resolve(model, &set.channels, label_classes),
        None => Conditioning::new(model, set),
    }
    .map_err(|e| failed(checkpoint, e))?;
    let mismatch = |saved: &dyn std::fmt::Debug, spec: &dyn std::fmt::Debug| {
        failed(
            &state_path,
            format!(
                "the checkpoint holds a network of shape {saved:?}, the pipeline file describes {spec:?}; \
                 use the [model] settings it was trained with"
            ),
        )
    };
    let (_, _, h, w) = set.dim();
    let section = file.synthesize.clone().unwrap_or_default();
    match model.kind {
        ModelKind::Diffusion => {
            let described = UnetSpec::from_model(
                model,
                conditioning.in_channels(),
                conditioning.targets.len(),
                h.min(w),
            );
            let spec = match serde_json::from_value::<UnetSpec>(recorded["unet"].clone()) {
                Ok(saved) if saved != described => return Err(mismatch(&saved, &described)),
                Ok(saved) => saved,
                Err(_) => described,
            };
            let schedule = NoiseSchedule::new(&model.diffusion.clone().unwrap_or_default());
            let trained_on = &recorded["schedule"];
            let digest = schedule.fingerprint();
            if trained_on.is_object() && *trained_on != digest {
                return Err(failed(
                    &state_path,
                    format!(
                        "the model was trained with another noise schedule than \
                         [model.diffusion] describes (trained: {trained_on}, described: {digest}); \
                         use the settings it was trained with"
                    ),
                ));
            }
            let net =
                load_weights(spec.init(device), checkpoint).map_err(|e| failed(checkpoint, e))?;
            let (sampler, guidance) = sampling(&section);
            Ok(Box::new(DiffusionGenerator {
                net,
                schedule,
                conditioning,
                sampler,
                guidance,
                clip: clip_range(file),
                device: device.clone(),
            }))
        }
        ModelKind::Sagan => {
            conditioning.cond_dropout = 0.0;
            let described = gan_spec(file, model, &conditioning, [h, w]);
            let spec = match serde_json::from_value::<GanSpec>(recorded["gan"].clone()) {
                Ok(saved) if saved != described => return Err(mismatch(&saved, &described)),
                Ok(saved) => saved,
                Err(_) => described,
            };
            let net = load_weights(spec.generator(device), checkpoint)
                .map_err(|e| failed(checkpoint, e))?;
            Ok(Box::new(SaganGenerator {
                net,
                classes: SliceClasses::new(&set.rows, spec.classes),
                inputs: GanInputs { spec, conditioning },
                truncation: section.truncation,
                device: device.clone(),
            }))
        }
    }
}
