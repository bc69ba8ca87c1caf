//! The Wilcoxon signed-rank test of paired scores, two-sided, as `scipy.stats.wilcoxon`
//! (1.17) computes it by default (`zero_method="wilcox"`, no continuity correction,
//! `method="auto"`): zero differences are dropped; absolute differences are ranked with ties
//! averaged; the statistic is the smaller of the positive and negative rank sums. The
//! p-value, with n the number of pairs (zeros included):
//! - n ≤ 50, no zero and no tie: exact, from the distribution of the rank sum;
//! - n ≤ 13 otherwise: the permutation test over every sign pattern of the differences;
//! - otherwise the normal approximation with the tie correction.

/// A test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wilcoxon {
    /// min(W+, W-).
    pub statistic: f64,
    /// Two-sided p-value; NaN when every difference is zero.
    pub p: f64,
    /// Pairs with a non-zero difference.
    pub n: usize,
    /// Whether `p` is exact.
    pub exact: bool,
}

/// Tests whether the paired values `x` and `y` differ (pairs where either is not finite are
/// left out).
pub fn wilcoxon(x: &[f64], y: &[f64]) -> Wilcoxon {
    let all: Vec<f64> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| a - b)
        .collect();
    let pairs = all.len();
    let d: Vec<f64> = all.into_iter().filter(|d| *d != 0.0).collect();
    let zeros = pairs - d.len();
    let n = d.len();
    if n == 0 {
        return Wilcoxon {
            statistic: 0.0,
            p: f64::NAN,
            n,
            exact: false,
        };
    }
    // Average ranks of |d|.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| d[a].abs().total_cmp(&d[b].abs()));
    let mut ranks = vec![0.0; n];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[order[j + 1]].abs() == d[order[i]].abs() {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        ties.push((j - i + 1) as f64);
        i = j + 1;
    }
    let plus: f64 = (0..n).filter(|&k| d[k] > 0.0).map(|k| ranks[k]).sum();
    let total = (n * (n + 1)) as f64 / 2.0;
    let statistic = plus.min(total - plus);
    let tied = ties.iter().any(|&t| t > 1.0);
    if pairs <= 50 && (tied || zeros > 0) && pairs <= 13 {
        // Every sign pattern of the non-zero differences (a zero's sign changes nothing),
        // with scipy's relative tolerance for ties with the observed sum.
        let patterns = 1u32 << n;
        let (mut less, mut greater) = (0u32, 0u32);
        for pattern in 0..patterns {
            let sum: f64 = (0..n)
                .filter(|k| pattern & (1 << k) != 0)
                .map(|k| ranks[k])
                .sum();
            less += u32::from(sum <= plus * (1.0 + 1e-14));
            greater += u32::from(sum >= plus * (1.0 - 1e-14));
        }
        return Wilcoxon {
            statistic,
            p: (2.0 * f64::from(less.min(greater)) / f64::from(patterns)).min(1.0),
            n,
            exact: true,
        };
    }
    if pairs <= 50 && !tied && zeros == 0 {
        // counts[s]: sign patterns with W+ = s.
        let max = n * (n + 1) / 2;
        let mut counts = vec![0f64; max + 1];
        counts[0] = 1.0;
        for r in 1..=n {
            for s in (r..=max).rev() {
                counts[s] += counts[s - r];
            }
        }
        let all: f64 = counts.iter().sum();
        let below: f64 = counts[..=(statistic.round() as usize)].iter().sum();
        return Wilcoxon {
            statistic,
            p: (2.0 * below / all).min(1.0),
            n,
            exact: true,
        };
    }
    let mean = total / 2.0;
    let var = (n * (n + 1) * (2 * n + 1)) as f64 / 24.0
        - ties.iter().map(|t| t * t * t - t).sum::<f64>() / 48.0;
    let z = (plus - mean) / var.sqrt();
    Wilcoxon {
        statistic,
        p: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
        n,
        exact: false,
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}
