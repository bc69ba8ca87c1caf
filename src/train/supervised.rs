//! Training the attention UNet as a deterministic network on the slice store: one forward
//! pass per image (time step 0), no noise. Two objectives use it:
//! - [`Objective::L1`]: image regression, the `baseline-unet` every synthesis paper compares
//!   a generative model against (same backbone, slices, epochs and optimizer as the model);
//! - [`Objective::DiceCe`]: segmentation, softmax over classes with cross-entropy plus soft
//!   Dice over the foreground classes computed over the batch (nnU-Net's default loss), for
//!   the evaluate stage's downstream segmentation.
//!
//! What goes in and what comes out is the [`Examples`] implementation's business; the loop
//! (checkpoints that resume exactly, EMA, warm-up, the loss log, the non-finite guard) is the
//! shared training infrastructure's.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use super::engine::{Engine, Losses, Network, Optimized};
use super::{Checkpoints, TrainError, optimizer};
use crate::dataset::{Loader, ManifestRow, SliceSet, Slices};
use crate::models::{Unet, UnetSpec, seeded};
use crate::spec::TrainSection;

/// The parts of a supervised checkpoint folder.
pub const PARTS: [&str; 4] = super::PARTS;

/// What the network is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Mean absolute error against the target images.
    L1,
    /// Cross-entropy plus (1 - soft Dice over the foreground classes); the targets are
    /// one-hot class maps.
    DiceCe,
}

/// The pairs a supervised network learns from, made from stored slices.
pub trait Examples {
    /// Channels of the network's input.
    fn in_channels(&self) -> usize;
    /// Channels of the network's output (and of the target).
    fn out_channels(&self) -> usize;
    /// Whether a stored slice can be learnt from.
    fn usable(&self, row: &ManifestRow) -> bool;
    /// Input and target (host values) from stored slices; `dropout` applies training-time
    /// dropouts with draws from it.
    ///
    /// # Shapes
    /// -> (`[B, in_channels, H, W]`, `[B, out_channels, H, W]`)
    fn split(&self, slices: &Slices, dropout: Option<&mut ChaCha8Rng>) -> (Vec<f32>, Vec<f32>);
    /// The settings a resumed run must keep.
    fn fingerprint(&self) -> serde_json::Value;
}

/// Everything a supervised training run needs.
pub struct SupervisedTrainer<'a> {
    pub spec: UnetSpec,
    pub objective: Objective,
    pub examples: &'a dyn Examples,
    pub train: TrainSection,
    pub seed: u64,
    pub checkpoints: Checkpoints,
    /// Where the loss log (parquet) goes.
    pub log: PathBuf,
    /// Stop after this many optimizer steps in this call.
    pub max_steps: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// The loss of network outputs `out` against `target`, both `[B, K, H, W]`.
pub fn loss(objective: Objective, out: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    match objective {
        Objective::L1 => (out - target).abs().mean(),
        Objective::DiceCe => {
            let k = out.dims()[1];
            let ce = (log_softmax(out.clone(), 1) * target.clone())
                .sum_dim(1)
                .mean()
                .neg();
            if k < 2 {
                return ce;
            }
            let p = softmax(out, 1).narrow(1, 1, k - 1);
            let g = target.narrow(1, 1, k - 1);
            let inter = (p.clone() * g.clone()).sum_dims(&[0, 2, 3]);
            let denom = p.sum_dims(&[0, 2, 3]) + g.sum_dims(&[0, 2, 3]);
            let smooth = 1e-5;
            let dice = (inter * 2.0 + smooth) / (denom + smooth);
            ce + (dice.mean().neg() + 1.0)
        }
    }
}

