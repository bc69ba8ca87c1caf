//! Metrics against their reference implementations.

mod common;

use medsynth::metrics::ssim_2d;
use ndarray::Array2;
use rand::{Rng, SeedableRng};

#[test]
fn ssim_matches_scikit_image() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (h, w) = (37, 29);
    let mut pairs: Vec<(Array2<f32>, Array2<f32>)> = Vec::new();
    // A smooth image against noisy, shifted, scaled and unrelated versions of itself.
    let base = Array2::from_shape_fn((h, w), |(y, x)| {
        ((y as f32 / 5.0).sin() + (x as f32 / 7.0).cos()) / 2.0
    });
    let noise = Array2::from_shape_fn((h, w), |_| rng.random::<f32>() - 0.5);
    pairs.push((base.clone(), base.clone()));
    pairs.push((base.clone(), &base + &(&noise * 0.2)));
    pairs.push((base.clone(), base.mapv(|v| 0.7 * v + 0.1)));
    pairs.push((base.clone(), noise.clone()));
    pairs.push((
        base.clone(),
        Array2::from_shape_fn((h, w), |(y, x)| base[[(y + 2) % h, x]]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.f32");
    let mut bytes = Vec::new();
    for (a, b) in &pairs {
        for v in a.iter().chain(b.iter()) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(&file, bytes).unwrap();
    let out = common::run_python(
        "ssim_reference.py",
        &[&file, "37".as_ref(), "29".as_ref(), "2.0".as_ref()],
    );
    let want: Vec<f64> = serde_json::from_str(&out).unwrap();
    for ((a, b), want) in pairs.iter().zip(want) {
        let got = ssim_2d(a.view(), b.view(), 2.0).unwrap();
        assert!(
            (got - want).abs() < 1e-6,
            "medsynth {got}, scikit-image {want}"
        );
    }
    // Too small or mismatched images have no SSIM.
    assert!(ssim_2d(base.view(), Array2::zeros((h, w - 1)).view(), 2.0).is_none());
    assert!(
        ssim_2d(
            Array2::zeros((10, 10)).view(),
            Array2::zeros((10, 10)).view(),
            2.0
        )
        .is_none()
    );
}
