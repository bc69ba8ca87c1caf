//! The one training loop. It owns what every network shares: where training resumes (exact,
//! from the newest checkpoint with the same fingerprint), the step's random stream, the
//! learning-rate warm-up, the exponential moving average, `max_steps`, the validation at each
//! epoch's end, the loss log, checkpoints, progress and the non-finite guard. A network
//! ([`Network`]) brings only what differs: its optimizer step, its validation, the parts it
//! checkpoints.
//!
//! Losses stay on the device until they are read: every [`READBACK`] steps, at the end of an
//! epoch and before every checkpoint, all of them in one transfer. On the CPU this changes
//! nothing; on a GPU a step no longer waits for the device. The non-finite guard checks them
//! then: the first non-finite loss stops training and names its step, and since a checkpoint is
//! written only after its steps' losses were read and found finite, the last checkpoint is
//! always a good one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    CheckpointState, Checkpoints, Ema, LogRow, TrainError, load_optimizer, load_part, progress_bar,
    read_log, resume_point, save_optimizer, save_part, stream, warmup_lr, write_log,
};
use crate::dataset::{Loader, SliceSet, Slices};
use crate::spec::TrainSection;

/// Steps between reading the losses back from the device.
pub const READBACK: u64 = 16;

/// What one optimizer step reports, still on the device.
#[derive(Debug, Clone)]
pub struct Losses {
    /// The loss the step minimized (the generator's, for a GAN).
    pub loss: Tensor<1>,
    /// A GAN's discriminator losses (one per discriminator step; the log keeps their mean).
    pub discriminator: Vec<Tensor<1>>,
    /// A GAN's attention gammas, generator and discriminator.
    pub gammas: Option<[Tensor<1>; 2]>,
}

impl Losses {
    /// One loss and nothing else.
    pub fn one(loss: Tensor<1>) -> Self {
        Losses {
            loss,
            discriminator: Vec::new(),
            gammas: None,
        }
    }

    /// The scalars in the order [`read_back`] reads them: discriminator, loss, gammas.
    fn scalars(&self) -> impl Iterator<Item = Tensor<1>> + '_ {
        self.discriminator
            .iter()
            .chain(std::iter::once(&self.loss))
            .chain(self.gammas.iter().flatten())
            .cloned()
    }
}

/// A network as the training loop sees it.
pub trait Network {
    /// The weights the moving average keeps and training returns (the network without
    /// gradients).
    type Weights: Module + Clone;

    /// One optimizer step on `batch` (the discriminator's steps first, for a GAN), with every
    /// random draw from `rng` and the learning rates scaled by the warm-up factor `warm`.
    fn step(&mut self, batch: &Slices, rng: &mut ChaCha8Rng, warm: f64) -> Losses;

    /// The network's weights now, to average.
    fn weights(&self) -> Self::Weights;

    /// The loss on a validation set with the averaged weights (`None` where the network has no
    /// reference to score against).
    fn validate(&self, weights: &Self::Weights, set: &SliceSet) -> Result<Option<f64>, TrainError>;

    /// Writes the network, the averaged weights and the optimizer states into `dir`.
    fn save(&self, averaged: &Self::Weights, dir: &Path) -> Result<(), String>;

    /// Reads what [`Network::save`] wrote; returns the averaged weights.
    fn load(&mut self, averaged: Self::Weights, dir: &Path) -> Result<Self::Weights, TrainError>;

    /// The learning rate the log records at warm-up factor `warm`.
    fn lr(&self, warm: f64) -> f64;

    /// The progress bar's text for a logged step.
    fn describe(&self, row: &LogRow) -> String {
        format!("loss {:.4} {:.2} steps/s", row.loss, row.steps_per_s)
    }
}

/// How long and where to train, shared by every network.
#[derive(Debug, Clone, Copy)]
pub struct Engine<'a> {
    pub train: &'a TrainSection,
    pub seed: u64,
    pub checkpoints: &'a Checkpoints,
    /// Where the loss log (parquet) goes.
    pub log: &'a Path,
    /// Stop after this many optimizer steps in this call.
    pub max_steps: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What training returns.
