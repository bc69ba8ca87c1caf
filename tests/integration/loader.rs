//! The batch loader: seeded shuffles that cover every slice once per epoch, tensors equal to
//! the stored slices, and augmentation that moves images and label together.

use std::collections::BTreeMap;

use medsynth::dataset::{Loader, ManifestRow, SliceSet, augment, write_manifest, write_shard};
use medsynth::spec::AugmentConfig;
use ndarray::{Array3, Array4, Axis, s};
use rand::SeedableRng;

/// A store of `n` slices over two subjects: channel 0 an image, channel 1 the same picture as
/// a label (0, 1, 2), 24 x 20 pixels.
fn store(n: usize) -> (tempfile::TempDir, SliceSet) {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (24, 20);
    let mut rows = Vec::new();
    for (subject, range) in [("sub-001", 0..n / 2), ("sub-002", n / 2..n)] {
        let count = range.len();
        let data = Array4::from_shape_fn((count, 2, h, w), |(k, c, y, x)| {
            let i = range.start + k;
            let blob = (y as i64 - 8 - (i % 5) as i64).pow(2) + (x as i64 - 9).pow(2);
            let label = if blob < 9 {
                2.0
            } else if blob < 30 {
                1.0
            } else {
                0.0
            };
            if c == 1 {
                label
            } else {
                label + 0.001 * i as f32
            }
        });
        let shard = format!("shards/{subject}.safetensors");
        write_shard(
            &dir.path().join(&shard),
            &data,
            &["t1".to_owned(), "label".to_owned()],
            &BTreeMap::new(),
        )
        .unwrap();
        for k in 0..count {
            rows.push(ManifestRow {
                subject: subject.to_owned(),
                split: "train".to_owned(),
                axis: "axial".to_owned(),
                slice_index: k as u32,
                world_position_mm: k as f64,
                shard: shard.clone(),
                row: k as u32,
                channels_real: "t1,label".to_owned(),
                channels_missing: String::new(),
                source_sha256: String::new(),
                record: "{}".to_owned(),
            });
        }
    }
    write_manifest(&dir.path().join("manifest.parquet"), &rows).unwrap();
    let set = SliceSet::load(dir.path(), Some("train")).unwrap();
    (dir, set)
}

fn values(b: &medsynth::dataset::Batch) -> Vec<f32> {
    b.values.clone()
}

#[test]
fn each_epoch_is_a_seeded_permutation_and_batches_hold_the_stored_values() {
    let (_dir, set) = store(22);
    assert_eq!(set.len(), 22);
    let loader = Loader::new(&set, 4, AugmentConfig::default(), 11);
    assert_eq!(loader.batches(), 6);
    let mut seen: Vec<usize> = loader.epoch(0).flat_map(|b| b.unwrap().rows).collect();
    let first = seen.clone();
    seen.sort();
    assert_eq!(seen, (0..22).collect::<Vec<_>>(), "every slice once");
    assert_ne!(first, (0..22).collect::<Vec<_>>(), "shuffled");
    let again: Vec<usize> = loader.epoch(0).flat_map(|b| b.unwrap().rows).collect();
    assert_eq!(first, again, "same seed, same order");
    let next: Vec<usize> = loader.epoch(1).flat_map(|b| b.unwrap().rows).collect();
    assert_ne!(first, next, "a new order each epoch");
    let other: Vec<usize> = Loader::new(&set, 4, AugmentConfig::default(), 12)
        .epoch(0)
        .flat_map(|b| b.unwrap().rows)
        .collect();
    assert_ne!(first, other, "another seed, another order");
    // Without augmentation a batch is exactly the stored slices, [B, C, H, W].
    let b = loader.batch(0, 5).unwrap().unwrap();
    assert_eq!(b.dims, [2, 2, 24, 20]);
    let want: Vec<f32> = b
        .rows
        .iter()
        .flat_map(|&r| stored(&_dir, &set, r))
        .collect();
    assert_eq!(values(&b), want);
    // The set reads slices from the store when asked: each equals the shard's row.
    for r in [0, 7, 21] {
        let got: Vec<f32> = set.slice(r).unwrap().iter().copied().collect();
        assert_eq!(got, stored(&_dir, &set, r));
    }
}

