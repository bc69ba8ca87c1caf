//! The FID InceptionV3 against pytorch-fid: with the same deterministic, untrained weights
//! (generated identically here and in tests/python/make_inception_golden.py) on the same
//! images, the pool3 features agree to 1e-3; every key of the FID state dict layout loads;
//! and the .pth reader maps a torch-saved layer onto the network.

use crate::common;

use burn::tensor::Device;
use medsynth::metrics::inception::FidInception;
use ndarray::Array4;
use serde_json::Value;

/// The images of make_inception_golden.py: `[2, 3, 40, 48]`.
fn images() -> Array4<f32> {
    Array4::from_shape_fn((2, 3, 40, 48), |(n, c, y, x)| {
        let (x, y, c) = (x as f64, y as f64, c as f64);
        let v = if n == 0 {
            0.5 + 0.5 * (0.3 * x + 0.2 * y + c).sin() * (0.01 * x * y).cos()
        } else {
            0.5 + 0.45 * (0.05 * (x - 20.0).powi(2) / 10.0 + 0.17 * y).sin()
        };
        v as f32
    })
}

fn golden() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("fixtures/golden/inception.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn fid_inception_features_match_pytorch_fid_with_the_same_weights() {
    let g = golden();
    let tensors = common::inception::tensors(&g);
    // Every key of the FID layout is there (conv + 4 BatchNorm tensors per layer, fc).
    assert!(tensors.len() > 450, "{}", tensors.len());
    let device = Device::flex();
    let net =
        FidInception::load_safetensors_bytes(common::inception::safetensors(&tensors), &device)
            .unwrap();
    let features = net.features(&images(), 2, &device).unwrap();
    let want = g["features"].as_array().unwrap();
    let mut worst = 0f64;
    for (n, row) in want.iter().enumerate() {
        for (k, v) in row.as_array().unwrap().iter().enumerate() {
            worst = worst.max((features[[n, k]] - v.as_f64().unwrap()).abs());
        }
    }
    eprintln!("largest feature difference to pytorch-fid: {worst:.2e}");
    assert!(worst < 1e-3, "largest difference {worst}");
    // The images differ, so must their features (the comparison above is not vacuous).
    let spread = (0..2048)
        .map(|k| (features[[0, k]] - features[[1, k]]).abs())
        .fold(0f64, f64::max);
    assert!(spread > 0.05, "{spread}");

    // A state dict missing a layer is refused, naming what is missing.
    let partial: Vec<_> = tensors
        .iter()
        .filter(|(n, _, _)| !n.starts_with("Mixed_7c.branch_pool"))
        .cloned()
        .collect();
    let err =
        FidInception::load_safetensors_bytes(common::inception::safetensors(&partial), &device)
            .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_torch_saved_pth_maps_onto_the_network() {
    let device = Device::flex();
    let mut net = FidInception::new(&device);
    let applied = net
        .apply_pth_partial(&common::repo().join("fixtures/golden/inception_stem.pth"))
        .unwrap();
    assert_eq!(applied.len(), 5, "{applied:?}");
    let want = common::inception::values("Conv2d_1a_3x3.conv.weight", &[32, 3, 3, 3]);
    assert_eq!(net.stem_weights(), want);
}
