//! The trivial baselines: the regression recovers an exact linear relation, the histogram
//! match recovers a monotone intensity transform.

use medsynth::dataset::{ManifestRow, SliceSet};
use medsynth::synth::Generator;
use medsynth::synth::baseline::{HistogramBaseline, RegressionBaseline};
use ndarray::{Array4, Axis};

fn set(data: Array4<f32>, missing: &[&str]) -> SliceSet {
    let n = data.shape()[0];
    SliceSet::from_memory(
        vec!["a".into(), "b".into(), "t".into()],
        data,
        (0..n)
            .map(|i| ManifestRow {
                subject: format!("sub-{}", i % 2),
                split: "train".into(),
                axis: "axial".into(),
                slice_index: i as u32,
                world_position_mm: 0.0,
                shard: String::new(),
                row: 0,
                channels_real: String::new(),
                channels_missing: missing.join(","),
                source_sha256: String::new(),
                record: String::new(),
            })
            .collect(),
    )
}

fn inputs() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[test]
fn the_regression_baseline_recovers_a_linear_relation() {
    let mut data = Array4::<f32>::zeros((4, 3, 8, 8));
    for ((n, c, y, x), v) in data.indexed_iter_mut() {
        *v = match c {
            0 => ((n * 7 + y * 3 + x) % 11) as f32 / 11.0,
            1 => ((n + y * 5 + x * 2) % 13) as f32 / 13.0 - 0.5,
            _ => 0.0,
        };
    }
    let (a, b) = (
        data.index_axis(Axis(1), 0).to_owned(),
        data.index_axis(Axis(1), 1).to_owned(),
    );
    data.index_axis_mut(Axis(1), 2)
        .assign(&(&a * 2.0 - &b * 0.5 + 0.3));
    let train = set(data.clone(), &[]);
    let r = RegressionBaseline::fit(&train, &inputs(), "t").unwrap();
    for (got, want) in r.weights.iter().zip([2.0, -0.5, 0.3]) {
        assert!((got - want).abs() < 1e-5, "{:?}", r.weights);
    }
    let rows: Vec<&ManifestRow> = train.rows.iter().collect();
    let out = r.generate(&data, &rows, &vec![0; rows.len()]).unwrap();
    let err = (&out.index_axis(Axis(1), 0) - &data.index_axis(Axis(1), 2))
        .mapv(f32::abs)
        .fold(0f32, |m, &v| m.max(v));
    assert!(err < 1e-4, "{err}");
    // A missing input counts as zero.
    let gone = set(data.clone(), &["b"]);
    let rows: Vec<&ManifestRow> = gone.rows.iter().collect();
    let out = r.generate(&data, &rows, &vec![0; rows.len()]).unwrap();
    let want = &a * 2.0 + 0.3;
    assert!((out[[1, 0, 2, 3]] - want[[1, 2, 3]]).abs() < 1e-4);
}

#[test]
fn the_histogram_baseline_recovers_a_monotone_transform() {
    let mut data = Array4::<f32>::zeros((4, 3, 16, 16));
    for ((n, c, y, x), v) in data.indexed_iter_mut() {
        let a = ((n * 31 + y * 16 + x) % 97) as f32 / 97.0;
        *v = match c {
            0 => a,
            1 => 0.0,
            _ => a * a * 3.0 - 1.0,
        };
    }
    let train = set(data.clone(), &[]);
    let h = HistogramBaseline::fit(&train, &inputs(), "t").unwrap();
    let rows: Vec<&ManifestRow> = train.rows.iter().collect();
    let out = h.generate(&data, &rows, &vec![0; rows.len()]).unwrap();
    let err = (&out.index_axis(Axis(1), 0) - &data.index_axis(Axis(1), 2))
        .mapv(f32::abs)
        .fold(0f32, |m, &v| m.max(v));
    assert!(err < 0.02, "{err}");
}
