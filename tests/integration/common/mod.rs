//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run with it as the working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the medsynth binary with `args` from the repository root.
pub fn medsynth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(args)
        .current_dir(repo())
        .env_remove("MEDSYNTH_LOG")
        .output()
        .expect("the medsynth binary runs")
}

/// Runs `medsynth run --root ROOT FILE` with logging and FID weights from the environment
/// left out, so a run is the same wherever the tests run.
pub fn run_pipeline(root: &Path, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(["run", "--root"])
        .arg(root)
        .arg(file)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .output()
        .expect("the medsynth binary runs")
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Fails with the exit status and both streams unless `o` succeeded.
pub fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python interpreter with the reference packages (tests/python/requirements.txt):
/// MEDSYNTH_PYTHON, as tests/run.sh sets it, else `python3`.
pub fn python() -> String {
    std::env::var("MEDSYNTH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs a script from tests/python with the reference interpreter and returns its stdout.
/// Fails with instructions when the reference packages are not installed.
pub fn run_python(script: &str, args: &[&Path]) -> String {
    let py = python();
    let out = Command::new(&py)
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {py}: {e}; run the suite with tests/run.sh"));
    assert!(
        out.status.success(),
        "{script} failed under {py} (run the suite with tests/run.sh, which installs tests/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script prints UTF-8")
}

/// Corrupted copies of a file for no-panic tests: every `step`-th truncation, then `flipped`
/// copies with `flips` random single-bit flips each (fixed xorshift seed, so reproducible).
pub fn corrupted_copies(bytes: &[u8], step: usize, flipped: usize, flips: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..bytes.len())
        .step_by(step.max(1))
        .map(|n| bytes[..n].to_vec())
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..flipped {
        let mut b = bytes.to_vec();
        for _ in 0..flips {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = (rng as usize) % b.len();
            b[at] ^= 1 << (rng >> 61);
        }
        out.push(b);
    }
    out
}

/// A phantom subject with a tumour, its four contrasts as volumes (in `Contrast::ALL` order)
/// and its head mask (every non-background tissue).
pub fn phantom_contrasts(
    shape: [usize; 3],
    spacing_mm: f64,
    seed: u64,
) -> (
    medsynth::phantom::PhantomSubject,
    Vec<medsynth::volume::Volume>,
    ndarray::Array3<bool>,
) {
    use medsynth::phantom::{Contrast, PhantomConfig, generate};
    let s = generate(
        &PhantomConfig {
            shape,
            spacing_mm: [spacing_mm; 3],
            seed,
            tumour_fraction: 1.0,
            ..PhantomConfig::default()
        },
        0,
    );
    let vols = Contrast::ALL
        .iter()
        .map(|c| s.volume(*c).expect("every contrast is generated"))
        .collect();
    let mask = s.tissues.mapv(|t| t != 0);
    (s, vols, mask)
}

/// The middle `count` axial T1/T2 slices of one phantom, 32 x 32, normalized to [-1, 1].
pub fn t1_t2_slices(count: usize) -> medsynth::dataset::SliceSet {
    let (_, vols, _) = phantom_contrasts([40, 48, 36], 5.0, 4);
    let order = ["t1".to_owned(), "t2".to_owned()];
    use medsynth::preprocess::{cut_slices, prepare};
    use medsynth::spec::{NormalizeConfig, PreprocessSection, SliceAxis, SliceConfig};
    // Clipped at the percentiles (no tails): the trainer tests' floors were measured on slices
    // whose background is the constant -1; with tails the phantom's background noise enters
    // them at low contrast, which an overfit cannot match (overfit SSIM 0.78 against 0.88).
    let section = PreprocessSection {
        size: Some([32, 32]),
        crop_margin_vox: 0,
        normalize: NormalizeConfig {
            tails: 0.0,
            ..NormalizeConfig::default()
        },
        slices: SliceConfig::default(),
        ..PreprocessSection::default()
    };
    let p = prepare(
        &section,
        [
            ("t1".to_owned(), vols[0].clone()),
            ("t2".to_owned(), vols[2].clone()),
        ]
        .into(),
        None,
        &order,
        SliceAxis::Axial,
    )
    .unwrap();
    let chans: Vec<&medsynth::volume::Volume> = order.iter().map(|m| &p.modalities[m].0).collect();
    let cut = cut_slices(&chans, &p.mask, SliceAxis::Axial, 0.3, 0).unwrap();
    let mid = cut.len() / 2;
    let picked = &cut[mid - count / 2..mid - count / 2 + count];
    let views: Vec<_> = picked.iter().map(|s| s.data.view()).collect();
    medsynth::dataset::SliceSet::from_memory(
        order.to_vec(),
        ndarray::stack(ndarray::Axis(0), &views).unwrap(),
        picked
            .iter()
            .map(|s| medsynth::dataset::ManifestRow {
                subject: "sub-001".into(),
                split: "train".into(),
                axis: "axial".into(),
                slice_index: s.index as u32,
                world_position_mm: 0.0,
                shard: String::new(),
                row: 0,
                channels_real: "t1,t2".into(),
                channels_missing: String::new(),
                source_sha256: String::new(),
                record: String::new(),
            })
            .collect(),
    )
}

/// SSIM (data range 2, for [-1, 1] slices) of channel `ca` of each slice of `a` against
/// channel `cb` of the same slice of `b`.
pub fn ssim_per_slice(
    a: &ndarray::Array4<f32>,
    ca: usize,
    b: &ndarray::Array4<f32>,
    cb: usize,
) -> Vec<f64> {
    use ndarray::Axis;
    (0..a.dim().0)
        .map(|i| {
            medsynth::metrics::ssim_2d(
                a.index_axis(Axis(0), i).index_axis(Axis(0), ca),
                b.index_axis(Axis(0), i).index_axis(Axis(0), cb),
                2.0,
            )
            .unwrap()
        })
        .collect()
}
pub mod inception;
pub mod pipeline;
pub mod runs;

pub use pipeline::Pipeline;

/// The errors dciodvfy (dicom3tools, the DICOM standard's IOD checker) reports on each file,
/// prefixed by the file name; warnings are not errors. tests/run.sh installs dicom3tools.
pub fn dciodvfy_errors(files: &[PathBuf]) -> Vec<String> {
    assert!(!files.is_empty(), "no DICOM file to check");
    let mut errors = Vec::new();
    for f in files {
        let o = Command::new("dciodvfy").arg(f).output().unwrap_or_else(|e| {
            panic!("cannot run dciodvfy ({e}); tests/run.sh installs it (apt-get install dicom3tools)")
        });
        // dciodvfy prints its findings on stderr, the IOD it checked against on stdout.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        errors.extend(
            text.lines()
                .filter(|l| l.starts_with("Error"))
                .map(|l| format!("{}: {l}", f.display())),
        );
    }
    errors
}

/// The files of a folder, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Whether `program` is on the PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A service a test script brings up in a temporary folder: `SCRIPT start DIR` prints
/// `KEY=value` once the service answers; `SCRIPT stop DIR` (run when this is dropped) stops
/// what it started, by PID.
pub struct Service {
    pub dir: tempfile::TempDir,
    /// The value the script printed for its key (a URL, a config path).
    pub value: String,
    script: PathBuf,
}

impl Service {
    /// Starts `script` (relative to the repository root) and waits for its `key=` line;
    /// fails naming `what` with the script's output when it does not come.
    pub fn start(script: &str, key: &str, what: &str) -> Service {
        let script = repo().join(script);
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        let text = stdout(&out);
        let prefix = format!("{key}=");
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned);
        let service = Service {
            dir,
            value: value.clone().unwrap_or_default(),
            script,
        };
        assert!(
            out.status.success() && value.is_some(),
            "{what} did not start:\n{text}\n{}",
            stderr(&out)
        );
        service
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
