//! Batches for training: the slices of one split read from the store, shuffled by a seeded
//! permutation per epoch, optionally augmented, and handed over as burn tensors.
//!
//! Augmentation is drawn per slice from a generator seeded by (seed, epoch, position in the
//! epoch), so batches are the same whatever the thread count. Geometric steps (a flip of the
//! columns, which is left-right for axial and coronal slices; rotation; scaling about the slice centre) move every channel and the label
//! identically: images with bilinear interpolation, the label with nearest neighbour, borders
//! replicated. Intensity jitter scales each image channel by its own factor; the label is never
//! jittered.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array4, ArrayView3, Axis};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{ManifestRow, StoreError, read_manifest, read_shard};
use crate::preprocess::LABEL;
use crate::spec::AugmentConfig;

/// The slices of one split, in manifest order.
#[derive(Debug, Clone)]
pub struct SliceSet {
    pub channels: Vec<String>,
    /// # Shapes
    /// `[N, C, H, W]`
    pub data: Array4<f32>,
    pub rows: Vec<ManifestRow>,
}

impl SliceSet {
    /// Reads the slices of `split` (every split when `None`) from the store at `dir`.
    pub fn load(dir: &Path, split: Option<&str>) -> Result<Self, StoreError> {
        let what = format!("split {}", split.unwrap_or("(any)"));
        Self::load_where(dir, &what, |r| split.is_none_or(|s| r.split == s))
    }

    /// Loads the slices whose manifest rows `keep` accepts; `what` describes them for the
    /// error when there is none.
    pub fn load_where(
        dir: &Path,
        what: &str,
        keep: impl Fn(&ManifestRow) -> bool,
    ) -> Result<Self, StoreError> {
        let manifest = dir.join("manifest.parquet");
        let rows: Vec<ManifestRow> = read_manifest(&manifest)?
            .into_iter()
            .filter(|r| keep(r))
            .collect();
        let mut shards: BTreeMap<&str, (Array4<f32>, Vec<String>)> = BTreeMap::new();
        for r in &rows {
            if !shards.contains_key(r.shard.as_str()) {
                shards.insert(&r.shard, read_shard(&dir.join(&r.shard))?);
            }
        }
        let Some((first, channels)) = shards.values().next() else {
            return Err(StoreError::Invalid {
                path: manifest,
                what: format!("no slice in {what}"),
            });
        };
        let (c, h, w) = (first.shape()[1], first.shape()[2], first.shape()[3]);
        let channels = channels.clone();
        for (name, (t, ch)) in &shards {
            if t.shape()[1..] != [c, h, w] || *ch != channels {
                return Err(StoreError::Invalid {
                    path: dir.join(name),
                    what: format!(
                        "slices are {:?} with channels {ch:?}, others {:?} with {channels:?}; set preprocess.size so every subject has the same slice size",
                        &t.shape()[1..],
                        [c, h, w]
                    ),
                });
            }
        }
        let mut data = Array4::zeros((rows.len(), c, h, w));
        for (n, r) in rows.iter().enumerate() {
            let (t, _) = &shards[r.shard.as_str()];
            let row = r.row as usize;
            if row >= t.shape()[0] {
                return Err(StoreError::Invalid {
                    path: dir.join(&r.shard),
                    what: format!(
                        "manifest row {row} past the shard's {} slices",
                        t.shape()[0]
                    ),
                });
            }
            data.index_axis_mut(Axis(0), n)
                .assign(&t.index_axis(Axis(0), row));
        }
        Ok(SliceSet {
            channels,
            data,
            rows,
        })
    }

    /// The rows `keep` accepts, in order.
    pub fn filter(&self, keep: impl Fn(&ManifestRow) -> bool) -> SliceSet {
        let picked: Vec<usize> = (0..self.rows.len())
            .filter(|&i| keep(&self.rows[i]))
            .collect();
        SliceSet {
            channels: self.channels.clone(),
            data: self.data.select(Axis(0), &picked),
            rows: picked.iter().map(|&i| self.rows[i].clone()).collect(),
        }
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The index of a channel by name.
    pub fn channel(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == name)
    }
}

/// One batch: the slices as a tensor and which rows of the set they are.
#[derive(Debug, Clone)]
pub struct Batch {
    /// # Shapes
    /// `[B, C, H, W]`
    pub slices: Tensor<4>,
    pub rows: Vec<usize>,
}

/// Seeded, shuffled, augmented batches over a [`SliceSet`].
#[derive(Debug, Clone)]
pub struct Loader<'a> {
    set: &'a SliceSet,
    batch_size: usize,
    augment: AugmentConfig,
    seed: u64,
    shuffle: bool,
}