/// Slice `r` of `set` as the shard file holds it, read whole.
fn stored(dir: &tempfile::TempDir, set: &SliceSet, r: usize) -> Vec<f32> {
    let row = &set.rows[r];
    let (t, _) = medsynth::dataset::read_shard(&dir.path().join(&row.shard)).unwrap();
    t.index_axis(Axis(0), row.row as usize)
        .iter()
        .copied()
        .collect()
}

#[test]
fn a_shard_truncated_after_loading_is_an_error_naming_it() {
    let (dir, set) = store(8);
    let shard = dir.path().join(&set.rows[7].shard);
    let len = std::fs::metadata(&shard).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap();
    f.set_len(len / 2).unwrap();
    let err = (0..set.len())
        .map(|r| set.slice(r))
        .find_map(Result::err)
        .expect("a read past the end fails");
    assert!(err.to_string().contains(&*shard.to_string_lossy()), "{err}");
    let loader = Loader::in_order(&set, 8);
    assert!(loader.batch(0, 0).is_err());
}

#[test]
fn augmentation_moves_image_and_label_together_and_is_reproducible() {
    let (_dir, set) = store(10);
    let slice = set.slice(3).unwrap();
    let slice = slice.view();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // A certain flip mirrors the columns of every channel.
    let flipped = augment(
        slice,
        &AugmentConfig {
            flip: 1.0,
            ..AugmentConfig::default()
        },
        Some(1),
        &mut rng,
    );
    assert_eq!(flipped, slice.slice(s![.., .., ..;-1]).to_owned());

    let cfg = AugmentConfig {
        flip: 0.5,
        rotate_deg: 15.0,
        scale: 0.1,
        intensity: 0.2,
    };
    let mut moved_any = false;
    for seed in 0..8 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let out: Array3<f32> = augment(slice, &cfg, Some(1), &mut rng);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(out, augment(slice, &cfg, Some(1), &mut rng), "reproducible");
        // The label keeps its values (nearest neighbour, never jittered).
        assert!(
            out.index_axis(Axis(0), 1)
                .iter()
                .all(|v| [0.0, 1.0, 2.0].contains(v))
        );
        moved_any |= out.index_axis(Axis(0), 1) != slice.index_axis(Axis(0), 1);
        // The image (the label picture, jittered) has its blob where the label has it: the
        // centroids of the brightest class agree to a fraction of a pixel.
        let centroid = |plane: ndarray::ArrayView2<f32>, keep: &dyn Fn(f32) -> bool| {
            let (mut sy, mut sx, mut n) = (0.0, 0.0, 0.0);
            for ((y, x), &v) in plane.indexed_iter() {
                if keep(v) {
                    sy += y as f64;
                    sx += x as f64;
                    n += 1.0;
                }
            }
            (sy / n, sx / n)
        };
        let image = out.index_axis(Axis(0), 0);
        let peak = image.iter().copied().fold(f32::MIN, f32::max);
        let (iy, ix) = centroid(image, &|v| v > 0.75 * peak);
        let (ly, lx) = centroid(out.index_axis(Axis(0), 1), &|v| v == 2.0);
        assert!(
            (iy - ly).abs() < 0.75 && (ix - lx).abs() < 0.75,
            "seed {seed}: image ({iy}, {ix}) label ({ly}, {lx})"
        );
    }
    assert!(moved_any, "rotation and scaling change the label");

    // Through the loader: the same seed gives the same augmented batch.
    let a = Loader::new(&set, 3, cfg.clone(), 5)
        .batch(2, 1)
        .unwrap()
        .unwrap();
    let b = Loader::new(&set, 3, cfg, 5).batch(2, 1).unwrap().unwrap();
    assert_eq!(values(&a), values(&b));
}

#[test]
fn a_split_without_slices_or_mixed_slice_sizes_is_an_error() {
    let (dir, _) = store(6);
    let err = SliceSet::load(dir.path(), Some("test"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no slice in split test"), "{err}");
    // A shard of another size.
    write_shard(
        &dir.path().join("shards/sub-002.safetensors"),
        &Array4::zeros((3, 2, 16, 16)),
        &["t1".to_owned(), "label".to_owned()],
        &BTreeMap::new(),
    )
    .unwrap();
    let err = SliceSet::load(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("preprocess.size"), "{err}");
}
