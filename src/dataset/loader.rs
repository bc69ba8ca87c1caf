//! Batches for training: the slices of one split read from the store, shuffled by a seeded
//! permutation per epoch, optionally augmented, and handed over as host values; the network
//! that trains on them splits them into its own tensors and uploads each once
//! ([`crate::conditioning`]).
//!
//! Augmentation is drawn per slice from a generator seeded by (seed, epoch, position in the
//! epoch), so batches are the same whatever the thread count. Geometric steps (a flip of the
//! columns, which is left-right for axial and coronal slices; rotation; scaling about the slice centre) move every channel and the label
//! identically: images with bilinear interpolation, the label with nearest neighbour, borders
//! replicated. Intensity jitter scales each image channel by its own factor; the label is never
//! jittered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Array3, Array4, ArrayView3, Axis};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{ManifestRow, StoreError, read_manifest, shard_layout};
use crate::preprocess::LABEL;
use crate::spec::AugmentConfig;

/// The slices of one split, in manifest order.
///
/// A set loaded from a store holds only the rows and where each slice lies (its shard file
/// and byte offset): slices are read when asked for, a batch at a time, so memory does not
/// grow with the store. A set built in memory ([`SliceSet::from_memory`]) holds its slices.
#[derive(Debug, Clone)]
pub struct SliceSet {
    pub channels: Vec<String>,
    pub rows: Vec<ManifestRow>,
    slices: Held,
}

/// Where a set's slices are.
#[derive(Debug, Clone)]
enum Held {
    Memory(Array4<f32>),
    /// `[C, H, W]` of every slice, and each slice's shard file and byte offset.
    Files {
        shape: [usize; 3],
        at: Vec<(Arc<PathBuf>, u64)>,
    },
}

