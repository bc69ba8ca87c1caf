//! What a generator is given and what it must produce, for training and for applying it alike:
//! which store channels are targets, which are inputs (each with its availability mask) and
//! whether the one-hot label map conditions it ([`Conditioning`]); the GAN's inputs on top of
//! that ([`GanInputs`]) and its slice-position classes ([`SliceClasses`]).
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
//! The host values of a batch are split here, where they already are, and each tensor is
//! uploaded once.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{ManifestRow, SliceSet, Slices};
use crate::models::diffusion::gaussian;
use crate::models::gan::{GanArch, GanInput, GanSpec, latents, one_hot};
use crate::preprocess::LABEL;
use crate::spec::{ModelSection, Task};

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

/// A batch split for a network: the targets and the condition, each on the device.
#[derive(Debug, Clone)]
pub struct Conditioned {
    /// # Shapes
    /// `[B, targets, H, W]`
    pub target: Tensor<4>,
    /// `None` for unconditional models.
    ///
    /// # Shapes
    /// `[B, cond_channels, H, W]`
    pub cond: Option<Tensor<4>>,
}

fn channel(channels: &[String], name: &str, field: &str) -> Result<usize, String> {
    channels.iter().position(|c| c == name).ok_or_else(|| {
        format!(
            "{field}: the slice store has no channel {name:?} (it has {})",
            channels.join(", ")
        )
    })
}

/// The number of label classes in `set`'s label channel `c`: its largest value plus one, at
/// least 2.
pub fn label_classes(set: &SliceSet, c: usize) -> Result<usize, crate::dataset::StoreError> {
    let mut max = 0f32;
    for i in 0..set.len() {
        let plane = set.plane(i, c)?;
        max = plane.iter().fold(max, |a, &b| a.max(b));
    }
    Ok((max.round() as usize + 1).max(2))
}

