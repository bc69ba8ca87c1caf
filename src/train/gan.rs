//! Training the self-attention GANs on the slice store, with the pieces the diffusion trainer
//! uses (conditioning, loader, checkpoints, EMA, log, progress, non-finite guard).
//!
//! One optimizer step of the generator follows `model.gan.n_dis` steps of the discriminator
//! on the same real batch (fresh latents, noise and input dropouts each time):
//!
//! - D: hinge loss on D(real) and D(G(·)) with G's output detached, Adam at `train.lr_d`;
//! - G: −E[D(G(·))] plus, for the paired tasks, λ·E|G(·) − real| (`model.gan.l1_weight`),
//!   Adam at `train.lr` (TTUR: 4e-4 and 1e-4 with betas (0, 0.9) by default).
//!
//! Paired tasks condition as the diffusion model does (inputs with availability masks and
//! modality dropout, or the one-hot label map, plus one noise image for `label-to-image` so
//! variants differ); the PatchGAN sees the condition beside the image. `generation` draws
//! z ~ N(0, I) and, with `model.gan.classes` K > 0, conditions on the slice's position class:
//! each subject's slices split into K equal bands from the first to the last, so one generator
//! learns the anatomy of every level and synthesis rebuilds a volume band by band.
//!
//! Every random draw of step `s` comes from ChaCha8 seeded by (seed, s), so a resumed run
//! continues exactly as the uninterrupted one would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::diffusion::Conditioning;
use super::gan_loss::{discriminator_hinge, generator_hinge, l1};
use super::{
    CheckpointState, Checkpoints, Ema, LogRow, TrainError, load_optimizer, load_part, optimizer,
    progress_bar, resumable, resume_point, save_optimizer, save_part, stream, warmup_lr, write_log,
};
use crate::dataset::{Batch, Loader, ManifestRow, SliceSet};
use crate::models::diffusion::gaussian;
use crate::models::gan::{GanDiscriminator, GanGenerator, GanInput, GanSpec, latents, one_hot};
use crate::models::seeded;
use crate::spec::{GanConfig, ModelKind, TrainSection};

/// The parts of a GAN checkpoint folder.
pub const PARTS: [&str; 6] = [
    "model.bpk",
    "ema.bpk",
    "discriminator.bpk",
    "optimizer.bpk",
    "optimizer_d.bpk",
    "state.json",
];

/// Slice-position classes: each subject's slices, from its first stored slice index to its
/// last, split into `classes` equal bands.
#[derive(Debug, Clone, Default)]
pub struct SliceClasses {
    pub classes: usize,
    extents: BTreeMap<String, (u32, u32)>,
}

impl SliceClasses {
    /// The bands of the subjects in `rows`; `classes` 0 means unconditional.
    pub fn new<'a>(rows: impl IntoIterator<Item = &'a ManifestRow>, classes: usize) -> Self {
        let mut extents: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for r in rows {
            let e = extents
                .entry(r.subject.clone())
                .or_insert((r.slice_index, r.slice_index));
            e.0 = e.0.min(r.slice_index);
            e.1 = e.1.max(r.slice_index);
        }
        SliceClasses { classes, extents }
    }

    /// The class of a slice (0 when its subject is unknown).
    pub fn class(&self, row: &ManifestRow) -> usize {
        let Some(&(first, last)) = self.extents.get(&row.subject) else {
            return 0;
        };
        let span = (last - first + 1) as usize;
        let at = row.slice_index.saturating_sub(first) as usize;
        (at * self.classes / span).min(self.classes.saturating_sub(1))
    }
}

/// Stored slices and their manifest rows.
#[derive(Debug, Clone, Copy)]
pub struct Slices<'a> {
    /// Host values `[B, C, H, W]`, channels in store order.
    pub values: &'a [f32],
    pub dims: [usize; 4],
    pub rows: &'a [&'a ManifestRow],
}

/// Builds the generator's and discriminator's inputs for stored slices.
#[derive(Debug, Clone)]
pub struct GanInputs {
    pub spec: GanSpec,
    pub conditioning: Conditioning,
}

