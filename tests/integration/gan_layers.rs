//! GAN layers. Spectral normalization: the power-iteration σ converges to the largest singular value of
//! the weight matrix (computed here in float64 from the eigenvalues of WᵀW), and the
//! normalized weight has spectral norm 1; u advances only on training passes. The SAGAN
//! attention block is the identity at γ = 0 and its map is a distribution per position; the
//! hinge and L1 losses equal their definitions on hand-computed values.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use medsynth::metrics::fid::symmetric_eigenvalues;
use medsynth::models::spectral::{SpectralConv2d, SpectralLinear};
use ndarray::Array2;

/// Largest singular value of `w` `[rows, cols]`.
fn largest_singular_value(w: &Array2<f64>) -> f64 {
    let gram = w.t().dot(w);
    symmetric_eigenvalues(&gram)
        .into_iter()
        .fold(0f64, f64::max)
        .sqrt()
}

fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn power_iteration_converges_to_the_largest_singular_value() {
    let device = Device::flex();
    let (o, i, k) = (12, 5, 3);
    let w = weights(o * i * k * k, 1);
    let mut conv = SpectralConv2d::new([i, o], k, 1, 1, true, &device);
    conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [o, i, k, k]),
        &device,
    ));
    let matrix =
        Array2::from_shape_vec((o, i * k * k), w.iter().map(|&v| f64::from(v)).collect()).unwrap();
    let want = largest_singular_value(&matrix);
    // Without updates, u stays where it is.
    let before = conv.u.value().to_data();
    let first = conv.sigma(false).into_scalar::<f32>();
    assert_eq!(conv.u.value().to_data(), before);
    assert!(
        f64::from(first) <= want * (1.0 + 1e-5),
        "σ estimates never exceed σ_max"
    );
    for _ in 0..300 {
        conv.sigma(true);
    }
    let got = f64::from(conv.sigma(false).into_scalar::<f32>());
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    assert_ne!(conv.u.value().to_data(), before);
    // The layer runs with W / σ.
    let x = Tensor::<4>::ones([1, i, 6, 6], &device);
    assert_eq!(conv.forward(x, false).dims(), [1, o, 6, 6]);
}

#[test]
fn a_normalized_linear_layer_has_spectral_norm_one() {
    let device = Device::flex();
    let (i, o) = (9, 7);
    let w = weights(i * o, 2);
    let mut lin = SpectralLinear::new(i, o, false, &device);
    lin.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [i, o]), &device));
    for _ in 0..300 {
        lin.sigma(true);
    }
    // The layer applied to the identity gives its normalized weight.
    let eye = Tensor::<2>::eye(i, &device);
    let normalized = lin
        .forward(eye, false)
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    let m =
        Array2::from_shape_vec((i, o), normalized.iter().map(|&v| f64::from(v)).collect()).unwrap();
    let s = largest_singular_value(&m);
    assert!((s - 1.0).abs() < 1e-4, "{s}");
}

#[test]
fn the_sagan_attention_block_starts_as_the_identity_and_its_map_is_a_distribution() {
    use medsynth::models::sagan::SaganAttention;
    let device = Device::flex();
    let (b, c, h, w) = (2, 16, 5, 6);
    let x = Tensor::<4>::from_data(
        TensorData::new(weights(b * c * h * w, 3), [b, c, h, w]),
        &device,
    );
    let mut block = SaganAttention::new(c, &device);
    let (y, beta) = block.forward(x.clone(), false);
    assert_eq!(y.to_data(), x.to_data(), "γ = 0 is the identity");
    assert_eq!(beta.dims(), [b, h * w, h * w]);
    let rows = beta.sum_dim(2).to_data().try_to_vec::<f32>().unwrap();
    assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-5), "{rows:?}");
    // With γ ≠ 0 the block mixes in the attended features.
    block.gamma = Param::from_tensor(Tensor::ones([1], &device));
    let (y, _) = block.forward(x.clone(), false);
    assert_eq!(y.dims(), [b, c, h, w]);
    assert_ne!(y.to_data(), x.to_data());
}

#[test]
fn hinge_and_l1_losses_match_their_definitions() {
    use medsynth::train::gan_loss::{discriminator_hinge, generator_hinge, l1};
    let device = Device::flex();
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
    let (real, fake) = ([2.0f32, 0.5, -1.0, 0.0], [-2.0f32, 0.5, 1.5, -0.25]);
    // max(0, 1 - r): 0, 0.5, 2, 1 -> mean 0.875; max(0, 1 + f): 0, 1.5, 2.5, 0.75 -> 1.1875.
    let d = discriminator_hinge(t(&real), t(&fake)).into_scalar::<f32>();
    assert!((d - (0.875 + 1.1875)).abs() < 1e-6, "{d}");
    // -mean(f) = -(-2 + 0.5 + 1.5 - 0.25) / 4 = 0.0625.
    let g = generator_hinge(t(&fake)).into_scalar::<f32>();
    assert!((g - 0.0625).abs() < 1e-6, "{g}");
    // 10 · mean |f - r| = 10 · (4 + 0 + 2.5 + 0.25) / 4 = 16.875.
    let l = l1(t(&fake), t(&real), 10.0).into_scalar::<f32>();
    assert!((l - 16.875).abs() < 1e-5, "{l}");
}
