//! Training the self-attention GANs on the slice store: the generator-discriminator pair's
//! step for the training loop ([`super::engine`]), on inputs that
//! [`crate::conditioning::GanInputs`] builds.
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

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::engine::{Engine, Losses, Network, Optimized};
use super::gan_loss::{discriminator_hinge, generator_hinge, l1};
use super::{Checkpoints, LogRow, TrainError, optimizer, resumable, stream};
use crate::conditioning::{GanInputs, SliceClasses};
use crate::dataset::{Loader, SliceSet, Slices};
use crate::models::gan::{GanDiscriminator, GanGenerator, GanSpec};
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

impl GanTrainer {
    fn spec(&self) -> &GanSpec {
        &self.inputs.spec
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
        for batch in loader.epoch(0) {
            let batch = batch?;
            let (real, input) =
                self.inputs
                    .build(&batch.slices(set), &classes, false, None, &mut rng, device);
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
        let usable = self
            .inputs
            .conditioning
            .usable(set)
            .map_err(TrainError::Setup)?;
        let engine = Engine::new(
            &self.train,
            self.seed,
            (&self.checkpoints, &self.log),
            self.max_steps,
            self.progress,
        );
        let mut pair = Pair::new(self, &usable, device);
        let fitted = engine.fit(&mut pair, &usable, val, self.fingerprint(&usable))?;
        Ok(GanTrained {
            generator: pair.weights(),
            ema: fitted.averaged,
            discriminator: pair.d.net().valid(),
            log: fitted.log,
            last_checkpoint: fitted.last_checkpoint,
        })
    }

    /// What a checkpoint records and a resumed run must share: both networks' shape, the
    /// conditioning, the training slices, `[model.gan]` and `[train]`.
    fn fingerprint(&self, usable: &SliceSet) -> serde_json::Value {
        let conditioning = &self.inputs.conditioning;
        serde_json::json!({
            "gan": self.spec(),
            "label_classes": conditioning.label.map(|(_, k)| k),
            "conditioning": conditioning.fingerprint(),
            "data": usable.digest(),
            "gan_config": self.gan,
            "train": resumable(
                &self.train,
                self.train.lr_for(ModelKind::Sagan),
                self.train.betas_for(ModelKind::Sagan),
            ),
        })
    }
}

/// The generator and discriminator in training, each with its optimizer.
struct Pair<'a> {
    trainer: &'a GanTrainer,
    classes: SliceClasses,
    g: Optimized<GanGenerator>,
    d: Optimized<GanDiscriminator>,
    device: Device,
    autodiff: Device,
}

impl<'a> Pair<'a> {
    fn new(trainer: &'a GanTrainer, usable: &SliceSet, device: &Device) -> Self {
        let autodiff = device.clone().autodiff();
        let spec = trainer.spec();
        let g = seeded(&autodiff, trainer.seed, |ad| spec.generator(ad));
        let d = seeded(&autodiff, trainer.seed ^ 0xD15C, |ad| {
            spec.discriminator(ad)
        });
        Pair {
            trainer,
            classes: SliceClasses::new(&usable.rows, spec.classes),
            g: Optimized::new(g, Self::optimizer(trainer)),
            d: Optimized::new(d, Self::optimizer(trainer)),
            device: device.clone(),
            autodiff,
        }
    }

    fn optimizer(trainer: &GanTrainer) -> ModuleOptimizer {
        optimizer(&trainer.train, trainer.train.betas_for(ModelKind::Sagan))
    }
}

impl Network for Pair<'_> {
    type Weights = GanGenerator;

    /// `model.gan.n_dis` discriminator steps, then one generator step, on the same real batch
    /// (fresh latents, noise and input dropouts each time).
    fn step(&mut self, batch: &Slices, rng: &mut ChaCha8Rng, warm: f64) -> Losses {
        let t = self.trainer;
        let (range, ad, classes) = (t.spec().output_range, &self.autodiff, &self.classes);
        let mut discriminator = Vec::new();
        for _ in 0..t.gan.n_dis.max(1) {
            let (real, input) = t.inputs.build(batch, classes, true, None, rng, ad);
            let (fake, _) = self.g.net().forward(&input, range, true);
            let loss = self.d.step(t.train.lr_d * warm, |d| {
                let (on_real, _) = d.forward(real, &input, true);
                let (on_fake, _) = d.forward(fake.detach(), &input, true);
                discriminator_hinge(on_real, on_fake)
            });
            discriminator.push(loss);
        }
        let (real, input) = t.inputs.build(batch, classes, true, None, rng, ad);
        let d = self.d.net();
        let loss = self.g.step(self.lr(warm), |g| {
            let (fake, _) = g.forward(&input, range, true);
            let (on_fake, _) = d.forward(fake.clone(), &input, true);
            let loss = generator_hinge(on_fake);
            // The L1 term of the paired tasks; without a condition there is no reference.
            if t.inputs.conditioning.cond_channels() > 0 && t.gan.l1_weight > 0.0 {
                loss + l1(fake, real, t.gan.l1_weight)
            } else {
                loss
            }
        });
        Losses {
            loss,
            discriminator,
            gammas: Some([self.g.net().gamma(), self.d.net().gamma()]),
        }
    }

    fn weights(&self) -> GanGenerator {
        self.g.net().valid()
    }

    fn validate(&self, weights: &GanGenerator, set: &SliceSet) -> Result<Option<f64>, TrainError> {
        self.trainer.evaluate(weights, set, &self.device)
    }

    fn save(&self, averaged: &GanGenerator, dir: &Path) -> Result<(), String> {
        self.g.save_averaged(averaged, dir)?;
        self.d.save(dir, "discriminator.bpk", "optimizer_d.bpk")
    }

    fn load(&mut self, averaged: GanGenerator, dir: &Path) -> Result<GanGenerator, TrainError> {
        let fresh = || Self::optimizer(self.trainer);
        self.d
            .load(dir, ("discriminator.bpk", "optimizer_d.bpk"), fresh())?;
        self.g.load_averaged(averaged, dir, fresh())
    }

    fn lr(&self, warm: f64) -> f64 {
        self.trainer.train.lr_for(ModelKind::Sagan) * warm
    }

    fn describe(&self, row: &LogRow) -> String {
        format!(
            "G {:.3} D {:.3} {:.2} steps/s",
            row.loss,
            row.d_loss.unwrap_or(f64::NAN),
            row.steps_per_s
        )
    }
}
