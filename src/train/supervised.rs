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

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    CheckpointState, Checkpoints, Ema, LogRow, TrainError, load_optimizer, load_part, optimizer,
    progress_bar, resume_point, save_optimizer, save_part, stream, warmup_lr, write_log,
};
use crate::dataset::{Loader, ManifestRow, SliceSet};
use crate::models::{Unet, UnetSpec, seeded};
use crate::spec::{ModelKind, TrainSection};

/// The parts of a supervised checkpoint folder.
pub const PARTS: [&str; 4] = ["model.bpk", "ema.bpk", "optimizer.bpk", "state.json"];

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
    /// Input and target from slices `[B, C, H, W]` (host values, row-major) described by
    /// `rows`; `train` applies training-time dropouts with `rng`.
    ///
    /// # Shapes
    /// -> (`[B, in_channels, H, W]`, `[B, out_channels, H, W]`)
    fn split(
        &self,
        slices: &[f32],
        dims: [usize; 4],
        rows: &[&ManifestRow],
        train: bool,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<f32>);
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
    fn batch_loss(
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
        let rows: Vec<&ManifestRow> = batch.rows.iter().map(|&r| &set.rows[r]).collect();
        let (input, target) = self.examples.split(&host, dims, &rows, train, rng);
        let [b, _, h, w] = dims;
        let input = Tensor::<4>::from_data(
            TensorData::new(input, [b, self.examples.in_channels(), h, w]),
            &device,
        );
        let target = Tensor::<4>::from_data(
            TensorData::new(target, [b, self.examples.out_channels(), h, w]),
            &device,
        );
        let out = net.forward(input, &vec![0.0; b]).output;
        loss(self.objective, out, target)
    }

    /// Mean loss over a set (no dropout, no gradients).
    pub fn evaluate(&self, net: &Unet, set: &SliceSet, device: &Device) -> Result<f64, TrainError> {
        let loader = Loader::in_order(set, self.train.batch_size as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, u64::MAX));
        let (mut total, mut n) = (0.0, 0.0);
        for batch in loader.epoch(0, device) {
            let batch = batch?;
            let b = batch.rows.len() as f64;
            total += self
                .batch_loss(net, set, &batch, &mut rng, false)
                .into_scalar::<f32>() as f64
                * b;
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
        let ad = device.clone().autodiff();
        let mut net = seeded(&ad, self.seed, |ad| self.spec.init(ad));
        let kind = ModelKind::Diffusion;
        let mut optim = optimizer(&self.train, self.train.betas_for(kind));
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
        let extra = serde_json::json!({
            "unet": self.spec,
            "objective": self.objective,
            "examples": self.examples.fingerprint(),
            "data": usable.digest(),
            "train": super::resumable(&self.train, kind),
        });
        let (mut step, mut last) = (0u64, None);
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
            last = Some(dir);
        }
        let bar = progress_bar(self.progress, total);
        bar.set_position(step);
        let (started, first) = (Instant::now(), step);
        while step < total {
            let (epoch, index) = (step / per_epoch, (step % per_epoch) as usize);
            let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, step));
            let Some(batch) = loader.batch(epoch, index, &ad)? else {
                break;
            };
            let loss = self.batch_loss(&net, &usable, &batch, &mut rng, true);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite {
                    step,
                    loss: value,
                    checkpoint: last,
                });
            }
            let lr = warmup_lr(self.train.lr_for(kind), self.train.warmup_steps, step);
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            ema.update(&net.valid(), step);
            step += 1;
            let rate = (step - first) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let val_loss = match &val {
                Some(v) if step % per_epoch == 0 && !v.is_empty() => {
                    Some(self.evaluate(&ema.model, v, device)?)
                }
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
            if step % self.train.checkpoint_every.max(1) as u64 == 0 || step == total {
                let state = CheckpointState {
                    step,
                    epoch: step / per_epoch.max(1),
                    batch: step % per_epoch.max(1),
                    seed: self.seed,
                    extra: extra.clone(),
                };
                last = Some(self.checkpoints.save(&state, |dir| {
                    save_part(&net, dir, "model.bpk")?;
                    save_part(&ema.model, dir, "ema.bpk")?;
                    save_optimizer(&optim, dir, "optimizer.bpk")
                })?);
                write_log(&self.log, &log).map_err(|e| TrainError::Setup(e.to_string()))?;
            }
        }
        bar.finish();
        Ok((ema.model, last))
    }
}
