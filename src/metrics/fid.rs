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

use super::MetricError;

/// Mean and covariance (`ddof = 1`, as `numpy.cov(rowvar=False)`) of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mu: Array1<f64>,
    pub sigma: Array2<f64>,
    /// The centred features `[N, D]` when there are fewer of them than dimensions: the
    /// covariance then has rank below N and the trace term is computed from an N × N matrix.
    centred: Option<Array2<f64>>,
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
        let centred = (n <= d).then_some(centred);
        Ok(Gaussian { mu, sigma, centred })
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix: Householder reduction to
/// tridiagonal form, then the implicit QL algorithm (EISPACK tred2/tql2). The working lower
/// triangle and the eigenvector matrix are kept transposed so every O(n³) loop runs along
/// contiguous rows.
pub fn symmetric_eigen(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let (d, q) = eigen(a, true);
    (d, q.t().to_owned())
}

/// The eigenvalues of a symmetric matrix (no eigenvectors: about a third of the work).
pub fn symmetric_eigenvalues(a: &Array2<f64>) -> Vec<f64> {
    eigen(a, false).0
}

/// Returns the eigenvalues and, when `vectors`, Qᵀ (eigenvectors as rows).
fn eigen(input: &Array2<f64>, vectors: bool) -> (Vec<f64>, Array2<f64>) {
    let n = input.nrows();
    // `a[[j, k]]` (j ≤ k) holds the working lower-triangle element L[k][j]; the input is
    // symmetric, so the input itself is the starting layout.
    let mut a = input.as_standard_layout().to_owned();
    // Householder vectors: `hv[[j, i]]` = V[j][i] (j < i).
    let mut hv = Array2::<f64>::zeros((n, n));
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    if n == 0 {
        return (d, Array2::zeros((0, 0)));
    }
    for j in 0..n {
        d[j] = a[[j, n - 1]];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = a[[j, i - 1]];
                a[[j, i]] = 0.0;
                hv[[j, i]] = 0.0;
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
                hv[[j, i]] = f;
                let row = a.row(j);
                let mut acc = e[j] + row[j] * f;
                for k in j + 1..i {
                    acc += row[k] * d[k];
                    e[k] += row[k] * f;
                }
                e[j] = acc;
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
                let mut row = a.row_mut(j);
                for k in j..i {
                    row[k] -= f * e[k] + g * d[k];
                }
                d[j] = row[i - 1];
                row[i] = 0.0;
            }
        }
        d[i] = h;
    }
    // The accumulation in Qᵀ layout, q[[j, k]] = V[k][j]: V starts as the Householder
    // vectors above the diagonal and the reduced matrix's diagonal on it.
    let mut q = Array2::<f64>::zeros(if vectors { (n, n) } else { (0, 0) });
    if vectors {
        for j in 0..n {
            q[[j, j]] = a[[j, j]];
            for i in j + 1..n {
                q[[i, j]] = hv[[j, i]];
            }
        }
        for i in 0..n - 1 {
            q[[i, n - 1]] = q[[i, i]];
            q[[i, i]] = 1.0;
            let h = d[i + 1];
            if h != 0.0 {
                for k in 0..=i {
                    d[k] = q[[i + 1, k]] / h;
                }
                let pivot = q.row(i + 1).slice(ndarray::s![..=i]).to_owned();
                for j in 0..=i {
                    let mut row = q.row_mut(j);
                    let g: f64 = (0..=i).map(|k| pivot[k] * row[k]).sum();
                    for k in 0..=i {
                        row[k] -= g * d[k];
                    }
                }
            }
            for k in 0..=i {
                q[[i + 1, k]] = 0.0;
            }
        }
        for j in 0..n {
            d[j] = q[[j, n - 1]];
            q[[j, n - 1]] = 0.0;
        }
        q[[n - 1, n - 1]] = 1.0;
    } else {
        for j in 0..n {
            d[j] = a[[j, j]];
        }
    }
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
                    if vectors {
                        let (mut top, mut bottom) =
                            q.multi_slice_mut((ndarray::s![i, ..], ndarray::s![i + 1, ..]));
                        for (x, y) in top.iter_mut().zip(bottom.iter_mut()) {
                            let hk = *y;
                            *y = s * *x + c * hk;
                            *x = c * *x - s * hk;
                        }
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
    (d, q)
}