#[derive(Debug, Clone)]
pub struct Fitted<W> {
    /// The averaged weights.
    pub averaged: W,
    pub log: Vec<LogRow>,
    pub last_checkpoint: Option<PathBuf>,
}

impl<'a> Engine<'a> {
    /// Training as `train` asks, seeded by `seed`, checkpointing into `checkpoints` and
    /// logging losses to `log`; `max_steps` stops this call early, `progress` shows a bar.
    pub fn new(
        train: &'a TrainSection,
        seed: u64,
        (checkpoints, log): (&'a Checkpoints, &'a Path),
        max_steps: Option<u64>,
        progress: bool,
    ) -> Self {
        Engine {
            train,
            seed,
            checkpoints,
            log,
            max_steps,
            progress,
        }
    }
}

/// A network with gradients and its optimizer, as a [`Network`] holds each of its parts.
pub struct Optimized<M> {
    /// Held between steps; taken by the optimizer during one.
    net: Option<M>,
    optim: ModuleOptimizer,
}

const HELD: &str = "the network is held between steps";

impl<M: Module> Optimized<M> {
    pub fn new(net: M, optim: ModuleOptimizer) -> Self {
        Optimized {
            net: Some(net),
            optim,
        }
    }

    /// The network (with gradients).
    pub fn net(&self) -> &M {
        self.net.as_ref().expect(HELD)
    }

    /// One optimizer step at `lr` on `loss(network)`; returns the loss, detached.
    pub fn step(&mut self, lr: f64, loss: impl FnOnce(&M) -> Tensor<1>) -> Tensor<1> {
        let net = self.net.take().expect(HELD);
        let value = loss(&net);
        let grads = GradientsParams::from_grads(value.backward(), &net);
        self.net = Some(self.optim.step(lr, net, grads));
        value.detach()
    }

    /// Writes the network (`valid()`, which syncs running states such as power-iteration
    /// vectors and batch-norm statistics) as the part `model` and the optimizer as `optim`.
    pub fn save(&self, dir: &Path, model: &str, optim: &str) -> Result<(), String> {
        save_part(&self.net().valid(), dir, model)?;
        save_optimizer(&self.optim, dir, optim)
    }

    /// Writes the network, its moving average `averaged` and the optimizer as the parts
    /// `model.bpk`, `ema.bpk` and `optimizer.bpk`.
    pub fn save_averaged(&self, averaged: &M, dir: &Path) -> Result<(), String> {
        save_part(averaged, dir, "ema.bpk")?;
        self.save(dir, "model.bpk", "optimizer.bpk")
    }

    /// Reads what [`Optimized::save_averaged`] wrote; returns the moving average.
    pub fn load_averaged(
        &mut self,
        averaged: M,
        dir: &Path,
        fresh: ModuleOptimizer,
    ) -> Result<M, TrainError> {
        self.load(dir, ("model.bpk", "optimizer.bpk"), fresh)?;
        load_part(averaged, dir, "ema.bpk")
    }

    /// Reads what [`Optimized::save`] wrote; `fresh` is a new optimizer to load state into.
    pub fn load(
        &mut self,
        dir: &Path,
        (model, optim): (&str, &str),
        fresh: ModuleOptimizer,
    ) -> Result<(), TrainError> {
        self.net = Some(load_part(self.net().clone(), dir, model)?);
        self.optim = load_optimizer(fresh, dir, optim)?;
        Ok(())
    }
}

/// A step whose losses have not been read yet.
struct Pending {
    row: LogRow,
    losses: Losses,
}

