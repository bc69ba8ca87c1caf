//! Metrics against their reference implementations.

use crate::common;

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

/// Writes float32 arrays one after the other.
fn write_f32(path: &std::path::Path, arrays: &[&ndarray::ArrayD<f32>]) {
    let mut bytes = Vec::new();
    for a in arrays {
        for v in a.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-6 * want.abs().max(1.0);
    assert!(
        (got - want).abs() < tol,
        "{what}: medsynth {got}, reference {want}"
    );
}

#[test]
fn volume_and_brasyn_scores_match_scikit_image_and_numpy() {
    use medsynth::metrics::protocol::score;
    use medsynth::spec::{Metric, Protocol};
    let shape = [40, 44, 36];
    let (subject, vols, _) = common::phantom_contrasts(shape, 5.0, 3);
    let frame = |i: usize| vols[i].frame(0).to_owned().into_dyn();
    let label = subject.label.mapv(f32::from).into_dyn();
    let real = frame(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let noisy = real.mapv(|v| v + 40.0 * (rng.random::<f32>() - 0.5));
    let other = frame(1).mapv(|v| 0.8 * v + 15.0);
    let triples = [(&real, &noisy), (&real, &other)];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("triples.f32");
    let flat: Vec<&ndarray::ArrayD<f32>> =
        triples.iter().flat_map(|(r, f)| [*r, *f, &label]).collect();
    write_f32(&file, &flat);
    let out = common::run_python(
        "metrics_reference.py",
        &[&file, "40,44,36".as_ref(), "0".as_ref()],
    );
    let want: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let metrics = [Metric::Ssim, Metric::Psnr, Metric::Mse, Metric::Mae];
    let key = |m: Metric| match m {
        Metric::Ssim => "ssim",
        Metric::Psnr => "psnr",
        Metric::Mse => "mse",
        _ => "mae",
    };
    for ((r, f), want) in triples.iter().zip(&want) {
        let volume = score(r.view(), f.view(), None, &metrics, Protocol::Volume, None).unwrap();
        assert_eq!(volume.len(), 4);
        for s in &volume {
            close(
                s.value,
                want["volume"][key(s.metric)].as_f64().unwrap(),
                key(s.metric),
            );
        }
        let brasyn = score(
            r.view(),
            f.view(),
            Some(label.view()),
            &metrics,
            Protocol::Brasyn,
            None,
        )
        .unwrap();
        // whole, tumour and healthy, four metrics each.
        assert_eq!(brasyn.len(), 12, "{brasyn:?}");
        for s in &brasyn {
            let w = want["brasyn"][s.region][key(s.metric)].as_f64().unwrap();
            close(
                s.value,
                w,
                &format!("brasyn {} {}", s.region, key(s.metric)),
            );
        }
    }
    // The foreground region (the head, as preprocessing finds it) in both protocols.
    for ((r, f), want) in triples.iter().zip(&want) {
        let volume = medsynth::volume::Volume {
            data: (*r)
                .clone()
                .into_dimensionality::<ndarray::Ix3>()
                .unwrap()
                .insert_axis(ndarray::Axis(3)),
            ..vols[2].clone()
        };
        let head = medsynth::preprocess::foreground_mask(&[&volume]).unwrap();
        for (protocol, name, label) in [
            (Protocol::Volume, "volume", None),
            (Protocol::Brasyn, "brasyn", Some(label.view())),
        ] {
            let scores = medsynth::metrics::protocol::score_regions(
                r.view(),
                f.view(),
                label,
                Some(head.view()),
                &metrics,
                protocol,
                None,
            )
            .unwrap();
            let foreground: Vec<_> = scores.iter().filter(|s| s.region == "foreground").collect();
            assert_eq!(foreground.len(), 4, "{name}: {scores:?}");
            for s in foreground {
                let w = want[name]["foreground"][key(s.metric)].as_f64().unwrap();
                close(s.value, w, &format!("{name} foreground {}", key(s.metric)));
            }
        }
    }
    // Identical volumes: SSIM 1, errors 0, PSNR infinite.
    let same = score(
        real.view(),
        real.view(),
        None,
        &metrics,
        Protocol::Volume,
        None,
    )
    .unwrap();
    assert!((same[0].value - 1.0).abs() < 1e-12 && same[1].value.is_infinite());
    // Bad input is an error, not a panic.
    let nan = real.mapv(|_| f32::NAN);
    assert!(
        score(
            real.view(),
            nan.view(),
            None,
            &metrics,
            Protocol::Volume,
            None
        )
        .is_err()
    );
    let small = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[40, 44, 35]));
    assert!(
        score(
            real.view(),
            small.view(),
            None,
            &metrics,
            Protocol::Volume,
            None
        )
        .is_err()
    );
}

/// The deterministic test images of the MS-SSIM golden file (see
/// tests/python/make_msssim_golden.py, which builds the same ones).
fn lcg_image(shape: &[usize], seed: u32, smooth: bool) -> ndarray::ArrayD<f32> {
    let mut state = seed;
    let d = shape.len();
    ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(shape), |idx| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (state >> 8) as f32 / (1u32 << 24) as f32;
        let (y, x) = (idx[d - 2] as f32, idx[d - 1] as f32);
        let z = if d == 3 { idx[0] as f32 } else { 0.0 };
        let pattern = (y / 9.0).sin() * (x / 13.0).cos() + 0.3 * (z / 3.0).sin();
        if smooth {
            pattern + 0.1 * noise
        } else {
            0.5 * pattern + noise
        }
    })
}

