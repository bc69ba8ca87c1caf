//! Comparing two run folders: what a sharded run merged against what one process wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A small pipeline that trains, synthesizes, evaluates and exports, on 7 phantom subjects
/// stored LPS, tilted and anisotropic: the run the sharding tests split.
pub fn pipeline() -> String {
    super::Pipeline::tiny("shards")
        .set("pipeline.seed", "11")
        .set("input.phantom", r#"{ subjects = 7, shape = [40, 44, 30], spacing_mm = [5.0, 4.5, 6.0], orientation = "LPS", tilt_deg = [0.0, 12.0, 0.0] }"#)
        .set("preprocess.split", "{ train = 0.5, val = 0.15, test = 0.35 }")
        .set("synthesize", r#"{ split = "test", sampler = { kind = "ddim", steps = 2 } }"#)
        .set("evaluate", r#"{ metrics = ["ssim", "psnr", "mae"] }"#)
        .set("output", r#"{ formats = ["nifti", "nnunet"], nnunet = { id = 7, name = "Shards" }, report = true }"#)
        .text()
}

/// Every file under `dir` except the shards' own folders, the Slurm scripts and job logs, and
/// hidden files (markers, locks), by path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<PathBuf, PathBuf> {
    fn walk(top: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(top).unwrap().to_owned();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || rel == Path::new("shards") || rel == Path::new("slurm") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(top, &path, out);
            } else {
                out.insert(rel, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A parquet table as sorted rows of `column=value` strings, without `skip_columns`; rows
/// whose `kind` is in `digest_free_kinds` also lose their `sha256`. Input paths in `sources`
/// are made relative to the run root `root` (one run may have been given it as `.`, another
/// as an absolute path).
fn table(
    path: &Path,
    root: &Path,
    skip_columns: &[&str],
    digest_free_kinds: &[&str],
) -> Vec<String> {
    let root = format!("{}/", root.display());
    let df = medsynth::dataset::read_parquet(path).unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| !skip_columns.contains(&n.as_str()))
        .collect();
    let mut rows = Vec::new();
    for i in 0..df.height() {
        let kind = df
            .column("kind")
            .ok()
            .map(|c| c.get(i).unwrap().to_string().trim_matches('"').to_owned());
        let free = kind.is_some_and(|k| digest_free_kinds.contains(&k.as_str()));
        let row: Vec<String> = names
            .iter()
            .filter(|n| !(free && n.as_str() == "sha256"))
            .map(|n| {
                let value = df.column(n).unwrap().get(i).unwrap().to_string();
                let value = if n == "sources" {
                    value
                        .replace(&root, "")
                        .replace("\"./", "\"")
                        .replace(";./", ";")
                } else {
                    value
                };
                format!("{n}={value}")
            })
            .collect();
        rows.push(row.join(" | "));
    }
    rows.sort();
    rows
}

/// The tensor bytes of a safetensors file (its header, which names the checkpoint, left out).
fn tensor_bytes(bytes: &[u8]) -> &[u8] {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    &bytes[8 + n..]
}

/// Asserts that the run folders `a` and `b` hold the same files: byte-equal volumes and
/// exports, equal tables after sorting, equal tensors in the slice files.
///
/// Left out, because they differ between two single-process runs of the same file too:
/// timestamps and training speed (so the training log's digest); the checkpoints' bytes and the digests that follow from
/// them (burn gives every parameter a random id, which is saved with the weights); and the
/// report's text, which prints those digests (its pictures are compared).
pub fn assert_same_run(a: &Path, b: &Path) {
    assert_same_run_but(a, b, &[]);
}

/// [`assert_same_run`], with the table columns `columns` left out too.
pub fn assert_same_run_but(a: &Path, b: &Path, columns: &[&str]) {
    let (fa, fb) = (files(a), files(b));
    let (ka, kb): (BTreeSet<&PathBuf>, BTreeSet<&PathBuf>) =
        (fa.keys().collect(), fb.keys().collect());
    assert_eq!(
        ka,
        kb,
        "different files: only in {}: {:?}; only in {}: {:?}",
        a.display(),
        ka.difference(&kb).collect::<Vec<_>>(),
        b.display(),
        kb.difference(&ka).collect::<Vec<_>>()
    );
    let mut compared = 0;
    for (rel, pa) in &fa {
        let pb = &fb[rel];
        let name = rel.to_string_lossy();
        let in_checkpoints = rel.starts_with("checkpoints");
        if in_checkpoints && !name.ends_with("state.json") || name.starts_with("report.") {
            continue;
        }
        if name.ends_with(".parquet") {
            let mut skip = vec!["started", "finished", "steps_per_s", "checkpoint_sha256"];
            skip.extend_from_slice(columns);
            let free = ["checkpoint", "synthetic-slices", "train-log", "report"];
            let root = |run: &Path| run.parent().and_then(Path::parent).unwrap().to_owned();
            let (ta, tb) = (
                table(pa, &root(a), &skip, &free),
                table(pb, &root(b), &skip, &free),
            );
            if ta != tb {
                let count = |t: &[String]| {
                    let mut m: BTreeMap<String, usize> = BTreeMap::new();
                    for r in t {
                        *m.entry(r.clone()).or_default() += 1;
                    }
                    m.into_iter()
                        .map(|(r, n)| format!("{n}x {r}"))
                        .collect::<BTreeSet<String>>()
                };
                let (sa, sb) = (count(&ta), count(&tb));
                panic!(
                    "{name} differs ({} and {} rows)\nonly in {}:\n{:#?}\nonly in {}:\n{:#?}",
                    ta.len(),
                    tb.len(),
                    a.display(),
                    sa.difference(&sb).take(4).collect::<Vec<_>>(),
                    b.display(),
                    sb.difference(&sa).take(4).collect::<Vec<_>>()
                );
            }
        } else {
            let (x, y) = (std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
            if name.ends_with(".safetensors") {
                assert!(
                    tensor_bytes(&x) == tensor_bytes(&y),
                    "{name}: different tensors"
                );
            } else if name.ends_with("state.json") {
                // Wall-clock fields aside, the training state is the same.
                let strip = |v: &[u8]| {
                    let mut j: serde_json::Value = serde_json::from_slice(v).unwrap();
                    if let Some(o) = j.as_object_mut() {
                        o.retain(|k, _| !k.contains("time") && !k.contains("per_s"));
                    }
                    j
                };
                assert_eq!(strip(&x), strip(&y), "{name} differs");
            } else {
                assert!(x == y, "{name}: different bytes");
            }
        }
        compared += 1;
    }
    assert!(compared > 10, "only {compared} files compared");
}

/// Mean intensity of the real and the synthesized `target` (variant 0) over the voxels of a
/// phantom run's subject that lie inside the crop box (the preprocessed grid, put back on the
/// original one) but outside the head (T1 below 0.2 of its 99th percentile), per synthesized
/// subject: `(subject, real, synthesized, voxels)`. A grey box around the head shows as a
/// synthesized mean far above the real one.
pub fn background_levels(run_dir: &Path, target: &str) -> Vec<(String, f64, f64, usize)> {
    use medsynth::dataset::SliceSet;
    let set = SliceSet::load(&run_dir.join("synth/slices/variant-0"), None).unwrap();
    let subjects: BTreeSet<String> = set.rows.iter().map(|r| r.subject.clone()).collect();
    let mut out = Vec::new();
    for subject in subjects {
        let picked: Vec<usize> = (0..set.len())
            .filter(|&i| set.rows[i].subject == subject)
            .collect();
        // Every slice of the preprocessed grid, kept or not: the whole crop box.
        let first = &set.rows[picked[0]];
        let record: medsynth::preprocess::SubjectRecord =
            serde_json::from_str(&first.record).unwrap();
        let axis = medsynth::synth::volumes::axis_named(&first.axis).unwrap();
        let depth = record.grid.shape[medsynth::preprocess::voxel_axis(&record.grid, axis)];
        let all: Vec<medsynth::dataset::ManifestRow> = (0..depth)
            .map(|k| medsynth::dataset::ManifestRow {
                slice_index: k as u32,
                ..first.clone()
            })
            .collect();
        let rows: Vec<&medsynth::dataset::ManifestRow> = all.iter().collect();
        let ones = ndarray::Array4::from_elem((rows.len(), 1, set.dim().2, set.dim().3), 1.0f32);
        let (kept, _) =
            medsynth::synth::volumes::to_original_grid(&ones, &rows, 0, "kept").unwrap();
        let read = |path: PathBuf| medsynth::volume::nifti::read(&path).unwrap();
        let real = read(
            run_dir
                .join("phantom")
                .join(&subject)
                .join(format!("{target}.nii.gz")),
        );
        let t1 = read(run_dir.join("phantom").join(&subject).join("t1.nii.gz"));
        let fake = read(
            run_dir
                .join("synth/variant-0")
                .join(&subject)
                .join(format!("{target}.nii.gz")),
        );
        let p99 = {
            let mut v: Vec<f32> = t1.data.iter().copied().collect();
            let k = (0.99 * (v.len() - 1) as f64) as usize;
            *v.select_nth_unstable_by(k, f32::total_cmp).1
        };
        let (mut r, mut f, mut n) = (0.0f64, 0.0f64, 0usize);
        for (((k, t), x), y) in kept
            .data
            .iter()
            .zip(t1.data.iter())
            .zip(real.data.iter())
            .zip(fake.data.iter())
        {
            if *k > 0.5 && *t <= 0.2 * p99 {
                r += *x as f64;
                f += *y as f64;
                n += 1;
            }
        }
        let n_f = n.max(1) as f64;
        out.push((subject, r / n_f, f / n_f, n));
    }
    out
}
