//! Training a conditional diffusion model on the slice store.
//!
//! Conditioning, by task:
//! - `translation`, `missing-modality`: the input modalities as channels, each followed by its
//!   availability mask (1 where the modality is there, 0 where it is missing or dropped).
//!   Training drops each available input with probability `model.modality_dropout`, so one
//!   model serves any subset of missing inputs.
//! - `label-to-image`: the label map one-hot encoded (classes 0 .. K-1).
//! - `generation`: no condition.
//!
//! With probability `model.cond_dropout` the whole condition is replaced by zeros (every mask
//! 0), which trains the unconditional model classifier-free guidance needs.
//!
//! Every random draw of optimizer step `s` (time steps, noise, dropouts) comes from ChaCha8
//! seeded by (seed, s), and batches from the loader's (seed, epoch, position) streams, so a
//! run resumed from a checkpoint continues exactly as the uninterrupted run would.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    CheckpointState, Checkpoints, Ema, LogRow, TrainError, load_optimizer, load_part, optimizer,
    progress_bar, resumable, resume_point, save_optimizer, save_part, stream, warmup_lr, write_log,
};
use crate::dataset::{Loader, SliceSet};
use crate::models::diffusion::{NoiseSchedule, gaussian};
use crate::models::{Unet, UnetSpec, seeded};
use crate::preprocess::LABEL;
use crate::spec::{ModelKind, ModelSection, Task, TrainSection};

/// The parts of a diffusion checkpoint folder.
pub const PARTS: [&str; 4] = ["model.bpk", "ema.bpk", "optimizer.bpk", "state.json"];

/// Which store channels the model produces and conditions on.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditioning {
    pub task: Task,
    /// Store channel of each target modality.
    pub targets: Vec<(String, usize)>,
    /// Store channel of each input modality.
    pub inputs: Vec<(String, usize)>,
    /// Store channel of the label, and the number of classes, for `label-to-image`.
    pub label: Option<(usize, usize)>,
    pub modality_dropout: f64,
    pub cond_dropout: f64,
}

fn channel(set: &SliceSet, name: &str, field: &str) -> Result<usize, TrainError> {
    set.channel(name).ok_or_else(|| {
        TrainError::Setup(format!(
            "{field}: the slice store has no channel {name:?} (it has {})",
            set.channels.join(", ")
        ))
    })
}

impl Conditioning {
    /// Resolves `model`'s modalities against the store's channels.
    pub fn new(model: &ModelSection, set: &SliceSet) -> Result<Self, TrainError> {
        let targets = model
            .target
            .iter()
            .map(|m| Ok((m.to_owned(), channel(set, m, "model.target")?)))
            .collect::<Result<Vec<_>, TrainError>>()?;
        let inputs = if model.task.uses_inputs() {
            model
                .inputs
                .iter()
                .map(|m| Ok((m.clone(), channel(set, m, "model.inputs")?)))
                .collect::<Result<Vec<_>, TrainError>>()?
        } else {
            Vec::new()
        };
        let label = if model.task == Task::LabelToImage {
            let c = channel(set, LABEL, "model.task = \"label-to-image\"")?;
            let mut max = 0f32;
            for i in 0..set.len() {
                let plane = set.plane(i, c).map_err(TrainError::Store)?;
                max = plane.iter().fold(max, |a, &b| a.max(b));
            }
            Some((c, (max.round() as usize + 1).max(2)))
        } else {
            None
        };
        Ok(Conditioning {
            task: model.task,
            targets,
            inputs,
            label,
            modality_dropout: model.modality_dropout,
            cond_dropout: model.cond_dropout,
        })
    }

    /// Channels of the condition.
    pub fn cond_channels(&self) -> usize {
        2 * self.inputs.len() + self.label.map_or(0, |(_, k)| k)
    }

    /// Channels the network takes: the noisy targets, then the condition.
    pub fn in_channels(&self) -> usize {
        self.targets.len() + self.cond_channels()
    }

