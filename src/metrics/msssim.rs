//! MS-SSIM (Wang, Simoncelli & Bovik 2003) as pytorch-msssim's `ms_ssim` computes it: five
//! scales with the standard weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]; at each scale a
//! Gaussian window (11 taps, σ = 1.5) applied as a *valid* convolution along every axis of at
//! least 11 voxels; the contrast-structure mean `cs` of the first four scales and the SSIM mean
//! of the last, each clamped at 0 (`relu`), raised to their weights and multiplied; between
//! scales a 2 × 2 (× 2) average pool with zero padding `n % 2` counted in the mean
//! (`avg_pool2d(kernel_size=2, padding=n % 2)`). The shorter in-plane side must exceed
//! 10 · 2⁴ = 160 pixels.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Zip};

use super::MetricError;
use super::ssim::{RADIUS, check_range, gaussian_taps};

/// The standard scale weights.
pub const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/// Valid Gaussian filtering along every axis of at least 11 voxels.
fn filter_valid(x: &ArrayD<f64>) -> ArrayD<f64> {
    let k = gaussian_taps();
    let taps = k.len();
    let mut cur = x.clone();
    for axis in 0..x.ndim() {
        let n = cur.shape()[axis];
        if n < taps {
            continue;
        }
        let mut shape = cur.shape().to_vec();
        shape[axis] = n - 2 * RADIUS;
        let mut out = ArrayD::<f64>::zeros(IxDyn(&shape));
        Zip::from(out.lanes_mut(Axis(axis)))
            .and(cur.lanes(Axis(axis)))
            .par_for_each(|mut o, lane| {
                for (p, o) in o.iter_mut().enumerate() {
                    *o = k.iter().enumerate().map(|(i, w)| w * lane[p + i]).sum();
                }
            });
        cur = out;
    }
    cur
}

/// Mean SSIM and mean contrast-structure at one scale.
fn ssim_cs(x: &ArrayD<f64>, y: &ArrayD<f64>, data_range: f64) -> (f64, f64) {
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let (mx, my) = (filter_valid(x), filter_valid(y));
    let xx = filter_valid(&(x * x));
    let yy = filter_valid(&(y * y));
    let xy = filter_valid(&(x * y));
    let (mut ssim, mut cs, mut n) = (0f64, 0f64, 0usize);
    Zip::from(&mx)
        .and(&my)
        .and(&xx)
        .and(&yy)
        .and(&xy)
        .for_each(|&m1, &m2, &s11, &s22, &s12| {
            let (v1, v2, v12) = (s11 - m1 * m1, s22 - m2 * m2, s12 - m1 * m2);
            let c = (2.0 * v12 + c2) / (v1 + v2 + c2);
            ssim += (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1) * c;
            cs += c;
            n += 1;
        });
    (ssim / n as f64, cs / n as f64)
}

/// 2 × 2 (× 2) average pooling with zero padding `n % 2` on both sides of each axis, the
/// padding counted in the mean.
fn pool(x: &ArrayD<f64>) -> ArrayD<f64> {
    let d = x.ndim();
    let pads: Vec<usize> = x.shape().iter().map(|n| n % 2).collect();
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .zip(&pads)
        .map(|(n, p)| (n + 2 * p - 2) / 2 + 1)
        .collect();
    let cells = 1usize << d;
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let mut sum = 0.0;
        for corner in 0..cells {
            let mut at = Vec::with_capacity(d);
            let mut inside = true;
            for a in 0..d {
                let i = (2 * idx[a] + (corner >> a & 1)) as i64 - pads[a] as i64;
                if i < 0 || i >= x.shape()[a] as i64 {
                    inside = false;
                    break;
                }
                at.push(i as usize);
            }
            if inside {
                sum += x[IxDyn(&at)];
            }
        }
        sum / cells as f64
    })
}

/// MS-SSIM of two 2-D images or 3-D volumes of one shape.
pub fn ms_ssim(
    a: ArrayViewD<f32>,
    b: ArrayViewD<f32>,
    data_range: f64,
) -> Result<f64, MetricError> {
    if a.shape() != b.shape() {
        return Err(MetricError::Shape(a.shape().to_vec(), b.shape().to_vec()));
    }
    check_range(data_range)?;
    let d = a.ndim();
    let need = 2 * RADIUS * (1 << (WEIGHTS.len() - 1));
    let smaller = a.shape()[d.saturating_sub(2)..]
        .iter()
        .copied()
        .min()
        .unwrap_or(0);
    if !(2..=3).contains(&d) || smaller <= need {
        return Err(MetricError::Other(format!(
            "MS-SSIM needs 2-D or 3-D data whose shorter in-plane side exceeds {need} (five scales of an 11-tap window); the shape is {:?}",
            a.shape()
        )));
    }
    let mut x = a.mapv(f64::from);
    let mut y = b.mapv(f64::from);
    let mut value = 1.0;
    for (level, w) in WEIGHTS.iter().enumerate() {
        let (ssim, cs) = ssim_cs(&x, &y, data_range);
        if level + 1 < WEIGHTS.len() {
            value *= cs.max(0.0).powf(*w);
            x = pool(&x);
            y = pool(&y);
        } else {
            value *= ssim.max(0.0).powf(*w);
        }
    }
    Ok(value)
}