impl GanInputs {
    /// The real targets `[B, targets, H, W]` and the networks' inputs for `slices`; `train`
    /// applies the dropouts. Latents are truncated at `truncation` when given.
    pub fn build(
        &self,
        slices: Slices,
        classes: &SliceClasses,
        train: bool,
        truncation: Option<f64>,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> (Tensor<4>, GanInput) {
        let Slices { values, dims, rows } = slices;
        let [b, _, h, w] = dims;
        let available: Vec<Vec<bool>> = rows
            .iter()
            .map(|r| self.conditioning.available(r))
            .collect();
        let (x0, cond) = self
            .conditioning
            .split(values, dims, &available, train, rng);
        let real = Tensor::<4>::from_data(
            TensorData::new(x0, [b, self.conditioning.targets.len(), h, w]),
            device,
        );
        let k = self.conditioning.cond_channels();
        let mut input = GanInput::default();
        if k > 0 {
            input.cond = Some(Tensor::from_data(
                TensorData::new(cond, [b, k, h, w]),
                device,
            ));
        }
        if self.spec.noise_channels > 0 {
            input.noise = Some(gaussian([b, self.spec.noise_channels, h, w], rng, device));
        }
        if self.spec.arch == crate::models::gan::GanArch::Noise {
            input.z = Some(latents(b, self.spec.z_dim, truncation, rng, device));
            if self.spec.classes > 0 {
                let c: Vec<usize> = rows.iter().map(|r| classes.class(r)).collect();
                input.classes = Some(one_hot(&c, self.spec.classes, device));
            }
        }
        (real, input)
    }
}

/// Everything a GAN training run needs.
#[derive(Debug, Clone)]
pub struct GanTrainer {
    pub inputs: GanInputs,
    pub gan: GanConfig,
    pub train: TrainSection,
    pub seed: u64,
    pub checkpoints: Checkpoints,
    /// Where `train_log.parquet` goes.
    pub log: PathBuf,
    /// Stop after this many generator steps in this call (tests, resumable runs).
    pub max_steps: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// A trained GAN and what training did.
#[derive(Debug, Clone)]
pub struct GanTrained {
    pub generator: GanGenerator,
    pub ema: GanGenerator,
    pub discriminator: GanDiscriminator,
    pub log: Vec<LogRow>,
    pub last_checkpoint: Option<PathBuf>,
}

/// A loader batch read back to the host once, with its manifest rows.
struct HostBatch<'a> {
    values: Vec<f32>,
    dims: [usize; 4],
    rows: Vec<&'a ManifestRow>,
}

impl<'a> HostBatch<'a> {
    fn new(set: &'a SliceSet, batch: &Batch) -> Self {
        HostBatch {
            values: batch
                .slices
                .to_data()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
            dims: batch.slices.dims(),
            rows: batch.rows.iter().map(|&r| &set.rows[r]).collect(),
        }
    }

    fn slices(&self) -> Slices<'_> {
        Slices {
            values: &self.values,
            dims: self.dims,
            rows: &self.rows,
        }
    }
}

impl GanTrainer {
    fn spec(&self) -> &GanSpec {
        &self.inputs.spec
    }

    fn batch_inputs(
        &self,
        batch: &HostBatch,
        classes: &SliceClasses,
        train: bool,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> (Tensor<4>, GanInput) {
        self.inputs
            .build(batch.slices(), classes, train, None, rng, device)
    }

    /// Mean |G(condition) − real| over a set (paired tasks; no dropout, running statistics),
    /// or `None` for generation, whose samples have no pixelwise reference.
    pub fn evaluate(
        &self,
        g: &GanGenerator,
        set: &SliceSet,
        device: &Device,
    ) -> Result<Option<f64>, TrainError> {
        if !self.inputs.conditioning.task.uses_inputs() && self.inputs.conditioning.label.is_none()
        {
            return Ok(None);
        }
        let classes = SliceClasses::new(&set.rows, self.spec().classes);
        let loader = Loader::in_order(set, self.train.batch_size as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, u64::MAX));
        let (mut total, mut n) = (0.0, 0.0);
        for batch in loader.epoch(0, device) {
            let batch = batch?;
            let host = HostBatch::new(set, &batch);
            let (real, input) = self.batch_inputs(&host, &classes, false, &mut rng, device);
            let (fake, _) = g.forward(&input, self.spec().output_range, false);
            let b = batch.rows.len() as f64;
            total += (fake - real).abs().mean().into_scalar::<f32>() as f64 * b;
            n += b;
        }
        Ok((n > 0.0).then(|| total / n))
    }