    /// Splits stored slices `[B, C, H, W]` (host values, row-major) into the targets and the
    /// condition. `available[b][i]` says whether input `i` is real for sample `b`; `train`
    /// applies the dropouts with `rng`.
    ///
    /// # Shapes
    /// -> (`[B, targets, H, W]`, `[B, cond_channels, H, W]`)
    pub fn split(
        &self,
        slices: &[f32],
        dims: [usize; 4],
        available: &[Vec<bool>],
        train: bool,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<f32>) {
        let [b, c, h, w] = dims;
        let plane = h * w;
        let at = |n: usize, ch: usize| &slices[(n * c + ch) * plane..(n * c + ch + 1) * plane];
        let mut x0 = Vec::with_capacity(b * self.targets.len() * plane);
        let mut cond = Vec::with_capacity(b * self.cond_channels() * plane);
        for n in 0..b {
            for (_, ch) in &self.targets {
                x0.extend_from_slice(at(n, *ch));
            }
            // Draw every decision, used or not, so the stream does not depend on the data.
            let drop_all = rng.random::<f64>() < self.cond_dropout;
            let drops: Vec<bool> = self
                .inputs
                .iter()
                .map(|_| rng.random::<f64>() < self.modality_dropout)
                .collect();
            for (i, (_, ch)) in self.inputs.iter().enumerate() {
                let real = available
                    .get(n)
                    .and_then(|a| a.get(i))
                    .copied()
                    .unwrap_or(true);
                let on = real && !(train && (drop_all || drops[i]));
                if on {
                    cond.extend_from_slice(at(n, *ch));
                } else {
                    cond.extend(std::iter::repeat_n(0.0, plane));
                }
                cond.extend(std::iter::repeat_n(if on { 1.0 } else { 0.0 }, plane));
            }
            if let Some((ch, k)) = self.label {
                let labels = at(n, ch);
                for class in 0..k {
                    let on = !(train && drop_all);
                    cond.extend(labels.iter().map(|&l| {
                        if on && l.round() as usize == class {
                            1.0
                        } else {
                            0.0
                        }
                    }));
                }
            }
        }
        (x0, cond)
    }

