//! Training a conditional diffusion model on the slice store: the network's step for the
//! training loop ([`super::engine`]); how it is conditioned is [`crate::conditioning`]'s.
//!
//! Every random draw of optimizer step `s` (time steps, noise, dropouts) comes from ChaCha8
//! seeded by (seed, s), and batches from the loader's (seed, epoch, position) streams, so a
//! run resumed from a checkpoint continues exactly as the uninterrupted run would.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::engine::{Engine, Losses, Network, Optimized};
use super::{Checkpoints, LogRow, TrainError, optimizer, resumable, stream};
use crate::conditioning::{Conditioned, Conditioning};
use crate::dataset::{Loader, SliceSet, Slices};
use crate::models::diffusion::{NoiseSchedule, gaussian};
use crate::models::{Unet, UnetSpec, seeded};
use crate::spec::{ModelKind, TrainSection};

/// The parts of a diffusion checkpoint folder.
pub const PARTS: [&str; 4] = super::PARTS;

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
    /// The loss of one batch: MSE between the network output and the target (ε or v). With
    /// `train` the dropouts draw from `rng` first; time steps and noise always do.
    fn loss(
        &self,
        net: &Unet,
        slices: &Slices,
        rng: &mut ChaCha8Rng,
        train: bool,
        device: &Device,
    ) -> Tensor<1> {
        let Conditioned { target: x0, cond } =
            self.conditioning
                .tensors(slices, train.then_some(&mut *rng), device);
        let b = slices.len();
        let t: Vec<usize> = (0..b)
            .map(|_| rng.random_range(0..self.schedule.len()))
            .collect();
        let noise = gaussian(x0.dims(), rng, device);
        let x_t = self.schedule.q_sample(x0.clone(), noise.clone(), &t);
        let input = match cond {
            Some(cond) => Tensor::cat(vec![x_t, cond], 1),
            None => x_t,
        };
        let times: Vec<f32> = t.iter().map(|&t| t as f32).collect();
        let out = net.forward(input, &times).output;
        let target = self.schedule.target(x0, noise, &t);
        (out - target).powf_scalar(2.0).mean()
    }

    /// Mean loss over a set (no dropout, no gradients), with draws from a fixed stream.
    pub fn evaluate(&self, net: &Unet, set: &SliceSet, device: &Device) -> Result<f64, TrainError> {
        let loader = Loader::in_order(set, self.train.batch_size as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, u64::MAX));
        let (mut total, mut n) = (0.0, 0.0);
        for batch in loader.epoch(0) {
            let batch = batch?;
            let b = batch.rows.len() as f64;
            let loss = self.loss(net, &batch.slices(set), &mut rng, false, device);
            total += loss.into_scalar::<f32>() as f64 * b;
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
        let usable = self.conditioning.usable(set).map_err(TrainError::Setup)?;
        let fingerprint = serde_json::json!({
            "unet": self.spec,
            "label_classes": self.conditioning.label.map(|(_, k)| k),
            "conditioning": self.conditioning.fingerprint(),
            "schedule": self.schedule.fingerprint(),
            "data": usable.digest(),
            "train": resumable(
                &self.train,
                self.train.lr_for(ModelKind::Diffusion),
                self.train.betas_for(ModelKind::Diffusion),
            ),
        });
        let mut net = Diffusion::new(self, device);
        let fitted = self.engine().fit(&mut net, &usable, val, fingerprint)?;
        Ok(Trained {
            model: net.weights(),
            ema: fitted.averaged,
            log: fitted.log,
            last_checkpoint: fitted.last_checkpoint,
        })
    }

    fn engine(&self) -> Engine<'_> {
        Engine::new(
            &self.train,
            self.seed,
            (&self.checkpoints, &self.log),
            self.max_steps,
            self.progress,
        )
    }
}

/// The diffusion network in training: the UNet with gradients and its optimizer.
struct Diffusion<'a> {
    trainer: &'a DiffusionTrainer,
    unet: Optimized<Unet>,
    device: Device,
    autodiff: Device,
}

impl<'a> Diffusion<'a> {
    fn new(trainer: &'a DiffusionTrainer, device: &Device) -> Self {
        let autodiff = device.clone().autodiff();
        let net = seeded(&autodiff, trainer.seed, |ad| trainer.spec.init(ad));
        Diffusion {
            trainer,
            unet: Optimized::new(net, Self::optimizer(trainer)),
            device: device.clone(),
            autodiff,
        }
    }

    fn optimizer(trainer: &DiffusionTrainer) -> ModuleOptimizer {
        optimizer(
            &trainer.train,
            trainer.train.betas_for(ModelKind::Diffusion),
        )
    }
}

impl Network for Diffusion<'_> {
    type Weights = Unet;

    fn step(&mut self, batch: &Slices, rng: &mut ChaCha8Rng, warm: f64) -> Losses {
        let (trainer, autodiff) = (self.trainer, &self.autodiff);
        let loss = self.unet.step(self.lr(warm), |net| {
            trainer.loss(net, batch, rng, true, autodiff)
        });
        Losses::one(loss)
    }

    fn weights(&self) -> Unet {
        self.unet.net().valid()
    }

    fn validate(&self, weights: &Unet, set: &SliceSet) -> Result<Option<f64>, TrainError> {
        self.trainer.evaluate(weights, set, &self.device).map(Some)
    }

    fn save(&self, averaged: &Unet, dir: &Path) -> Result<(), String> {
        self.unet.save_averaged(averaged, dir)
    }

    fn load(&mut self, averaged: Unet, dir: &Path) -> Result<Unet, TrainError> {
        let fresh = Self::optimizer(self.trainer);
        self.unet.load_averaged(averaged, dir, fresh)
    }

    fn lr(&self, warm: f64) -> f64 {
        self.trainer.train.lr_for(ModelKind::Diffusion) * warm
    }
}
