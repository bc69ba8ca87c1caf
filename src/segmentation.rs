//! Downstream segmentation, the use synthesis serves: a 2-D UNet (the model's backbone
//! without attention) trained on real slices with every modality, softmax over the label
//! classes, Dice + cross-entropy; then Dice per label region of its prediction against the
//! subject's label on the original grid.
//!
//! Regions: the BraTS ones when the labels are BraTS's (1 necrosis, 2 oedema, 3 or 4
//! enhancing): `whole-tumour` (every label), `tumour-core` (necrosis and enhancing) and
//! `enhancing`; otherwise one region per label, `label-K`. A region the subject's reference
//! label does not have gives no score (as the image metrics give no `tumour` row for a
//! subject without tumour), so Dice is averaged over the subjects that have the region.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array4, ArrayViewD};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{ManifestRow, SliceSet, Slices};
use crate::models::{Unet, UnetSpec};
use crate::preprocess::LABEL;
use crate::spec::{ModelSection, TrainSection};
use crate::train::supervised::{Examples, Objective, SupervisedTrainer};
use crate::train::{Checkpoints, TrainError};

/// Modality channels -> one-hot label.
pub struct Segmentation {
    /// Store channels of the modalities, in the store's order.
    pub modalities: Vec<(String, usize)>,
    /// Store channel of the label.
    pub label: usize,
    pub classes: usize,
}

impl Segmentation {
    /// Every modality of the store, and its label with the classes it holds (at least 2).
    pub fn new(set: &SliceSet) -> Result<Self, TrainError> {
        let label = set.channel(LABEL).ok_or_else(|| {
            TrainError::Setup(format!(
                "evaluate.segmentation needs labels; the slice store has no label channel \
                 (it has {})",
                set.channels.join(", ")
            ))
        })?;
        let modalities = set
            .channels
            .iter()
            .enumerate()
            .filter(|(c, _)| *c != label)
            .map(|(c, m)| (m.clone(), c))
            .collect();
        Ok(Segmentation {
            modalities,
            label,
            classes: crate::conditioning::label_classes(set, label)?,
        })
    }

    /// The label regions scored, as sets of labels.
    pub fn regions(&self) -> Vec<(String, Vec<u8>)> {
        match self.classes {
            4 => brats(3),
            5 => brats(4),
            k => (1..k as u8)
                .map(|l| (format!("label-{l}"), vec![l]))
                .collect(),
        }
    }
}

fn brats(enhancing: u8) -> Vec<(String, Vec<u8>)> {
    vec![
        ("whole-tumour".into(), vec![1, 2, enhancing]),
        ("tumour-core".into(), vec![1, enhancing]),
        ("enhancing".into(), vec![enhancing]),
    ]
}

impl Segmentation {
    /// The modality channels of row-major slices `[B, C, H, W]` (`dims`), the network's input.
    ///
    /// # Shapes
    /// -> `[B, modalities, H, W]`
    fn inputs(&self, values: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
        let plane = h * w;
        let mut input = Vec::with_capacity(b * self.modalities.len() * plane);
        for n in 0..b {
            for (_, ch) in &self.modalities {
                input.extend_from_slice(&values[(n * c + ch) * plane..(n * c + ch + 1) * plane]);
            }
        }
        input
    }
}

impl Examples for Segmentation {
    fn in_channels(&self) -> usize {
        self.modalities.len()
    }
    fn out_channels(&self) -> usize {
        self.classes
    }
    fn usable(&self, row: &ManifestRow) -> bool {
        row.channels_missing.is_empty()
    }
    fn split(&self, slices: &Slices, _dropout: Option<&mut ChaCha8Rng>) -> (Vec<f32>, Vec<f32>) {
        let input = self.inputs(slices.values, slices.dims);
        let [b, _, h, w] = slices.dims;
        let mut target = Vec::with_capacity(b * self.classes * h * w);
        for n in 0..b {
            let labels = slices.plane(n, self.label);
            for class in 0..self.classes {
                target.extend(
                    labels
                        .iter()
                        .map(|&l| f32::from(l.round() as usize == class)),
                );
            }
        }
        (input, target)
    }
    fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({"modalities": self.modalities, "label": self.label, "classes": self.classes})
    }
}

/// A trained segmentation network.
pub struct Segmenter {
    pub examples: Segmentation,
    net: Unet,
    device: Device,
}