/// Reads `count` little-endian f32 values at byte `offset` of `path`.
fn read_f32s(path: &Path, offset: u64, count: usize) -> Result<Vec<f32>, StoreError> {
    let io = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = vec![0u8; count * 4];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut bytes, offset).map_err(io)?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl SliceSet {
    /// A set of slices held in memory, `data` `[N, C, H, W]` with one row per slice.
    pub fn from_memory(channels: Vec<String>, data: Array4<f32>, rows: Vec<ManifestRow>) -> Self {
        debug_assert_eq!(data.dim().0, rows.len());
        SliceSet {
            channels,
            rows,
            slices: Held::Memory(data),
        }
    }

    /// SHA-256 (hex) of what the set holds, for fingerprints of work that consumes it: the
    /// channels and every row (subject, position, source digests, preprocessing record), and
    /// the slices themselves: their values when in memory, else the name of the
    /// content-addressed store folder they are read from (its key hashes the inputs and the
    /// preprocessing settings), so a copied run folder keeps its digest.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.channels.join(",").as_bytes());
        for r in &self.rows {
            h.update(serde_json::to_vec(r).unwrap_or_default());
        }
        match &self.slices {
            Held::Memory(data) => {
                for v in data.iter() {
                    h.update(v.to_le_bytes());
                }
            }
            Held::Files { at, .. } => {
                let stores: std::collections::BTreeSet<String> = at
                    .iter()
                    .filter_map(|(p, _)| p.parent()?.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                for name in stores {
                    h.update(name.as_bytes());
                    h.update(b",");
                }
            }
        }
        crate::volume::hex(&h.finalize())
    }

    /// The slices of `split` (every split when `None`) of the store at `dir`.
    pub fn load(dir: &Path, split: Option<&str>) -> Result<Self, StoreError> {
        let what = format!("split {}", split.unwrap_or("(any)"));
        Self::load_where(dir, &what, |r| split.is_none_or(|s| r.split == s))
    }

    /// The slices whose manifest rows `keep` accepts; `what` describes them for the error when
    /// there is none. Reads the manifest and each shard's header; the slices stay on disk.
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
        // Each shard file, its shape and channels, and where its first slice starts.
        type Layout = (Arc<PathBuf>, [usize; 4], Vec<String>, u64);
        let mut shards: BTreeMap<&str, Layout> = BTreeMap::new();
        for r in &rows {
            if !shards.contains_key(r.shard.as_str()) {
                let path = dir.join(&r.shard);
                let (shape, channels, start) = shard_layout(&path)?;
                shards.insert(&r.shard, (Arc::new(path), shape, channels, start));
            }
        }
        let Some((_, first, channels, _)) = shards.values().next() else {
            return Err(StoreError::Invalid {
                path: manifest,
                what: format!("no slice in {what}"),
            });
        };
        let [_, c, h, w] = *first;
        let channels = channels.clone();
        for (path, shape, ch, _) in shards.values() {
            if shape[1..] != [c, h, w] || *ch != channels {
                return Err(StoreError::Invalid {
                    path: path.to_path_buf(),
                    what: format!(
                        "slices are {:?} with channels {ch:?}, others {:?} with {channels:?}; set preprocess.size so every subject has the same slice size",
                        &shape[1..],
                        [c, h, w]
                    ),
                });
            }
        }
        let bytes = (c * h * w * 4) as u64;
        let at = rows
            .iter()
            .map(|r| {
                let (path, shape, _, start) = &shards[r.shard.as_str()];
                let row = r.row as usize;
                if row >= shape[0] {
                    return Err(StoreError::Invalid {
                        path: path.to_path_buf(),
                        what: format!("manifest row {row} past the shard's {} slices", shape[0]),
                    });
                }
                Ok((Arc::clone(path), start + row as u64 * bytes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SliceSet {
            channels,
            rows,
            slices: Held::Files {
                shape: [c, h, w],
                at,
            },
        })
    }

    /// The rows `keep` accepts, in order.
    pub fn filter(&self, keep: impl Fn(&ManifestRow) -> bool) -> SliceSet {
        let picked: Vec<usize> = (0..self.rows.len())
            .filter(|&i| keep(&self.rows[i]))
            .collect();
        SliceSet {
            channels: self.channels.clone(),
            rows: picked.iter().map(|&i| self.rows[i].clone()).collect(),
            slices: match &self.slices {
                Held::Memory(data) => Held::Memory(data.select(Axis(0), &picked)),
                Held::Files { shape, at } => Held::Files {
                    shape: *shape,
                    at: picked.iter().map(|&i| at[i].clone()).collect(),
                },
            },
        }
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(N, C, H, W)`.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        match &self.slices {
            Held::Memory(data) => data.dim(),
            Held::Files {
                shape: [c, h, w], ..
            } => (self.rows.len(), *c, *h, *w),
        }
    }

    /// The index of a channel by name.
    pub fn channel(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == name)
    }

    /// Slice `i`, `[C, H, W]`.
    pub fn slice(&self, i: usize) -> Result<Array3<f32>, StoreError> {
        match &self.slices {
            Held::Memory(data) => Ok(data.index_axis(Axis(0), i).to_owned()),
            Held::Files { shape, at } => {
                let (path, offset) = &at[i];
                let values = read_f32s(path, *offset, shape.iter().product())?;
                Ok(Array3::from_shape_vec(*shape, values).expect("the shape fits the values"))
            }
        }
    }

    /// Channel `c` of slice `i`, `[H, W]`: only that plane is read.
    pub fn plane(&self, i: usize, c: usize) -> Result<Array2<f32>, StoreError> {
        match &self.slices {
            Held::Memory(data) => Ok(data.slice(ndarray::s![i, c, .., ..]).to_owned()),
            Held::Files {
                shape: [_, h, w],
                at,
            } => {
                let (path, offset) = &at[i];
                let plane_bytes = (h * w * 4) as u64;
                let values = read_f32s(path, offset + c as u64 * plane_bytes, h * w)?;
                Ok(Array2::from_shape_vec((*h, *w), values).expect("the shape fits the values"))
            }
        }
    }

    /// Slices `rows`, in that order, `[n, C, H, W]` (read in parallel).
    pub fn gather(&self, rows: &[usize]) -> Result<Array4<f32>, StoreError> {
        if let Held::Memory(data) = &self.slices {
            return Ok(data.select(Axis(0), rows));
        }
        let (_, c, h, w) = self.dim();
        let slices: Vec<Array3<f32>> = rows
            .par_iter()
            .map(|&i| self.slice(i))
            .collect::<Result<_, _>>()?;
        let mut out = Array4::zeros((rows.len(), c, h, w));
        for (n, s) in slices.into_iter().enumerate() {
            out.index_axis_mut(Axis(0), n).assign(&s);
        }
        Ok(out)
    }

    /// Channel `c` of slices `rows`, `[n, 1, H, W]`: only those planes are read.
    pub fn gather_channel(&self, rows: &[usize], c: usize) -> Result<Array4<f32>, StoreError> {
        let (_, _, h, w) = self.dim();
        let planes: Vec<Array2<f32>> = rows
            .par_iter()
            .map(|&i| self.plane(i, c))
            .collect::<Result<_, _>>()?;
        let mut out = Array4::zeros((rows.len(), 1, h, w));
        for (n, p) in planes.into_iter().enumerate() {
            out.slice_mut(ndarray::s![n, 0, .., ..]).assign(&p);
        }
        Ok(out)
    }

    /// Every slice, in memory (small sets and tests).
    pub fn to_array(&self) -> Result<Array4<f32>, StoreError> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.gather(&all)
    }
}

/// One batch: the slices as host values and which rows of the set they are.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Row-major values.
    ///
    /// # Shapes
    /// `[B, C, H, W]` (`dims`)
    pub values: Vec<f32>,
    pub dims: [usize; 4],
    pub rows: Vec<usize>,
}

impl Batch {
    /// The batch's slices with their manifest rows in `set`, the set it was drawn from.
    pub fn slices<'a>(&'a self, set: &'a SliceSet) -> Slices<'a> {
        Slices {
            values: &self.values,
            dims: self.dims,
            rows: self.rows.iter().map(|&r| &set.rows[r]).collect(),
        }
    }

    /// The slices as one tensor on `device`.
    ///
    /// # Shapes
    /// -> `[B, C, H, W]`
    pub fn tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.values.clone(), self.dims), device)
    }
}

/// Stored slices on the host with the manifest row of each.
#[derive(Debug, Clone)]
pub struct Slices<'a> {
    /// Row-major values, channels in store order.
    ///
    /// # Shapes
    /// `[B, C, H, W]` (`dims`)
    pub values: &'a [f32],
    pub dims: [usize; 4],
    pub rows: Vec<&'a ManifestRow>,
}

impl<'a> Slices<'a> {
    /// Slices from row-major values `[B, C, H, W]` and the row of each.
    pub fn of(values: &'a [f32], dims: [usize; 4], rows: &[&'a ManifestRow]) -> Self {
        Slices {
            values,
            dims,
            rows: rows.to_vec(),
        }
    }

    /// Slice `n` alone, as a batch of one.
    pub fn item(&self, n: usize) -> Slices<'a> {
        let [_, c, h, w] = self.dims;
        let per = c * h * w;
        Slices {
            values: &self.values[n * per..(n + 1) * per],
            dims: [1, c, h, w],
            rows: vec![self.rows[n]],
        }
    }

    /// The plane of channel `ch` of slice `n`.
    pub fn plane(&self, n: usize, ch: usize) -> &'a [f32] {
        let [_, c, h, w] = self.dims;
        let plane = h * w;
        &self.values[(n * c + ch) * plane..(n * c + ch + 1) * plane]
    }

    /// How many slices.
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.dims[0] == 0
    }
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

    /// Batch `index` of `epoch` (`None` past the last); its slices are read from the store
    /// now.
    pub fn batch(&self, epoch: u64, index: usize) -> Result<Option<Batch>, StoreError> {
        let order = self.order(epoch);
        let start = index * self.batch_size;
        let rows: Vec<usize> = order
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(self.batch_size)
            .copied()
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let label = self.set.channel(LABEL);
        let (_, c, h, w) = self.set.dim();
        let slices: Vec<Array3<f32>> = rows
            .par_iter()
            .enumerate()
            .map(|(k, &row)| {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(stream(self.seed, epoch, (start + k) as u64));
                let slice = self.set.slice(row)?;
                Ok(augment(slice.view(), &self.augment, label, &mut rng))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut values = Vec::with_capacity(rows.len() * c * h * w);
        for s in &slices {
            values.extend(s.iter().copied());
        }
        Ok(Some(Batch {
            values,
            dims: [rows.len(), c, h, w],
            rows,
        }))
    }

    /// Every batch of `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Result<Batch, StoreError>> + '_ {
        (0..self.batches()).filter_map(move |i| self.batch(epoch, i).transpose())
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