    /// The settings a resumed run must keep, as recorded in checkpoints.
    pub fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "task": self.task,
            "targets": self.targets,
            "inputs": self.inputs,
            "modality_dropout": self.modality_dropout,
            "cond_dropout": self.cond_dropout,
        })
    }

    /// For each row of `set`, whether each input modality is real there.
    pub fn availability(&self, set: &SliceSet, rows: &[usize]) -> Vec<Vec<bool>> {
        rows.iter().map(|&r| self.available(&set.rows[r])).collect()
    }

    /// Whether each input modality is real in a stored slice.
    pub fn available(&self, row: &crate::dataset::ManifestRow) -> Vec<bool> {
        let missing: Vec<&str> = row.channels_missing.split(',').collect();
        self.inputs
            .iter()
            .map(|(m, _)| !missing.contains(&m.as_str()))
            .collect()
    }

    /// The rows of `set` that can train the model; an error when there are none.
    pub fn usable(&self, set: &SliceSet) -> Result<SliceSet, TrainError> {
        let usable = set.filter(|r| self.trains_on(r));
        if usable.is_empty() {
            return Err(TrainError::Setup(format!(
                "no training slice has every target ({}) present",
                self.targets
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(usable)
    }

    /// Whether a row can train the model: every target is real there.
    pub fn trains_on(&self, row: &crate::dataset::ManifestRow) -> bool {
        let missing: Vec<&str> = row.channels_missing.split(',').collect();
        self.targets
            .iter()
            .all(|(m, _)| !missing.contains(&m.as_str()))
    }
}

/// Everything a diffusion training run needs.
#[derive(Debug, Clone)]
pub struct DiffusionTrainer {
    pub spec: UnetSpec,
    pub schedule: NoiseSchedule,
    pub conditioning: Conditioning,
    pub train: TrainSection,
    pub seed: u64,
    pub checkpoints: Checkpoints,
    /// Where `train_log.parquet` goes.
    pub log: PathBuf,
    /// Stop after this many optimizer steps in this call (tests, resumable runs).
    pub max_steps: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// A trained model and what training did.
#[derive(Debug, Clone)]
pub struct Trained {
    pub model: Unet,
    pub ema: Unet,
    pub log: Vec<LogRow>,
    pub last_checkpoint: Option<PathBuf>,
}

impl DiffusionTrainer {
    /// The loss of one batch: MSE between the network output and the target (ε or v).
    fn loss(
        &self,
        net: &Unet,
        set: &SliceSet,
        batch: &crate::dataset::Batch,
        rng: &mut ChaCha8Rng,
        train: bool,
    ) -> Tensor<1> {
        let device = batch.slices.device();
        let dims = batch.slices.dims();
        let host = batch
            .slices
            .to_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let available = self.conditioning.availability(set, &batch.rows);
        let (x0, cond) = self.conditioning.split(&host, dims, &available, train, rng);
        let [b, _, h, w] = dims;
        let x0 = Tensor::<4>::from_data(
            TensorData::new(x0, [b, self.conditioning.targets.len(), h, w]),
            &device,
        );
        let t: Vec<usize> = (0..b)
            .map(|_| rng.random_range(0..self.schedule.len()))
            .collect();
        let noise = gaussian(x0.dims(), rng, &device);
        let x_t = self.schedule.q_sample(x0.clone(), noise.clone(), &t);
        let input = if self.conditioning.cond_channels() > 0 {
            let cond = Tensor::<4>::from_data(
                TensorData::new(cond, [b, self.conditioning.cond_channels(), h, w]),
                &device,
            );
            Tensor::cat(vec![x_t, cond], 1)
        } else {
            x_t
        };
        let times: Vec<f32> = t.iter().map(|&t| t as f32).collect();
        let out = net.forward(input, &times).output;
        let target = self.schedule.target(x0, noise, &t);
        (out - target).powf_scalar(2.0).mean()
    }

    /// The noise schedule as checkpoints record it: the digest of its betas and what the
    /// network predicts.
    fn schedule_fingerprint(&self) -> serde_json::Value {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for b in &self.schedule.betas {
            h.update(b.to_le_bytes());
        }
        serde_json::json!({
            "betas_sha256": crate::volume::hex(&h.finalize()),
            "prediction": self.schedule.prediction,
        })
    }

    /// Mean loss over a set (no dropout, no gradients), with draws from a fixed stream.
    pub fn evaluate(&self, net: &Unet, set: &SliceSet, device: &Device) -> Result<f64, TrainError> {
        let loader = Loader::in_order(set, self.train.batch_size as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, u64::MAX));
        let mut total = 0.0;
        let mut n = 0.0;
        for batch in loader.epoch(0, device) {
            let batch = batch?;
            let b = batch.rows.len() as f64;
            total += self
                .loss(net, set, &batch, &mut rng, false)
                .into_scalar::<f32>() as f64
                * b;
            n += b;
        }
        Ok(if n > 0.0 { total / n } else { f64::NAN })
    }

    /// Trains on `set` (rows whose targets are missing are left out), validating on `val`
    /// after each epoch; resumes from the newest checkpoint when there is one.
    pub fn run(
        &self,
        set: &SliceSet,
        val: Option<&SliceSet>,
        device: &Device,
    ) -> Result<Trained, TrainError> {
        let usable = self.conditioning.usable(set)?;
        let ad = device.clone().autodiff();
        let mut net = seeded(&ad, self.seed, |ad| self.spec.init(ad));
        let mut optim = optimizer(&self.train, self.train.betas_for(ModelKind::Diffusion));
        let mut ema = Ema::new(net.valid(), self.train.ema);
        let mut log = super::read_log(&self.log).map_err(|e| TrainError::Setup(e.to_string()))?;
        let loader = Loader::new(
            &usable,
            self.train.batch_size as usize,
            self.train.augment.clone(),
            self.seed,
        );
        let per_epoch = loader.batches() as u64;
        let total = per_epoch * self.train.epochs as u64;
        let total = self
            .train
            .max_steps
            .map_or(total, |m| total.min(u64::from(m)));
        let (mut step, mut last) = (0u64, None);
        let extra = serde_json::json!({
            "unet": self.spec,
            "label_classes": self.conditioning.label.map(|(_, k)| k),
            "conditioning": self.conditioning.fingerprint(),
            "schedule": self.schedule_fingerprint(),
            "data": usable.digest(),
            "train": resumable(&self.train, ModelKind::Diffusion),
        });
        let resumed = resume_point(&self.checkpoints, &self.log, self.seed, &extra)?;
        if resumed.is_none() {
            log.clear();
        }
        if let Some((dir, state)) = resumed {
            net = load_part(net, &dir, "model.bpk")?;
            ema.model = load_part(ema.model.clone(), &dir, "ema.bpk")?;
            optim = load_optimizer(optim, &dir, "optimizer.bpk")?;
            step = state.step;
            log.retain(|r| r.step <= step);
            tracing::info!(checkpoint = %dir.display(), step, "resuming training");
            last = Some(dir);
        }
        let bar = progress_bar(self.progress, total);
        bar.set_position(step);
        let stop = self.max_steps.map_or(total, |m| (step + m).min(total));
        let started = Instant::now();
        let first = step;
        let save = |net: &Unet, ema: &Unet, optim: &ModuleOptimizer, step: u64| {
            let state = CheckpointState {
                step,
                epoch: step / per_epoch.max(1),
                batch: step % per_epoch.max(1),
                seed: self.seed,
                extra: extra.clone(),
            };
            self.checkpoints.save(&state, |dir| {
                save_part(net, dir, "model.bpk")?;
                save_part(ema, dir, "ema.bpk")?;
                save_optimizer(optim, dir, "optimizer.bpk")
            })
        };
        while step < stop {
            let (epoch, index) = (step / per_epoch, (step % per_epoch) as usize);
            let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, step));
            let Some(batch) = loader.batch(epoch, index, &ad)? else {
                break;
            };
            let loss = self.loss(&net, &usable, &batch, &mut rng, true);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite {
                    step,
                    loss: value,
                    checkpoint: last,
                });
            }
            let lr = warmup_lr(
                self.train.lr_for(ModelKind::Diffusion),
                self.train.warmup_steps,
                step,
            );
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            ema.update(&net.valid(), step);
            step += 1;
            let rate = (step - first) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let end_of_epoch = step % per_epoch == 0;
            let val_loss = match (end_of_epoch, val) {
                (true, Some(v)) if !v.is_empty() => Some(self.evaluate(&ema.model, v, device)?),
                _ => None,
            };
            log.push(LogRow {
                step,
                epoch,
                loss: value,
                val_loss,
                lr,
                steps_per_s: rate,
                d_loss: None,
                gamma_g: None,
                gamma_d: None,
            });
            bar.set_position(step);
            bar.set_message(format!("loss {value:.4} {rate:.2} steps/s"));
            if step % self.train.checkpoint_every.max(1) as u64 == 0 || step == stop {
                last = Some(save(&net, &ema.model, &optim, step)?);
                write_log(&self.log, &log).map_err(|e| TrainError::Setup(e.to_string()))?;
            }
        }
        bar.finish();
        Ok(Trained {
            model: net.valid(),
            ema: ema.model,
            log,
            last_checkpoint: last,
        })
    }
}