#[test]
fn ms_ssim_matches_pytorch_msssim() {
    use medsynth::metrics::ms_ssim;
    // Golden values from pytorch-msssim 1.0 in float64 (tests/python/make_msssim_golden.py).
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("fixtures/golden/ms_ssim.json")).unwrap(),
    )
    .unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let a = lcg_image(&shape, case["seed_a"].as_u64().unwrap() as u32, true);
        let b = lcg_image(&shape, case["seed_b"].as_u64().unwrap() as u32, false);
        let want = case["ms_ssim"].as_f64().unwrap();
        let got = ms_ssim(a.view(), b.view(), case["data_range"].as_f64().unwrap()).unwrap();
        assert!(
            (got - want).abs() < 1e-6,
            "{shape:?}: medsynth {got}, pytorch-msssim {want}"
        );
    }
    // Too small for five scales: an error naming the requirement.
    let small = lcg_image(&[100, 200], 1, true);
    let err = ms_ssim(small.view(), small.view(), 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("160"), "{err}");
}

/// The closed-form feature sets of tests/python/make_fid_golden.py.
fn fid_features(kind: &str, n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let (i, j) = (i as f64, j as f64);
        match kind {
            "a" => (0.37 * i * (j + 1.0) + 0.11 * j).sin() + 0.05 * j,
            "b" => 1.2 * (0.29 * i * (j + 2.0)).cos() + 0.1,
            _ => (0.37 * i * (j + 1.0) + 0.11 * j).sin() + 0.05 * j + 0.01 * (1.7 * i + j).cos(),
        }
    })
}

#[test]
fn frechet_distance_and_kid_match_pytorch_fid_and_torch_fidelity() {
    use medsynth::metrics::fid::{Gaussian, frechet_distance, kid, polynomial_mmd2};
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("fixtures/golden/fid.json")).unwrap(),
    )
    .unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let (n, d) = (
            case["n"].as_u64().unwrap() as usize,
            case["d"].as_u64().unwrap() as usize,
        );
        let x = fid_features(case["a"].as_str().unwrap(), n, d);
        let y = fid_features(case["b"].as_str().unwrap(), n, d);
        let (gx, gy) = (
            Gaussian::fit(x.view()).unwrap(),
            Gaussian::fit(y.view()).unwrap(),
        );
        let fd = frechet_distance(&gx, &gy).unwrap();
        let want = case["frechet"].as_f64().unwrap();
        // 1e-6 relative; distances that cancel to nearly zero are compared against the size
        // of the terms that cancel (tr Σ₁ + tr Σ₂).
        let scale = want
            .abs()
            .max(1e-6 * (gx.sigma.diag().sum() + gy.sigma.diag().sum()));
        assert!((fd - want).abs() <= 1e-6 * scale.max(1e-9), "{case}: {fd}");
        let m = polynomial_mmd2(x.view(), y.view()).unwrap();
        let want = case["mmd2"].as_f64().unwrap();
        assert!((m - want).abs() <= 1e-6 * want.abs(), "{case}: {m}");
    }
    // KID over all rows in one subset is the MMD² itself; subsets are seeded.
    let (x, y) = (fid_features("a", 64, 12), fid_features("b", 64, 12));
    let (mean, sd) = kid(x.view(), y.view(), 1, 64, 0).unwrap();
    assert!((mean - polynomial_mmd2(x.view(), y.view()).unwrap()).abs() < 1e-12 && sd == 0.0);
    assert_eq!(
        kid(x.view(), y.view(), 10, 20, 3).unwrap(),
        kid(x.view(), y.view(), 10, 20, 3).unwrap()
    );
}

#[test]
fn the_symmetric_eigensolver_reconstructs_its_matrix() {
    let n = 40;
    let b = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let a = b.t().dot(&b) + Array2::<f64>::eye(n) * 0.5;
    let (values, vectors) = medsynth::metrics::fid::symmetric_eigen(&a);
    let back = (&vectors * &ndarray::Array1::from(values.clone())).dot(&vectors.t());
    let err = (&back - &a).mapv(f64::abs).fold(0f64, |m, &v| m.max(v));
    assert!(err < 1e-9 * a.mapv(f64::abs).sum(), "{err}");
    assert!(values.iter().all(|&v| v >= 0.5 - 1e-9));
    let trace: f64 = values.iter().sum();
    assert!((trace - a.diag().sum()).abs() < 1e-9 * trace);
}

/// The Wilcoxon signed-rank test against scipy.stats.wilcoxon's defaults
/// (fixtures/golden/wilcoxon.json, from tests/python/make_wilcoxon_golden.py): exact p-values,
/// the permutation test of small samples with zeros or ties, and the normal approximation
/// of larger ones and of more than 50 pairs.
#[test]
fn wilcoxon_matches_scipy() {
    use medsynth::metrics::wilcoxon::wilcoxon;
    let text =
        std::fs::read_to_string(common::repo().join("fixtures/golden/wilcoxon.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let values = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let w = wilcoxon(&values("x"), &values("y"));
        let (stat, p) = (
            case["statistic"].as_f64().unwrap(),
            case["p"].as_f64().unwrap(),
        );
        let name = case["name"].as_str().unwrap();
        assert!(
            (w.statistic - stat).abs() < 1e-9,
            "{name}: statistic {} vs {stat}",
            w.statistic
        );
        assert!(
            (w.p - p).abs() < 1e-6 * p.max(1e-3),
            "{name}: p {} vs scipy {p}",
            w.p
        );
    }
    // Nothing to test: every pair equal.
    assert!(wilcoxon(&[1.0, 2.0], &[1.0, 2.0]).p.is_nan());
}