impl Conditioning {
    /// Resolves `model`'s modalities against the store's `channels`; `label_classes` is the
    /// class count of `label-to-image` (what training found, or what a checkpoint recorded).
    pub fn resolve(
        model: &ModelSection,
        channels: &[String],
        label_classes: Option<usize>,
    ) -> Result<Self, String> {
        let targets = model
            .target
            .iter()
            .map(|m| Ok((m.to_owned(), channel(channels, m, "model.target")?)))
            .collect::<Result<Vec<_>, String>>()?;
        let inputs = if model.task.uses_inputs() {
            model
                .inputs
                .iter()
                .map(|m| Ok((m.clone(), channel(channels, m, "model.inputs")?)))
                .collect::<Result<Vec<_>, String>>()?
        } else {
            Vec::new()
        };
        let label = if model.task == Task::LabelToImage {
            let c = channel(channels, LABEL, "model.task = \"label-to-image\"")?;
            Some((c, label_classes.unwrap_or(2).max(2)))
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

    /// Resolves `model`'s modalities against `set`'s channels, counting the label classes in
    /// its label maps (`label-to-image`).
    pub fn new(model: &ModelSection, set: &SliceSet) -> Result<Self, String> {
        let classes = if model.task == Task::LabelToImage {
            let c = channel(&set.channels, LABEL, "model.task = \"label-to-image\"")?;
            Some(label_classes(set, c).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Self::resolve(model, &set.channels, classes)
    }

    /// Channels of the condition.
    pub fn cond_channels(&self) -> usize {
        2 * self.inputs.len() + self.label.map_or(0, |(_, k)| k)
    }

    /// Channels the network takes: the noisy targets, then the condition.
    pub fn in_channels(&self) -> usize {
        self.targets.len() + self.cond_channels()
    }

    /// The targets and the condition of `slices` as host values. `dropout` applies the
    /// training-time dropouts with draws from it; without it nothing is drawn or dropped.
    ///
    /// # Shapes
    /// -> (`[B, targets, H, W]`, `[B, cond_channels, H, W]`)
    pub fn split(
        &self,
        slices: &Slices,
        mut dropout: Option<&mut ChaCha8Rng>,
    ) -> (Vec<f32>, Vec<f32>) {
        let [b, _, h, w] = slices.dims;
        let plane = h * w;
        let mut x0 = Vec::with_capacity(b * self.targets.len() * plane);
        let mut cond = Vec::with_capacity(b * self.cond_channels() * plane);
        for n in 0..b {
            for (_, ch) in &self.targets {
                x0.extend_from_slice(slices.plane(n, *ch));
            }
            // Draw every decision, used or not, so the stream does not depend on the data.
            let (drop_all, drops) = match dropout.as_deref_mut() {
                Some(rng) => {
                    let all = rng.random::<f64>() < self.cond_dropout;
                    let each: Vec<bool> = self
                        .inputs
                        .iter()
                        .map(|_| rng.random::<f64>() < self.modality_dropout)
                        .collect();
                    (all, each)
                }
                None => (false, vec![false; self.inputs.len()]),
            };
            let available = self.available(slices.rows[n]);
            for (i, (_, ch)) in self.inputs.iter().enumerate() {
                let on = available[i] && !(drop_all || drops[i]);
                if on {
                    cond.extend_from_slice(slices.plane(n, *ch));
                } else {
                    cond.extend(std::iter::repeat_n(0.0, plane));
                }
                cond.extend(std::iter::repeat_n(if on { 1.0 } else { 0.0 }, plane));
            }
            if let Some((ch, k)) = self.label {
                let labels = slices.plane(n, ch);
                for class in 0..k {
                    cond.extend(labels.iter().map(|&l| {
                        if !drop_all && l.round() as usize == class {
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

    /// The targets and the condition of `slices` on `device`, each uploaded once; `dropout` as
    /// in [`Conditioning::split`].
    pub fn tensors(
        &self,
        slices: &Slices,
        dropout: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Conditioned {
        let [b, _, h, w] = slices.dims;
        let (x0, cond) = self.split(slices, dropout);
        let k = self.cond_channels();
        Conditioned {
            target: Tensor::from_data(TensorData::new(x0, [b, self.targets.len(), h, w]), device),
            cond: (k > 0).then(|| Tensor::from_data(TensorData::new(cond, [b, k, h, w]), device)),
        }
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

    /// Whether each input modality is real in a stored slice.
    pub fn available(&self, row: &ManifestRow) -> Vec<bool> {
        let missing: Vec<&str> = row.channels_missing.split(',').collect();
        self.inputs
            .iter()
            .map(|(m, _)| !missing.contains(&m.as_str()))
            .collect()
    }

    /// The rows of `set` that can train the model; an error when there are none.
    pub fn usable(&self, set: &SliceSet) -> Result<SliceSet, String> {
        let usable = set.filter(|r| self.trains_on(r));
        if usable.is_empty() {
            return Err(format!(
                "no training slice has every target ({}) present",
                self.targets
                    .iter()
                    .map(|(m, _)| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(usable)
    }

    /// Whether a row can train the model: every target is real there.
    pub fn trains_on(&self, row: &ManifestRow) -> bool {
        let missing: Vec<&str> = row.channels_missing.split(',').collect();
        self.targets
            .iter()
            .all(|(m, _)| !missing.contains(&m.as_str()))
    }
}

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

/// Builds the GAN generator's and discriminator's inputs for stored slices.
#[derive(Debug, Clone)]
pub struct GanInputs {
    pub spec: GanSpec,
    pub conditioning: Conditioning,
}

impl GanInputs {
    /// The real targets `[B, targets, H, W]` and the networks' inputs for `slices`: the
    /// condition (with the dropouts when `train`), then the noise image and latents drawn from
    /// `rng`. Latents are truncated at `truncation` when given.
    pub fn build(
        &self,
        slices: &Slices,
        classes: &SliceClasses,
        train: bool,
        truncation: Option<f64>,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> (Tensor<4>, GanInput) {
        let [b, _, h, w] = slices.dims;
        let Conditioned { target, cond } =
            self.conditioning
                .tensors(slices, train.then_some(&mut *rng), device);
        let mut input = GanInput {
            cond,
            ..GanInput::default()
        };
        if self.spec.noise_channels > 0 {
            input.noise = Some(gaussian([b, self.spec.noise_channels, h, w], rng, device));
        }
        if self.spec.arch == GanArch::Noise {
            input.z = Some(latents(b, self.spec.z_dim, truncation, rng, device));
            if self.spec.classes > 0 {
                let c: Vec<usize> = slices.rows.iter().map(|r| classes.class(r)).collect();
                input.classes = Some(one_hot(&c, self.spec.classes, device));
            }
        }
        (target, input)
    }
}