/// tr (Σ₁Σ₂)^½, or `None` when it is not finite.
fn trace_sqrt_product(s1: &Array2<f64>, s2: &Array2<f64>) -> Result<Option<f64>, MetricError> {
    let (l1, v1) = symmetric_eigen(s1);
    let roots = Array1::from_iter(l1.iter().map(|&l| l.max(0.0).sqrt()));
    let root1 = (&v1 * &roots).dot(&v1.t());
    let a = root1.dot(s2).dot(&root1);
    let a = (&a + &a.t()) / 2.0;
    let la = symmetric_eigenvalues(&a);
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

/// tr (Σ₁Σ₂)^½ from the centred features when both sets are smaller than the dimension:
/// with Σ₁ = AᵀA/(n₁−1) and Σ₂ = BᵀB/(n₂−1), the non-zero eigenvalues of Σ₁Σ₂ are those of
/// M Mᵀ/((n₁−1)(n₂−1)) with M = ABᵀ (n₁ × n₂), a symmetric positive semi-definite matrix, so
/// the trace is exact from an eigendecomposition of the smaller side instead of two of D × D.
fn trace_sqrt_product_low_rank(a: &Array2<f64>, b: &Array2<f64>) -> Result<f64, MetricError> {
    let c = ((a.nrows() - 1) * (b.nrows() - 1)) as f64;
    let m = a.dot(&b.t());
    let g = if m.nrows() <= m.ncols() {
        m.dot(&m.t())
    } else {
        m.t().dot(&m)
    } / c;
    let g = (&g + &g.t()) / 2.0;
    let l = symmetric_eigenvalues(&g);
    let scale = l.iter().copied().fold(1.0f64, |x, y| x.max(y.abs()));
    if let Some(worst) = l
        .iter()
        .copied()
        .filter(|&v| v < -1e-9 * scale)
        .reduce(f64::min)
    {
        return Err(MetricError::Other(format!(
            "the covariance product has a negative eigenvalue {worst}"
        )));
    }
    Ok(l.iter().map(|&v| v.max(0.0).sqrt()).sum())
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
    if let (Some(x), Some(y)) = (&a.centred, &b.centred) {
        let tr = trace_sqrt_product_low_rank(x, y)?;
        return Ok(diff.dot(&diff) + a.sigma.diag().sum() + b.sigma.diag().sum() - 2.0 * tr);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace from N × N matrices equals the one from D × D eigendecompositions.
    #[test]
    fn the_low_rank_trace_equals_the_full_one() {
        let f = |n: usize, d: usize, k: f64| {
            Array2::from_shape_fn((n, d), |(i, j)| {
                ((i as f64 + 1.0) * (j as f64 * 0.37 + k)).sin() + 0.1 * j as f64
            })
        };
        for (n1, n2, d) in [(6, 9, 30), (12, 12, 40), (20, 7, 64)] {
            let (a, b) = (
                Gaussian::fit(f(n1, d, 0.3).view()).unwrap(),
                Gaussian::fit(f(n2, d, 1.1).view()).unwrap(),
            );
            let low = trace_sqrt_product_low_rank(
                a.centred.as_ref().unwrap(),
                b.centred.as_ref().unwrap(),
            )
            .unwrap();
            let full = trace_sqrt_product(&a.sigma, &b.sigma).unwrap().unwrap();
            assert!(
                (low - full).abs() <= 1e-6 * full.abs().max(1e-9),
                "{n1} {n2} {d}: {low} against {full}"
            );
        }
    }
}