/// SplitMix64 of a seed and two stream numbers.
fn stream(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<'a> Loader<'a> {
    pub fn new(set: &'a SliceSet, batch_size: usize, augment: AugmentConfig, seed: u64) -> Self {
        Loader {
            set,
            batch_size: batch_size.max(1),
            augment,
            seed,
            shuffle: true,
        }
    }

    /// Keeps manifest order and applies no augmentation (validation, sampling).
    pub fn in_order(set: &'a SliceSet, batch_size: usize) -> Self {
        Loader {
            shuffle: false,
            augment: AugmentConfig::default(),
            ..Loader::new(set, batch_size, AugmentConfig::default(), 0)
        }
    }

    /// Batches per epoch (the last one may be smaller).
    pub fn batches(&self) -> usize {
        self.set.len().div_ceil(self.batch_size)
    }

    /// The order of the set's rows in `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        if self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream(
                self.seed,
                epoch,
                u64::MAX,
            )));
        }
        order
    }

    /// Batch `index` of `epoch` on `device`.
    pub fn batch(&self, epoch: u64, index: usize, device: &Device) -> Option<Batch> {
        let order = self.order(epoch);
        let start = index * self.batch_size;
        let rows: Vec<usize> = order
            .get(start..)?
            .iter()
            .take(self.batch_size)
            .copied()
            .collect();
        if rows.is_empty() {
            return None;
        }
        let label = self.set.channel(LABEL);
        let [_, c, h, w] = <[usize; 4]>::try_from(self.set.data.shape()).ok()?;
        let slices: Vec<Array3<f32>> = rows
            .par_iter()
            .enumerate()
            .map(|(k, &row)| {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(stream(self.seed, epoch, (start + k) as u64));
                augment(
                    self.set.data.index_axis(Axis(0), row),
                    &self.augment,
                    label,
                    &mut rng,
                )
            })
            .collect();
        let mut values = Vec::with_capacity(rows.len() * c * h * w);
        for s in &slices {
            values.extend(s.iter().copied());
        }
        let data = TensorData::new(values, [rows.len(), c, h, w]);
        Some(Batch {
            slices: Tensor::from_data(data, device),
            rows,
        })
    }

    /// Every batch of `epoch`, in order.
    pub fn epoch(&self, epoch: u64, device: &Device) -> impl Iterator<Item = Batch> + '_ {
        let device = device.clone();
        (0..self.batches()).filter_map(move |i| self.batch(epoch, i, &device))
    }
}

/// Augments one slice `[C, H, W]`; `label` is the channel (if any) moved by nearest neighbour
/// and never jittered. Draws from `rng` in a fixed order whatever the settings.
pub fn augment(
    slice: ArrayView3<f32>,
    cfg: &AugmentConfig,
    label: Option<usize>,
    rng: &mut impl Rng,
) -> Array3<f32> {
    let flip = rng.random::<f64>() < cfg.flip;
    let angle = (rng.random::<f64>() * 2.0 - 1.0) * cfg.rotate_deg.to_radians();
    let scale = 1.0 + (rng.random::<f64>() * 2.0 - 1.0) * cfg.scale;
    let jitter: Vec<f32> = (0..slice.shape()[0])
        .map(|_| (1.0 + (rng.random::<f64>() * 2.0 - 1.0) * cfg.intensity) as f32)
        .collect();
    let (c, h, w) = slice.dim();
    let moved = angle != 0.0 || scale != 1.0;
    let mut out = if moved {
        // Output pixel (y, x) samples the input at the inverse rotation and scaling about the
        // centre.
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        let (sin, cos) = angle.sin_cos();
        let mut out = Array3::zeros((c, h, w));
        for y in 0..h {
            for x in 0..w {
                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                let sy = (cos * dy - sin * dx) / scale + cy;
                let sx = (sin * dy + cos * dx) / scale + cx;
                let sy = sy.clamp(0.0, h as f64 - 1.0);
                let sx = sx.clamp(0.0, w as f64 - 1.0);
                let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                let (fy, fx) = ((sy - y0 as f64) as f32, (sx - x0 as f64) as f32);
                for ch in 0..c {
                    out[[ch, y, x]] = if Some(ch) == label {
                        slice[[ch, sy.round() as usize, sx.round() as usize]]
                    } else {
                        let top = slice[[ch, y0, x0]] * (1.0 - fx) + slice[[ch, y0, x1]] * fx;
                        let bottom = slice[[ch, y1, x0]] * (1.0 - fx) + slice[[ch, y1, x1]] * fx;
                        top * (1.0 - fy) + bottom * fy
                    };
                }
            }
        }
        out
    } else {
        slice.to_owned()
    };
    if flip {
        out.invert_axis(Axis(2));
        out = out.as_standard_layout().into_owned();
    }
    for (ch, mut plane) in out.axis_iter_mut(Axis(0)).enumerate() {
        if Some(ch) != label && jitter[ch] != 1.0 {
            plane.mapv_inplace(|v| v * jitter[ch]);
        }
    }
    out
}