    /// Trains on `set` (rows whose targets are missing are left out), validating on `val`
    /// after each epoch; resumes from the newest checkpoint when there is one.
    pub fn run(
        &self,
        set: &SliceSet,
        val: Option<&SliceSet>,
        device: &Device,
    ) -> Result<GanTrained, TrainError> {
        let conditioning = &self.inputs.conditioning;
        let usable = conditioning.usable(set)?;
        let classes = SliceClasses::new(&usable.rows, self.spec().classes);
        let ad = device.clone().autodiff();
        let mut g = seeded(&ad, self.seed, |ad| self.spec().generator(ad));
        let mut d = seeded(&ad, self.seed ^ 0xD15C, |ad| self.spec().discriminator(ad));
        let betas = self.train.betas_for(ModelKind::Sagan);
        let (mut optim_g, mut optim_d) =
            (optimizer(&self.train, betas), optimizer(&self.train, betas));
        let mut ema = Ema::new(g.valid(), self.train.ema);
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
            "gan": self.spec(),
            "label_classes": conditioning.label.map(|(_, k)| k),
            "conditioning": conditioning.fingerprint(),
            "data": usable.digest(),
            "gan_config": self.gan,
            "train": resumable(&self.train, ModelKind::Sagan),
        });
        let resumed = resume_point(&self.checkpoints, &self.log, self.seed, &extra)?;
        if resumed.is_none() {
            log.clear();
        }
        if let Some((dir, state)) = resumed {
            g = load_part(g, &dir, "model.bpk")?;
            ema.model = load_part(ema.model.clone(), &dir, "ema.bpk")?;
            d = load_part(d, &dir, "discriminator.bpk")?;
            optim_g = load_optimizer(optim_g, &dir, "optimizer.bpk")?;
            optim_d = load_optimizer(optim_d, &dir, "optimizer_d.bpk")?;
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
        let range = self.spec().output_range;
        let lambda = if conditioning.cond_channels() > 0 {
            self.gan.l1_weight
        } else {
            0.0
        };
        let non_finite = |step, value: f64, last: &Option<PathBuf>| TrainError::NonFinite {
            step,
            loss: value,
            checkpoint: last.clone(),
        };
        while step < stop {
            let (epoch, index) = (step / per_epoch, (step % per_epoch) as usize);
            let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, step));
            let Some(batch) = loader.batch(epoch, index, &ad)? else {
                break;
            };
            let lr_g = warmup_lr(
                self.train.lr_for(ModelKind::Sagan),
                self.train.warmup_steps,
                step,
            );
            let lr_d = warmup_lr(self.train.lr_d, self.train.warmup_steps, step);
            // Read back once; every discriminator step and the generator step draw their own
            // latents, noise and dropouts from it.
            let host = HostBatch::new(&usable, &batch);
            let mut d_total = 0.0;
            for _ in 0..self.gan.n_dis.max(1) {
                let (real, input) = self.batch_inputs(&host, &classes, true, &mut rng, &ad);
                let (fake, _) = g.forward(&input, range, true);
                let (on_real, _) = d.forward(real, &input, true);
                let (on_fake, _) = d.forward(fake.detach(), &input, true);
                let loss = discriminator_hinge(on_real, on_fake);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    bar.abandon();
                    return Err(non_finite(step, value, &last));
                }
                d_total += value;
                let grads = GradientsParams::from_grads(loss.backward(), &d);
                d = optim_d.step(lr_d, d, grads);
            }
            let (real, input) = self.batch_inputs(&host, &classes, true, &mut rng, &ad);
            let (fake, _) = g.forward(&input, range, true);
            let (on_fake, _) = d.forward(fake.clone(), &input, true);
            let mut loss = generator_hinge(on_fake);
            if lambda > 0.0 {
                loss = loss + l1(fake, real, lambda);
            }
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bar.abandon();
                return Err(non_finite(step, value, &last));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &g);
            g = optim_g.step(lr_g, g, grads);
            ema.update(&g.valid(), step);
            step += 1;
            let rate = (step - first) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let val_loss = match (step % per_epoch == 0, val) {
                (true, Some(v)) if !v.is_empty() => self.evaluate(&ema.model, v, device)?,
                _ => None,
            };
            let d_loss = d_total / self.gan.n_dis.max(1) as f64;
            log.push(LogRow {
                step,
                epoch,
                loss: value,
                val_loss,
                lr: lr_g,
                steps_per_s: rate,
                d_loss: Some(d_loss),
                gamma_g: Some(g.gamma() as f64),
                gamma_d: Some(d.gamma() as f64),
            });
            bar.set_position(step);
            bar.set_message(format!("G {value:.3} D {d_loss:.3} {rate:.2} steps/s"));
            if step % self.train.checkpoint_every.max(1) as u64 == 0 || step == stop {
                let state = CheckpointState {
                    step,
                    epoch: step / per_epoch.max(1),
                    batch: step % per_epoch.max(1),
                    seed: self.seed,
                    extra: extra.clone(),
                };
                // `valid()` syncs the running states (power-iteration vectors, batch-norm
                // statistics), whose newest value a record would otherwise miss.
                last = Some(self.checkpoints.save(&state, |dir| {
                    save_part(&g.valid(), dir, "model.bpk")?;
                    save_part(&ema.model, dir, "ema.bpk")?;
                    save_part(&d.valid(), dir, "discriminator.bpk")?;
                    save_optimizer(&optim_g, dir, "optimizer.bpk")?;
                    save_optimizer(&optim_d, dir, "optimizer_d.bpk")
                })?);
                write_log(&self.log, &log).map_err(|e| TrainError::Setup(e.to_string()))?;
            }
        }
        bar.finish();
        Ok(GanTrained {
            generator: g.valid(),
            ema: ema.model,
            discriminator: d.valid(),
            log,
            last_checkpoint: last,
        })
    }
}
