//! InceptionV3 as pytorch-fid builds it for FID: torchvision's network with the FID-specific
//! blocks of the TensorFlow graph the original FID used (`FIDInceptionA/C/E_1`: average
//! pools that leave padding out of the count; `FIDInceptionE_2`: a max pool in the pool
//! branch), evaluated to the 2048 pool3 features. Input images in [0, 1] are resized to
//! 299 × 299 (bilinear, `align_corners = False`) and scaled to [-1, 1]; grey images are
//! repeated to three channels.
//!
//! Field names follow the PyTorch state dict (`Conv2d_1a_3x3.conv.weight`,
//! `Mixed_5b.branch_pool.bn.running_var`, ...) so the standard weights file
//! `pt_inception-2015-12-05-6726825d.pth` loads without renaming.
#![allow(non_snake_case)]

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Array4};

use super::MetricError;

/// The side the network sees.
pub const SIZE: usize = 299;
/// Feature dimension (pool3).
pub const FEATURES: usize = 2048;

/// Conv (no bias) + BatchNorm (ε = 0.001) + ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    conv: Conv2d,
    bn: BatchNorm,
}

impl BasicConv2d {
    fn new(i: usize, o: usize, k: [usize; 2], stride: usize, pad: [usize; 2], d: &Device) -> Self {
        BasicConv2d {
            conv: Conv2dConfig::new([i, o], k)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad[0], pad[1], pad[0], pad[1]))
                .with_bias(false)
                .init(d),
            bn: BatchNormConfig::new(o).with_epsilon(1e-3).init(d),
        }
    }

    fn square(i: usize, o: usize, k: usize, d: &Device) -> Self {
        Self::new(i, o, [k, k], 1, [k / 2, k / 2], d)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

fn avg_pool_3(x: Tensor<4>) -> Tensor<4> {
    AvgPool2dConfig::new([3, 3])
        .with_strides([1, 1])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_count_include_pad(false)
        .init()
        .forward(x)
}

fn max_pool(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    MaxPool2dConfig::new([3, 3])
        .with_strides([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init()
        .forward(x)
}

/// `FIDInceptionA`.
#[derive(Module, Debug)]
pub struct InceptionA {
    branch1x1: BasicConv2d,
    branch5x5_1: BasicConv2d,
    branch5x5_2: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
    branch_pool: BasicConv2d,
}

impl InceptionA {
    fn new(i: usize, pool: usize, d: &Device) -> Self {
        InceptionA {
            branch1x1: BasicConv2d::square(i, 64, 1, d),
            branch5x5_1: BasicConv2d::square(i, 48, 1, d),
            branch5x5_2: BasicConv2d::square(48, 64, 5, d),
            branch3x3dbl_1: BasicConv2d::square(i, 64, 1, d),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, d),
            branch3x3dbl_3: BasicConv2d::square(96, 96, 3, d),
            branch_pool: BasicConv2d::square(i, pool, 1, d),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = self.branch_pool.forward(avg_pool_3(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// torchvision's `InceptionB` (Mixed_6a).
#[derive(Module, Debug)]
pub struct InceptionB {
    branch3x3: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    fn new(i: usize, d: &Device) -> Self {
        InceptionB {
            branch3x3: BasicConv2d::new(i, 384, [3, 3], 2, [0, 0], d),
            branch3x3dbl_1: BasicConv2d::square(i, 64, 1, d),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, d),
            branch3x3dbl_3: BasicConv2d::new(96, 96, [3, 3], 2, [0, 0], d),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        Tensor::cat(vec![b3, bd, max_pool(x, 2, 0)], 1)
    }
}

/// `FIDInceptionC`.
#[derive(Module, Debug)]
pub struct InceptionC {
    branch1x1: BasicConv2d,
    branch7x7_1: BasicConv2d,
    branch7x7_2: BasicConv2d,
    branch7x7_3: BasicConv2d,
    branch7x7dbl_1: BasicConv2d,
    branch7x7dbl_2: BasicConv2d,
    branch7x7dbl_3: BasicConv2d,
    branch7x7dbl_4: BasicConv2d,
    branch7x7dbl_5: BasicConv2d,
    branch_pool: BasicConv2d,
}

impl InceptionC {
    fn new(i: usize, c7: usize, d: &Device) -> Self {
        let row = |a, b| BasicConv2d::new(a, b, [1, 7], 1, [0, 3], d);
        let col = |a, b| BasicConv2d::new(a, b, [7, 1], 1, [3, 0], d);
        InceptionC {
            branch1x1: BasicConv2d::square(i, 192, 1, d),
            branch7x7_1: BasicConv2d::square(i, c7, 1, d),
            branch7x7_2: row(c7, c7),
            branch7x7_3: col(c7, 192),
            branch7x7dbl_1: BasicConv2d::square(i, c7, 1, d),
            branch7x7dbl_2: col(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: col(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: BasicConv2d::square(i, 192, 1, d),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = [&self.branch7x7_1, &self.branch7x7_2, &self.branch7x7_3]
            .iter()
            .fold(x.clone(), |h, m| m.forward(h));
        let bd = [
            &self.branch7x7dbl_1,
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ]
        .iter()
        .fold(x.clone(), |h, m| m.forward(h));
        let bp = self.branch_pool.forward(avg_pool_3(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

/// torchvision's `InceptionD` (Mixed_7a).
#[derive(Module, Debug)]
pub struct InceptionD {
    branch3x3_1: BasicConv2d,
    branch3x3_2: BasicConv2d,
    branch7x7x3_1: BasicConv2d,
    branch7x7x3_2: BasicConv2d,
    branch7x7x3_3: BasicConv2d,
    branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    fn new(i: usize, d: &Device) -> Self {
        InceptionD {
            branch3x3_1: BasicConv2d::square(i, 192, 1, d),
            branch3x3_2: BasicConv2d::new(192, 320, [3, 3], 2, [0, 0], d),
            branch7x7x3_1: BasicConv2d::square(i, 192, 1, d),
            branch7x7x3_2: BasicConv2d::new(192, 192, [1, 7], 1, [0, 3], d),
            branch7x7x3_3: BasicConv2d::new(192, 192, [7, 1], 1, [3, 0], d),
            branch7x7x3_4: BasicConv2d::new(192, 192, [3, 3], 2, [0, 0], d),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let b7 = [
            &self.branch7x7x3_1,
            &self.branch7x7x3_2,
            &self.branch7x7x3_3,
            &self.branch7x7x3_4,
        ]
        .iter()
        .fold(x.clone(), |h, m| m.forward(h));
        Tensor::cat(vec![b3, b7, max_pool(x, 2, 0)], 1)
    }
}

/// `FIDInceptionE_1` (average pool without padding in the count) or `FIDInceptionE_2`
/// (max pool).
#[derive(Module, Debug)]
pub struct InceptionE {
    branch1x1: BasicConv2d,
    branch3x3_1: BasicConv2d,
    branch3x3_2a: BasicConv2d,
    branch3x3_2b: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3a: BasicConv2d,
    branch3x3dbl_3b: BasicConv2d,
    branch_pool: BasicConv2d,
    max_pool: bool,
}

impl InceptionE {
    fn new(i: usize, max_pool: bool, d: &Device) -> Self {
        InceptionE {
            branch1x1: BasicConv2d::square(i, 320, 1, d),
            branch3x3_1: BasicConv2d::square(i, 384, 1, d),
            branch3x3_2a: BasicConv2d::new(384, 384, [1, 3], 1, [0, 1], d),
            branch3x3_2b: BasicConv2d::new(384, 384, [3, 1], 1, [1, 0], d),
            branch3x3dbl_1: BasicConv2d::square(i, 448, 1, d),
            branch3x3dbl_2: BasicConv2d::square(448, 384, 3, d),
            branch3x3dbl_3a: BasicConv2d::new(384, 384, [1, 3], 1, [0, 1], d),
            branch3x3dbl_3b: BasicConv2d::new(384, 384, [3, 1], 1, [1, 0], d),
            branch_pool: BasicConv2d::square(i, 192, 1, d),
            max_pool,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let h = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(h.clone()),
                self.branch3x3_2b.forward(h),
            ],
            1,
        );
        let h = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let bd = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(h.clone()),
                self.branch3x3dbl_3b.forward(h),
            ],
            1,
        );
        let pooled = if self.max_pool {
            max_pool(x, 1, 1)
        } else {
            avg_pool_3(x)
        };
        let bp = self.branch_pool.forward(pooled);
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}

/// The FID InceptionV3 up to pool3.
#[derive(Module, Debug)]
pub struct FidInception {
    Conv2d_1a_3x3: BasicConv2d,
    Conv2d_2a_3x3: BasicConv2d,
    Conv2d_2b_3x3: BasicConv2d,
    Conv2d_3b_1x1: BasicConv2d,
    Conv2d_4a_3x3: BasicConv2d,
    Mixed_5b: InceptionA,
    Mixed_5c: InceptionA,
    Mixed_5d: InceptionA,
    Mixed_6a: InceptionB,
    Mixed_6b: InceptionC,
    Mixed_6c: InceptionC,
    Mixed_6d: InceptionC,
    Mixed_6e: InceptionC,
    Mixed_7a: InceptionD,
    Mixed_7b: InceptionE,
    Mixed_7c: InceptionE,
}

impl FidInception {
    /// The network with untrained weights (load some before use).
    pub fn new(d: &Device) -> Self {
        FidInception {
            Conv2d_1a_3x3: BasicConv2d::new(3, 32, [3, 3], 2, [0, 0], d),
            Conv2d_2a_3x3: BasicConv2d::new(32, 32, [3, 3], 1, [0, 0], d),
            Conv2d_2b_3x3: BasicConv2d::square(32, 64, 3, d),
            Conv2d_3b_1x1: BasicConv2d::square(64, 80, 1, d),
            Conv2d_4a_3x3: BasicConv2d::new(80, 192, [3, 3], 1, [0, 0], d),
            Mixed_5b: InceptionA::new(192, 32, d),
            Mixed_5c: InceptionA::new(256, 64, d),
            Mixed_5d: InceptionA::new(288, 64, d),
            Mixed_6a: InceptionB::new(288, d),
            Mixed_6b: InceptionC::new(768, 128, d),
            Mixed_6c: InceptionC::new(768, 160, d),
            Mixed_6d: InceptionC::new(768, 160, d),
            Mixed_6e: InceptionC::new(768, 192, d),
            Mixed_7a: InceptionD::new(768, d),
            Mixed_7b: InceptionE::new(1280, false, d),
            Mixed_7c: InceptionE::new(2048, true, d),
        }
    }

    /// Loads a PyTorch state dict with the FID layout from a `.pth`/`.pt` file or a
    /// `.safetensors` file. Every parameter and running statistic of the network must be in
    /// it (extra keys such as `fc.*` are ignored).
    pub fn load(path: &Path, d: &Device) -> Result<Self, MetricError> {
        let mut net = FidInception::new(d);
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let result = if is_safetensors {
            let mut store =
                SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
            net.load_from(&mut store).map_err(|e| format!("{e:?}"))
        } else {
            let mut store = PytorchStore::from_file(path);
            net.load_from(&mut store).map_err(|e| format!("{e:?}"))
        };
        let applied = result.map_err(|e| {
            MetricError::Other(format!(
                "{}: cannot read Inception weights: {e}",
                path.display()
            ))
        })?;
        check_applied(path, &applied)?;
        Ok(net)
    }

    /// Applies what a `.pth` file holds to the network, allowing tensors to be missing;
    /// returns the paths applied. For checking a file's layout, not for computing FID.
    pub fn apply_pth_partial(&mut self, path: &Path) -> Result<Vec<String>, MetricError> {
        let mut store = PytorchStore::from_file(path).allow_partial(true);
        let applied = self.load_from(&mut store).map_err(|e| {
            MetricError::Other(format!(
                "{}: cannot read Inception weights: {e:?}",
                path.display()
            ))
        })?;
        if !applied.errors.is_empty() {
            return Err(MetricError::Other(format!(
                "{}: {:?}",
                path.display(),
                applied.errors
            )));
        }
        Ok(applied.applied)
    }

    /// The stem convolution's weights `[32, 3, 3, 3]`, flattened (for checks).
    pub fn stem_weights(&self) -> Vec<f32> {
        self.Conv2d_1a_3x3
            .conv
            .weight
            .val()
            .to_data()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    }

    /// Loads safetensors bytes (a state dict with the FID layout).
    pub fn load_safetensors_bytes(bytes: Vec<u8>, d: &Device) -> Result<Self, MetricError> {
        let mut net = FidInception::new(d);
        let mut store =
            SafetensorsStore::from_bytes(Some(bytes)).with_from_adapter(PyTorchToBurnAdapter);
        let applied = net
            .load_from(&mut store)
            .map_err(|e| MetricError::Other(format!("cannot read Inception weights: {e:?}")))?;
        check_applied(Path::new("<bytes>"), &applied)?;
        Ok(net)
    }

    /// Pool3 features of images `[B, 3, 299, 299]` already scaled to [-1, 1].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.Conv2d_1a_3x3.forward(x);
        let x = self.Conv2d_2a_3x3.forward(x);
        let x = max_pool(self.Conv2d_2b_3x3.forward(x), 2, 0);
        let x = self.Conv2d_3b_1x1.forward(x);
        let x = max_pool(self.Conv2d_4a_3x3.forward(x), 2, 0);
        let x = self.Mixed_5b.forward(x);
        let x = self.Mixed_5c.forward(x);
        let x = self.Mixed_5d.forward(x);
        let x = self.Mixed_6a.forward(x);
        let x = self.Mixed_6b.forward(x);
        let x = self.Mixed_6c.forward(x);
        let x = self.Mixed_6d.forward(x);
        let x = self.Mixed_6e.forward(x);
        let x = self.Mixed_7a.forward(x);
        let x = self.Mixed_7b.forward(x);
        let x = self.Mixed_7c.forward(x);
        let [b, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([b, c])
    }

    /// Pool3 features `[B, 2048]` of images `[B, C, H, W]` in [0, 1] (C = 1 is repeated to
    /// three channels), in batches of `batch`.
    pub fn features(
        &self,
        images: &Array4<f32>,
        batch: usize,
        d: &Device,
    ) -> Result<Array2<f64>, MetricError> {
        let (n, c, _, _) = images.dim();
        if c != 1 && c != 3 {
            return Err(MetricError::Other(format!(
                "Inception takes grey or RGB images, got {c} channels"
            )));
        }
        let mut out = Array2::<f64>::zeros((n, FEATURES));
        for start in (0..n).step_by(batch.max(1)) {
            let end = (start + batch.max(1)).min(n);
            let mut host = Vec::with_capacity((end - start) * 3 * SIZE * SIZE);
            for i in start..end {
                for ch in 0..3 {
                    let plane = images.slice(ndarray::s![i, ch.min(c - 1), .., ..]);
                    host.extend(resize_bilinear(plane).into_iter().map(|v| 2.0 * v - 1.0));
                }
            }
            let x = Tensor::<4>::from_data(TensorData::new(host, [end - start, 3, SIZE, SIZE]), d);
            let f = self
                .forward(x)
                .to_data()
                .try_to_vec::<f32>()
                .map_err(|e| MetricError::Other(format!("reading features back: {e:?}")))?;
            for (k, v) in f.into_iter().enumerate() {
                out[[start + k / FEATURES, k % FEATURES]] = f64::from(v);
            }
        }
        Ok(out)
    }
}

fn check_applied(path: &Path, applied: &burn::store::ApplyResult) -> Result<(), MetricError> {
    // The classifier and BatchNorm's batch counter are in the file but not used.
    let stray: Vec<&String> = applied
        .unused
        .iter()
        .filter(|k| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked"))
        .collect();
    if !stray.is_empty() {
        return Err(MetricError::Other(format!(
            "{}: not an FID Inception state dict: {} tensor(s) fit no layer (e.g. {:?})",
            path.display(),
            stray.len(),
            &stray[..stray.len().min(3)]
        )));
    }
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        let missing: Vec<&str> = applied.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(MetricError::Other(format!(
            "{}: not an FID Inception state dict: {} tensor(s) missing (e.g. {:?}), {} error(s) (e.g. {:?})",
            path.display(),
            missing.len(),
            &missing[..missing.len().min(3)],
            applied.errors.len(),
            applied.errors.first()
        )));
    }
    Ok(())
}

/// `plane` resized to 299 × 299 as `F.interpolate(mode="bilinear", align_corners=False)`.
pub fn resize_bilinear(plane: ndarray::ArrayView2<f32>) -> Vec<f32> {
    let (h, w) = plane.dim();
    let taps = |n_in: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / SIZE as f64;
        (0..SIZE)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(h), taps(w));
    let mut out = Vec::with_capacity(SIZE * SIZE);
    for &(y0, y1, ly) in &ty {
        for &(x0, x1, lx) in &tx {
            let top = plane[[y0, x0]] * (1.0 - lx) + plane[[y0, x1]] * lx;
            let bottom = plane[[y1, x0]] * (1.0 - lx) + plane[[y1, x1]] * lx;
            out.push(top * (1.0 - ly) + bottom * ly);
        }
    }
    out
}

/// Pool3 features of grey slices `[N, 1, H, W]` mapped to [0, 1] from `range` = [lo, hi].
pub fn slice_features(
    net: &FidInception,
    slices: &Array4<f32>,
    range: [f32; 2],
    d: &Device,
) -> Result<Array2<f64>, MetricError> {
    let [lo, hi] = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    net.features(&slices.mapv(|v| ((v - lo) / span).clamp(0.0, 1.0)), 8, d)
}

/// The display range of a set of slices: its minimum and maximum.
pub fn value_range(slices: &Array4<f32>) -> [f32; 2] {
    let all = slices.iter().copied().filter(|v| v.is_finite());
    let lo = all.clone().fold(f32::INFINITY, f32::min);
    let hi = all.fold(f32::NEG_INFINITY, f32::max);
    [lo, hi]
}

/// FID and KID (mean, sd) between two feature sets; `kid_subsets` = [subsets, subset size],
/// the size capped at the smaller set.
pub fn distances(
    real: &Array2<f64>,
    fake: &Array2<f64>,
    kid_subsets: [u32; 2],
    seed: u64,
) -> Result<(f64, (f64, f64)), MetricError> {
    let fid = super::fid::frechet_distance(
        &super::fid::Gaussian::fit(real.view())?,
        &super::fid::Gaussian::fit(fake.view())?,
    )?;
    let size = (kid_subsets[1] as usize)
        .min(real.nrows())
        .min(fake.nrows());
    let kid = super::fid::kid(
        real.view(),
        fake.view(),
        kid_subsets[0] as usize,
        size,
        seed,
    )?;
    Ok((fid, kid))
}