impl SupervisedTrainer<'_> {
    /// The loss of one batch, its inputs and targets uploaded once.
    fn batch_loss(
        &self,
        net: &Unet,
        slices: &Slices,
        dropout: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Tensor<1> {
        let (input, target) = self.examples.split(slices, dropout);
        let [b, _, h, w] = slices.dims;
        let upload = |values, channels| {
            Tensor::<4>::from_data(TensorData::new(values, [b, channels, h, w]), device)
        };
        let input = upload(input, self.examples.in_channels());
        let target = upload(target, self.examples.out_channels());
        let out = net.forward(input, &vec![0.0; b]).output;
        loss(self.objective, out, target)
    }

    /// Mean loss over a set (no dropout, no gradients).
    pub fn evaluate(&self, net: &Unet, set: &SliceSet, device: &Device) -> Result<f64, TrainError> {
        let loader = Loader::in_order(set, self.train.batch_size as usize);
        let (mut total, mut n) = (0.0, 0.0);
        for batch in loader.epoch(0) {
            let batch = batch?;
            let b = batch.rows.len() as f64;
            let loss = self.batch_loss(net, &batch.slices(set), None, device);
            total += loss.into_scalar::<f32>() as f64 * b;
            n += b;
        }
        Ok(if n > 0.0 { total / n } else { f64::NAN })
    }

    /// Trains on the usable rows of `set`, validating on `val` after each epoch; resumes from
    /// the newest checkpoint when there is one. Returns the EMA network and the checkpoint.
    pub fn run(
        &self,
        set: &SliceSet,
        val: Option<&SliceSet>,
        device: &Device,
    ) -> Result<(Unet, Option<PathBuf>), TrainError> {
        let usable = set.filter(|r| self.examples.usable(r));
        if usable.is_empty() {
            return Err(TrainError::Setup(
                "no training slice has what this network learns from".into(),
            ));
        }
        let val = val.map(|v| v.filter(|r| self.examples.usable(r)));
        let engine = Engine::new(
            &self.train,
            self.seed,
            (&self.checkpoints, &self.log),
            self.max_steps,
            self.progress,
        );
        let mut net = Supervised::new(self, device);
        let fitted = engine.fit(&mut net, &usable, val.as_ref(), self.fingerprint(&usable))?;
        Ok((fitted.averaged, fitted.last_checkpoint))
    }

    /// What a checkpoint records and a resumed run must share: the network, the objective,
    /// the examples, the training slices and `[train]`.
    fn fingerprint(&self, usable: &SliceSet) -> serde_json::Value {
        serde_json::json!({
            "unet": self.spec,
            "objective": self.objective,
            "examples": self.examples.fingerprint(),
            "data": usable.digest(),
            "train": super::resumable(
                &self.train,
                self.train.supervised_lr(),
                self.train.supervised_betas(),
            ),
        })
    }
}

/// A supervised UNet in training, with its optimizer.
struct Supervised<'a, 'b> {
    trainer: &'a SupervisedTrainer<'b>,
    unet: Optimized<Unet>,
    device: Device,
    autodiff: Device,
}

impl<'a, 'b> Supervised<'a, 'b> {
    fn new(trainer: &'a SupervisedTrainer<'b>, device: &Device) -> Self {
        let autodiff = device.clone().autodiff();
        let net = seeded(&autodiff, trainer.seed, |ad| trainer.spec.init(ad));
        Supervised {
            trainer,
            unet: Optimized::new(net, Self::optimizer(trainer)),
            device: device.clone(),
            autodiff,
        }
    }

    fn optimizer(trainer: &SupervisedTrainer) -> ModuleOptimizer {
        optimizer(&trainer.train, trainer.train.supervised_betas())
    }
}

impl Network for Supervised<'_, '_> {
    type Weights = Unet;

    fn step(&mut self, batch: &Slices, rng: &mut ChaCha8Rng, warm: f64) -> Losses {
        let (trainer, autodiff) = (self.trainer, &self.autodiff);
        let loss = self.unet.step(self.lr(warm), |net| {
            trainer.batch_loss(net, batch, Some(rng), autodiff)
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
        self.trainer.train.supervised_lr() * warm
    }
}