impl Engine<'_> {
    /// Trains `net` on `set` (the rows it can learn from), validating on `val` at each epoch's
    /// end; resumes from the newest checkpoint whose fingerprint is `fingerprint` and whose
    /// seed is this one.
    pub fn fit<N: Network>(
        &self,
        net: &mut N,
        set: &SliceSet,
        val: Option<&SliceSet>,
        fingerprint: serde_json::Value,
    ) -> Result<Fitted<N::Weights>, TrainError> {
        let mut ema = Ema::new(net.weights(), self.train.ema);
        let mut log = read_log(self.log).map_err(|e| TrainError::Setup(e.to_string()))?;
        let loader = Loader::new(
            set,
            self.train.batch_size as usize,
            self.train.augment.clone(),
            self.seed,
        );
        let per_epoch = (loader.batches() as u64).max(1);
        let total = per_epoch * self.train.epochs as u64;
        let total = self
            .train
            .max_steps
            .map_or(total, |m| total.min(u64::from(m)));
        let (mut step, mut last) = (0u64, None);
        let resumed = resume_point(self.checkpoints, self.log, self.seed, &fingerprint)?;
        if resumed.is_none() {
            log.clear();
        }
        if let Some((dir, state)) = resumed {
            ema.model = net.load(ema.model.clone(), &dir)?;
            step = state.step;
            log.retain(|r| r.step <= step);
            tracing::info!(checkpoint = %dir.display(), step, "resuming training");
            last = Some(dir);
        }
        let bar = progress_bar(self.progress, total);
        bar.set_position(step);
        let stop = self.max_steps.map_or(total, |m| (step + m).min(total));
        let (started, first) = (Instant::now(), step);
        let mut pending: Vec<Pending> = Vec::new();
        while step < stop {
            let (epoch, index) = (step / per_epoch, (step % per_epoch) as usize);
            let mut rng = ChaCha8Rng::seed_from_u64(stream(self.seed, step));
            let Some(batch) = loader.batch(epoch, index)? else {
                break;
            };
            let warm = warmup_lr(1.0, self.train.warmup_steps, step);
            let losses = net.step(&batch.slices(set), &mut rng, warm);
            ema.update(&net.weights(), step);
            step += 1;
            let end_of_epoch = step % per_epoch == 0;
            let val_loss = match val {
                Some(v) if end_of_epoch && !v.is_empty() => net.validate(&ema.model, v)?,
                _ => None,
            };
            pending.push(Pending {
                row: LogRow {
                    step,
                    epoch,
                    loss: f64::NAN,
                    val_loss,
                    lr: net.lr(warm),
                    steps_per_s: (step - first) as f64 / started.elapsed().as_secs_f64().max(1e-9),
                    d_loss: None,
                    gamma_g: None,
                    gamma_d: None,
                },
                losses,
            });
            let checkpoint = step % self.train.checkpoint_every.max(1) as u64 == 0 || step == stop;
            if checkpoint || end_of_epoch || step % READBACK == 0 {
                if let Err(e) = read_back(&mut pending, &mut log, &last) {
                    bar.abandon();
                    return Err(e);
                }
                if let Some(row) = log.last() {
                    bar.set_position(step);
                    bar.set_message(net.describe(row));
                }
            }
            if checkpoint {
                let state = CheckpointState {
                    step,
                    epoch: step / per_epoch,
                    batch: step % per_epoch,
                    seed: self.seed,
                    extra: fingerprint.clone(),
                };
                last = Some(
                    self.checkpoints
                        .save(&state, |dir| net.save(&ema.model, dir))?,
                );
                write_log(self.log, &log).map_err(|e| TrainError::Setup(e.to_string()))?;
            }
        }
        bar.finish();
        Ok(Fitted {
            averaged: ema.model,
            log,
            last_checkpoint: last,
        })
    }
}

