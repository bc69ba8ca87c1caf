//! Set-level distances between feature sets: the Fréchet distance of their Gaussians (FID
//! when the features are InceptionV3 pool features) and the kernel inception distance (KID).
//!
//! The Fréchet distance follows pytorch-fid's `calculate_frechet_distance` (float64):
//!
//! d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½
//!
//! pytorch-fid takes `scipy.linalg.sqrtm(Σ₁Σ₂)`, retries with Σ + εI (ε = 1e-6) when that
//! is not finite, and refuses a result whose diagonal has an imaginary part above 1e-3. Here
//! tr (Σ₁Σ₂)^½ is computed as Σᵢ √λᵢ(A) with A = Σ₁^½ Σ₂ Σ₁^½ (symmetric, similar to Σ₁Σ₂, so
//! the same eigenvalues) from symmetric eigendecompositions, which is exact in real arithmetic
//! and better conditioned; the two checks keep their meaning: a non-finite result is retried
//! with εI, and an eigenvalue of A below zero by more than (1e-3)² is refused as the
//! imaginary component it would give `sqrtm`.
//!
//! KID (Bińkowski et al. 2018, as torch-fidelity and clean-fid compute it): the unbiased MMD²
//! with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::MetricError;

/// Mean and covariance (`ddof = 1`, as `numpy.cov(rowvar=False)`) of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mu: Array1<f64>,
    pub sigma: Array2<f64>,
}

impl Gaussian {
    /// From features `[N, D]`, N ≥ 2.
    pub fn fit(features: ArrayView2<f64>) -> Result<Self, MetricError> {
        let (n, d) = features.dim();
        if n < 2 {
            return Err(MetricError::Other(format!(
                "a covariance needs at least 2 feature vectors, got {n}"
            )));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(MetricError::Other(
                "the features hold non-finite values".into(),
            ));
        }
        let mu = features
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(d));
        let centred = &features - &mu;
        let sigma = centred.t().dot(&centred) / (n as f64 - 1.0);
        Ok(Gaussian { mu, sigma })
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix: Householder reduction to
/// tridiagonal form, then the implicit QL algorithm (EISPACK tred2/tql2).
pub fn symmetric_eigen(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = a.clone();
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    if n == 0 {
        return (d, v);
    }
    // tred2
    for j in 0..n {
        d[j] = v[[n - 1, j]];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[[i - 1, j]];
                v[[i, j]] = 0.0;
                v[[j, i]] = 0.0;
            }
        } else {
            for x in &mut d[..i] {
                *x /= scale;
                h += *x * *x;
            }
            let mut f = d[i - 1];
            let mut g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                f = d[j];
                v[[j, i]] = f;
                g = e[j] + v[[j, j]] * f;
                for k in j + 1..i {
                    g += v[[k, j]] * d[k];
                    e[k] += v[[k, j]] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[[k, j]] -= f * e[k] + g * d[k];
                }
                d[j] = v[[i - 1, j]];
                v[[i, j]] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[[n - 1, i]] = v[[i, i]];
        v[[i, i]] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[[k, i + 1]] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[[k, i + 1]] * v[[k, j]]).sum();
                for k in 0..=i {
                    v[[k, j]] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[[k, i + 1]] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[[n - 1, j]];
        v[[n - 1, j]] = 0.0;
    }
    v[[n - 1, n - 1]] = 1.0;
    e[0] = 0.0;

    // tql2
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1 = 0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iterations = 0;
            loop {
                iterations += 1;
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in &mut d[l + 2..n] {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        h = v[[k, i + 1]];
                        v[[k, i + 1]] = s * v[[k, i]] + c * h;
                        v[[k, i]] = c * v[[k, i]] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 || iterations > 60 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    (d, v)
}

/// `a · b` for square matrices, rows in parallel.
fn matmul(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let bt = b.t().as_standard_layout().to_owned();
    let rows: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let ai = a.row(i);
            (0..b.ncols()).map(|j| ai.dot(&bt.row(j))).collect()
        })
        .collect();
    Array2::from_shape_vec((n, b.ncols()), rows.concat()).unwrap_or_else(|_| Array2::zeros((0, 0)))
}

