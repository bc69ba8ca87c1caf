//! SSIM (Wang et al. 2004) as scikit-image's `structural_similarity(gaussian_weights=True,
//! sigma=1.5, use_sample_covariance=False, data_range=R)` computes it, in 2-D and 3-D: local
//! means, variances and covariance from a Gaussian filter along every axis (σ = 1.5, truncated
//! at 3.5 σ: 11 taps, scipy's `reflect` borders), K1 = 0.01, K2 = 0.03. The score is the mean
//! of the SSIM map over the valid region (5 voxels cropped from every border); inside or
//! outside a mask it is the mean of the full map over the mask's voxels (the convention of the
//! BraSyn evaluation, which takes the full map and averages it under a mask). Arithmetic in
//! f64; lanes are filtered in parallel with rayon.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Slice, Zip};

const SIGMA: f64 = 1.5;
/// Half the window: 11 taps.
pub const RADIUS: usize = 5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// The normalized Gaussian taps (σ = 1.5, radius 5).
pub fn gaussian_taps() -> [f64; 2 * RADIUS + 1] {
    let mut k = [0.0; 2 * RADIUS + 1];
    for (i, w) in k.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *w = (-x * x / (2.0 * SIGMA * SIGMA)).exp();
    }
    let total: f64 = k.iter().sum();
    k.map(|w| w / total)
}

/// scipy.ndimage's `reflect` (half-sample symmetric) index.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// The separable Gaussian filter along every axis, `reflect` borders.
fn filter(x: &ArrayD<f64>) -> ArrayD<f64> {
    let k = gaussian_taps();
    let r = RADIUS as i64;
    let mut cur = x.clone();
    for axis in 0..x.ndim() {
        let n = x.shape()[axis];
        let mut out = ArrayD::<f64>::zeros(x.raw_dim());
        Zip::from(out.lanes_mut(Axis(axis)))
            .and(cur.lanes(Axis(axis)))
            .par_for_each(|mut o, lane| {
                for (p, o) in o.iter_mut().enumerate() {
                    *o = k
                        .iter()
                        .enumerate()
                        .map(|(i, w)| w * lane[reflect(p as i64 + i as i64 - r, n)])
                        .sum();
                }
            });
        cur = out;
    }
    cur
}

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("the images have shapes {0:?} and {1:?}; they must match")]
    Shape(Vec<usize>, Vec<usize>),
    #[error("every side must be at least {0} voxels for an 11-voxel window; the shape is {1:?}")]
    TooSmall(usize, Vec<usize>),
    #[error("data_range must be positive, got {0}")]
    Range(f64),
    #[error("the mask has shape {0:?}, the images {1:?}")]
    Mask(Vec<usize>, Vec<usize>),
    #[error("the mask selects no voxel")]
    EmptyMask,
    #[error("{0}")]
    Other(String),
}

/// `data_range` when it is a positive finite number.
pub fn check_range(data_range: f64) -> Result<f64, MetricError> {
    if data_range.is_finite() && data_range > 0.0 {
        Ok(data_range)
    } else {
        Err(MetricError::Range(data_range))
    }
}

/// The full SSIM map of two images or volumes of one shape (2-D or 3-D).
pub fn ssim_map(
    a: ArrayViewD<f32>,
    b: ArrayViewD<f32>,
    data_range: f64,
) -> Result<ArrayD<f64>, MetricError> {
    if a.shape() != b.shape() {
        return Err(MetricError::Shape(a.shape().to_vec(), b.shape().to_vec()));
    }
    if a.shape().iter().any(|&n| n < 2 * RADIUS + 1) {
        return Err(MetricError::TooSmall(2 * RADIUS + 1, a.shape().to_vec()));
    }
    check_range(data_range)?;
    let x = a.mapv(f64::from);
    let y = b.mapv(f64::from);
    let (ux, uy) = (filter(&x), filter(&y));
    let uxx = filter(&(&x * &x));
    let uyy = filter(&(&y * &y));
    let uxy = filter(&(&x * &y));
    let c1 = (K1 * data_range).powi(2);
    let c2 = (K2 * data_range).powi(2);
    Ok(Zip::from(&ux)
        .and(&uy)
        .and(&uxx)
        .and(&uyy)
        .and(&uxy)
        .map_collect(|&mx, &my, &xx, &yy, &xy| {
            let (vx, vy, vxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
            ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        }))
}

/// Mean of an SSIM map over its valid region (RADIUS voxels cropped from every border), as
/// scikit-image reports it.
pub fn valid_mean(map: &ArrayD<f64>) -> f64 {
    let mut v = map.view();
    for axis in 0..map.ndim() {
        let n = map.shape()[axis];
        v.slice_axis_inplace(Axis(axis), Slice::from(RADIUS..n - RADIUS));
    }
    v.mean().unwrap_or(f64::NAN)
}

/// Mean of a map over the voxels where `mask` holds.
pub fn masked_mean(map: &ArrayD<f64>, mask: ArrayViewD<bool>) -> Result<f64, MetricError> {
    if map.shape() != mask.shape() {
        return Err(MetricError::Mask(
            mask.shape().to_vec(),
            map.shape().to_vec(),
        ));
    }
    let (mut sum, mut n) = (0.0, 0usize);
    Zip::from(map).and(&mask).for_each(|&v, &m| {
        if m {
            sum += v;
            n += 1;
        }
    });
    if n == 0 {
        return Err(MetricError::EmptyMask);
    }
    Ok(sum / n as f64)
}

/// SSIM of two images or volumes (2-D or 3-D) as scikit-image computes it.
pub fn ssim(a: ArrayViewD<f32>, b: ArrayViewD<f32>, data_range: f64) -> Result<f64, MetricError> {
    ssim_map(a, b, data_range).map(|m| valid_mean(&m))
}

/// Mean SSIM of two 2-D images (each side at least 11 pixels); `None` when it cannot be
/// computed.
pub fn ssim_2d(a: ArrayView2<f32>, b: ArrayView2<f32>, data_range: f64) -> Option<f64> {
    ssim(a.into_dyn(), b.into_dyn(), data_range).ok()
}