/// Reads the pending steps' losses in one transfer into their log rows and moves the rows to
/// `log`; a non-finite loss is an error naming its step and the last (good) checkpoint.
fn read_back(
    pending: &mut Vec<Pending>,
    log: &mut Vec<LogRow>,
    last: &Option<PathBuf>,
) -> Result<(), TrainError> {
    if pending.is_empty() {
        return Ok(());
    }
    let scalars: Vec<Tensor<1>> = pending.iter().flat_map(|p| p.losses.scalars()).collect();
    let values: Vec<f32> = Tensor::cat(scalars, 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Setup(format!("reading the losses back: {e:?}")))?;
    let mut values = values.into_iter().map(f64::from);
    for p in pending.drain(..) {
        let mut row = p.row;
        let n_dis = p.losses.discriminator.len();
        let d: Vec<f64> = values.by_ref().take(n_dis).collect();
        row.loss = values.next().unwrap_or(f64::NAN);
        if n_dis > 0 {
            row.d_loss = Some(d.iter().sum::<f64>() / n_dis as f64);
        }
        if p.losses.gammas.is_some() {
            row.gamma_g = values.next();
            row.gamma_d = values.next();
        }
        // The discriminator steps came first.
        if let Some(&loss) = d.iter().chain([&row.loss]).find(|l| !l.is_finite()) {
            return Err(TrainError::NonFinite {
                step: row.step - 1,
                loss,
                checkpoint: last.clone(),
            });
        }
        log.push(row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Device;

    use super::*;
    use crate::dataset::ManifestRow;

    /// A stand-in network whose loss is 1 / (step + 1) until step `nan_at`, where it is NaN.
    #[derive(Module, Debug)]
    struct Scalar {
        w: Param<Tensor<1>>,
    }

    struct Countdown {
        weights: Scalar,
        steps: u64,
        nan_at: u64,
    }

    impl Network for Countdown {
        type Weights = Scalar;

        fn step(&mut self, _: &Slices, _: &mut ChaCha8Rng, _: f64) -> Losses {
            let loss = if self.steps == self.nan_at {
                f32::NAN
            } else {
                1.0 / (self.steps + 1) as f32
            };
            self.steps += 1;
            Losses::one(Tensor::from_floats([loss], &Device::flex()))
        }

        fn weights(&self) -> Scalar {
            self.weights.clone()
        }

        fn validate(&self, _: &Scalar, _: &SliceSet) -> Result<Option<f64>, TrainError> {
            Ok(None)
        }

        fn save(&self, _: &Scalar, dir: &Path) -> Result<(), String> {
            std::fs::write(dir.join("steps"), self.steps.to_string()).map_err(|e| e.to_string())
        }

        fn load(&mut self, averaged: Scalar, _: &Path) -> Result<Scalar, TrainError> {
            Ok(averaged)
        }

        fn lr(&self, warm: f64) -> f64 {
            warm
        }
    }

    fn slices(n: usize) -> SliceSet {
        let rows = (0..n)
            .map(|i| ManifestRow {
                subject: format!("sub-{i}"),
                split: "train".into(),
                axis: "axial".into(),
                slice_index: i as u32,
                world_position_mm: 0.0,
                shard: String::new(),
                row: i as u32,
                channels_real: "t1".into(),
                channels_missing: String::new(),
                source_sha256: String::new(),
                record: String::new(),
            })
            .collect();
        SliceSet::from_memory(
            vec!["t1".into()],
            ndarray::Array4::zeros((n, 1, 2, 2)),
            rows,
        )
    }

    /// The losses are read back in groups, yet a NaN is reported at the step it appeared, the
    /// log keeps every step before it, and no checkpoint is written after it.
    #[test]
    fn a_non_finite_loss_read_back_later_names_its_step_and_keeps_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let train = TrainSection {
            epochs: 100,
            batch_size: 1,
            checkpoint_every: 10,
            ..TrainSection::default()
        };
        let checkpoints = Checkpoints::new(dir.path().join("checkpoints"));
        let log = dir.path().join("train_log.parquet");
        let engine = Engine {
            train: &train,
            seed: 3,
            checkpoints: &checkpoints,
            log: &log,
            max_steps: None,
            progress: false,
        };
        // Past the checkpoint of step 20, and read back with the next one (step 30).
        let nan_at = 22;
        let mut net = Countdown {
            weights: Scalar {
                w: Param::from_tensor(Tensor::zeros([1], &Device::flex())),
            },
            steps: 0,
            nan_at,
        };
        let set = slices(100);
        let err = engine
            .fit(&mut net, &set, None, serde_json::json!({}))
            .unwrap_err();
        let TrainError::NonFinite {
            step, checkpoint, ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(*step, nan_at);
        assert_eq!(
            checkpoint.as_ref().and_then(|p| p.file_name()),
            Some(std::ffi::OsStr::new("step-00000020"))
        );
        let newest = checkpoints.latest().unwrap().unwrap().0;
        assert_eq!(newest, dir.path().join("checkpoints/step-00000020"));
        assert_eq!(std::fs::read_to_string(newest.join("steps")).unwrap(), "20");
        let logged = read_log(&log).unwrap();
        assert_eq!(logged.len(), 20);
        assert_eq!(logged[19].loss, f64::from(1.0f32 / 20.0));
        assert!(err.to_string().contains("the loss became NaN at step 22"));
    }
}