/// tr (Σ₁Σ₂)^½, or `None` when it is not finite.
fn trace_sqrt_product(s1: &Array2<f64>, s2: &Array2<f64>) -> Result<Option<f64>, MetricError> {
    let (l1, v1) = symmetric_eigen(s1);
    let roots = Array1::from_iter(l1.iter().map(|&l| l.max(0.0).sqrt()));
    let root1 = matmul(&(&v1 * &roots), &v1.t().to_owned());
    let a = matmul(&matmul(&root1, s2), &root1);
    let a = (&a + &a.t()) / 2.0;
    let (la, _) = symmetric_eigen(&a);
    if la.iter().any(|l| !l.is_finite()) {
        return Ok(None);
    }
    if let Some(worst) = la.iter().copied().filter(|&l| l < -1e-6).reduce(f64::min) {
        return Err(MetricError::Other(format!(
            "Imaginary component {}: the covariance product has a negative eigenvalue {worst}",
            (-worst).sqrt()
        )));
    }
    Ok(Some(la.iter().map(|&l| l.max(0.0).sqrt()).sum()))
}

/// The Fréchet distance between two Gaussians (pytorch-fid's `calculate_frechet_distance`
/// with `eps = 1e-6`).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> Result<f64, MetricError> {
    if a.mu.len() != b.mu.len() || a.sigma.dim() != b.sigma.dim() {
        return Err(MetricError::Other(format!(
            "Training and test mean vectors have different lengths ({} and {})",
            a.mu.len(),
            b.mu.len()
        )));
    }
    let diff = &a.mu - &b.mu;
    let tr = match trace_sqrt_product(&a.sigma, &b.sigma)? {
        Some(t) => t,
        None => {
            tracing::warn!(
                "fid calculation produces singular product; adding 1e-6 to diagonal of cov estimates"
            );
            let offset = Array2::<f64>::eye(a.mu.len()) * 1e-6;
            trace_sqrt_product(&(&a.sigma + &offset), &(&b.sigma + &offset))?.ok_or_else(|| {
                MetricError::Other("the covariance product has no finite square root".into())
            })?
        }
    };
    Ok(diff.dot(&diff) + a.sigma.diag().sum() + b.sigma.diag().sum() - 2.0 * tr)
}

/// The unbiased MMD² of two equally sized feature sets `[m, D]` with the cubic polynomial
/// kernel (xᵀy / D + 1)³.
pub fn polynomial_mmd2(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<f64, MetricError> {
    let (m, d) = x.dim();
    if y.dim() != (m, d) || m < 2 {
        return Err(MetricError::Other(format!(
            "KID needs two feature sets of one shape with at least 2 rows, got {:?} and {:?}",
            x.dim(),
            y.dim()
        )));
    }
    let k = |a: ArrayView2<f64>, b: ArrayView2<f64>| {
        a.dot(&b.t()).mapv(|v| (v / d as f64 + 1.0).powi(3))
    };
    let (kxx, kyy, kxy) = (k(x, x), k(y, y), k(x, y));
    let off = |kk: &Array2<f64>| kk.sum() - kk.diag().sum();
    let m = m as f64;
    Ok((off(&kxx) + off(&kyy)) / (m * (m - 1.0)) - 2.0 * kxy.sum() / (m * m))
}

/// KID: the mean and standard deviation of [`polynomial_mmd2`] over `subsets` random subsets
/// of `size` rows of each set (drawn without replacement within a subset, seeded).
pub fn kid(
    real: ArrayView2<f64>,
    fake: ArrayView2<f64>,
    subsets: usize,
    size: usize,
    seed: u64,
) -> Result<(f64, f64), MetricError> {
    let size = size.min(real.nrows()).min(fake.nrows());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(subsets);
    for _ in 0..subsets.max(1) {
        let a = sample(&mut rng, real.nrows(), size).into_vec();
        let b = sample(&mut rng, fake.nrows(), size).into_vec();
        values.push(polynomial_mmd2(
            real.select(Axis(0), &a).view(),
            fake.select(Axis(0), &b).view(),
        )?);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok((mean, sd))
}