impl Segmenter {
    /// Trains (or resumes, or reloads when finished) on the real slices of `train` with every
    /// modality present, validating on `val`; checkpoints under `dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        model: &ModelSection,
        train_section: &TrainSection,
        epochs: u32,
        seed: u64,
        (train, val): (&SliceSet, Option<&SliceSet>),
        dir: &Path,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let examples = Segmentation::new(train)?;
        let (_, _, h, w) = train.dim();
        let mut spec =
            UnetSpec::from_model(model, examples.in_channels(), examples.classes, h.min(w));
        spec.heads = 0;
        spec.time_dependent = false;
        spec.attention_resolutions.clear();
        spec.window = None;
        let trainer = SupervisedTrainer {
            spec,
            objective: Objective::DiceCe,
            examples: &examples,
            train: TrainSection {
                epochs,
                max_steps: None,
                ..train_section.clone()
            },
            seed: crate::synth::unit_seed(seed, "segmentation"),
            checkpoints: Checkpoints::new(dir.join("checkpoints")),
            log: dir.join("train_log.parquet"),
            max_steps: None,
            progress: true,
        };
        tracing::info!(
            slices = train.len(),
            classes = examples.classes,
            "training the segmentation network (Dice + cross-entropy)"
        );
        let (net, _) = trainer.run(train, val, device)?;
        Ok(Segmenter {
            examples,
            net,
            device: device.clone(),
        })
    }

    /// The most likely class of every pixel of `slices` `[B, C, H, W]` (store channels).
    ///
    /// # Shapes
    /// -> `[B, 1, H, W]`
    pub fn predict(&self, slices: &Array4<f32>) -> Result<Array4<f32>, String> {
        let (b, c, h, w) = slices.dim();
        let values = slices.as_standard_layout();
        let input = self
            .examples
            .inputs(values.as_slice().unwrap_or_default(), [b, c, h, w]);
        let mut out = Vec::with_capacity(b * h * w);
        // A few slices at a time, so memory does not grow with the subject.
        let per = 16usize;
        let plane = self.examples.in_channels() * h * w;
        for start in (0..b).step_by(per) {
            let n = per.min(b - start);
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    input[start * plane..(start + n) * plane].to_vec(),
                    [n, self.examples.in_channels(), h, w],
                ),
                &self.device,
            );
            let classes = self.net.forward(x, &vec![0.0; n]).output.argmax(1);
            let values = classes
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| format!("reading the segmentation back: {e:?}"))?;
            out.extend(values.into_iter().map(|v| v as f32));
        }
        Array4::from_shape_vec((b, 1, h, w), out).map_err(|e| e.to_string())
    }
}

/// Dice of `region` (a set of labels) between a predicted and a reference label map of the
/// same shape; `None` when the reference does not have the region.
pub fn dice(pred: ArrayViewD<f32>, reference: ArrayViewD<f32>, region: &[u8]) -> Option<f64> {
    let inside = |v: f32| {
        let l = v.round();
        (0.0..=255.0).contains(&l) && region.contains(&(l as u8))
    };
    let (mut both, mut p, mut r) = (0usize, 0usize, 0usize);
    for (&a, &b) in pred.iter().zip(reference.iter()) {
        let (x, y) = (inside(a), inside(b));
        both += usize::from(x && y);
        p += usize::from(x);
        r += usize::from(y);
    }
    (r > 0).then(|| 2.0 * both as f64 / (p + r) as f64)
}

/// Dice per region of `segmenter`'s prediction on one subject's slices `data` (store
/// channels, described by `rows`), mapped back to the original grid (nearest neighbour, as
/// the label was resampled), against the subject's `reference` label there.
pub fn subject_dice(
    segmenter: &Segmenter,
    data: &Array4<f32>,
    rows: &[&ManifestRow],
    reference: ArrayViewD<f32>,
) -> Result<Vec<(String, f64)>, String> {
    let pred = segmenter.predict(data)?;
    let (volume, _) = crate::synth::volumes::to_original_grid(&pred, rows, 0, LABEL)
        .map_err(|e| e.to_string())?;
    let pred = volume.frame(0).to_owned().into_dyn();
    if pred.shape() != reference.shape() {
        return Err(format!(
            "the predicted label is {:?}, the reference {:?}",
            pred.shape(),
            reference.shape()
        ));
    }
    Ok(segmenter
        .examples
        .regions()
        .into_iter()
        .filter_map(|(name, labels)| {
            dice(pred.view(), reference.view(), &labels).map(|d| (name, d))
        })
        .collect())
}
