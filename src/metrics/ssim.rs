//! SSIM (Wang et al. 2004) as scikit-image's `structural_similarity(gaussian_weights=True,
//! sigma=1.5, use_sample_covariance=False, data_range=R)` computes it: local means, variances
//! and covariance from a Gaussian filter (σ = 1.5, truncated at 3.5 σ: 11 taps, scipy's
//! `reflect` borders), K1 = 0.01, K2 = 0.03, and the mean of the SSIM map over the valid region
//! (5 pixels cropped from every border). Arithmetic in f64.

use ndarray::{Array2, ArrayView2, s};

const SIGMA: f64 = 1.5;
const RADIUS: usize = 5;

fn kernel() -> [f64; 2 * RADIUS + 1] {
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

/// Separable Gaussian filter of a 2-D image.
fn filter(x: &Array2<f64>) -> Array2<f64> {
    let k = kernel();
    let (h, w) = x.dim();
    let r = RADIUS as i64;
    let mut tmp = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for c in 0..w {
            tmp[[y, c]] = (0..k.len())
                .map(|i| k[i] * x[[y, reflect(c as i64 + i as i64 - r, w)]])
                .sum();
        }
    }
    let mut out = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for c in 0..w {
            out[[y, c]] = (0..k.len())
                .map(|i| k[i] * tmp[[reflect(y as i64 + i as i64 - r, h), c]])
                .sum();
        }
    }
    out
}

/// Mean SSIM of two images of one shape (each side at least 11 pixels), with `data_range` the
/// range of possible values (e.g. 2 for images in [-1, 1]).
pub fn ssim_2d(a: ArrayView2<f32>, b: ArrayView2<f32>, data_range: f64) -> Option<f64> {
    let (h, w) = a.dim();
    if b.dim() != (h, w) || h < 2 * RADIUS + 1 || w < 2 * RADIUS + 1 || data_range <= 0.0 {
        return None;
    }
    let x = a.mapv(f64::from);
    let y = b.mapv(f64::from);
    let (ux, uy) = (filter(&x), filter(&y));
    let uxx = filter(&(&x * &x));
    let uyy = filter(&(&y * &y));
    let uxy = filter(&(&x * &y));
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let map = ndarray::Zip::from(&ux)
        .and(&uy)
        .and(&uxx)
        .and(&uyy)
        .and(&uxy)
        .map_collect(|&mx, &my, &xx, &yy, &xy| {
            let (vx, vy, vxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
            ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        });
    let valid = map.slice(s![RADIUS..h - RADIUS, RADIUS..w - RADIUS]);
    valid.mean()
}
