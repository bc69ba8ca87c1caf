//! DICOMweb against a real Orthanc server (Debian's orthanc and orthanc-dicomweb, started on
//! 127.0.0.1 by tests/orthanc/server.sh, with HTTP basic auth): a phantom cohort (oblique,
//! anisotropic, LPS) uploaded through Orthanc's own REST API is pulled with QIDO-RS and WADO-RS,
//! the pipeline's result equals the same pipeline on the files, the synthesized series are
//! stored back with STOW-RS and read back by an independent WADO-RS client (Python) equal to
//! the files, and a re-run retrieves and stores nothing. A faulty proxy in front of the server
//! (connection dropped mid-series, HTTP 500, no answer) leaves no partial input behind and the
//! error names the series and the server.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

const AUTH: &str = "medsynth:test-password";

/// A running Orthanc; stopped by PID when dropped.
struct Orthanc {
    service: common::Service,
}

impl Orthanc {
    fn start() -> Orthanc {
        assert!(
            common::which("Orthanc"),
            "Orthanc is not installed: run the suite with tests/run.sh as root, which installs Debian's orthanc and orthanc-dicomweb"
        );
        Orthanc {
            service: common::Service::start("tests/orthanc/server.sh", "ORTHANC_URL", "Orthanc"),
        }
    }

    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> &str {
        &self.service.value
    }

    fn dicomweb(&self) -> String {
        format!("{}/dicom-web", self.url())
    }
}

/// The peer script with the server's credentials.
fn peer(args: &[&str]) -> String {
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/python/dicomweb_peer.py"))
        .args(args)
        .env("ORTHANC_AUTH", AUTH)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dicomweb_peer.py {args:?} failed:\n{}",
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// A faulty proxy in front of `dicomweb`; killed when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(dicomweb: &str, mode: &str) -> Proxy {
        let mut child = Command::new(common::python())
            .arg(common::repo().join("tests/python/dicomweb_peer.py"))
            .args(["proxy", dicomweb, mode])
            .env("ORTHANC_AUTH", AUTH)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("proxy said {line:?}"));
        Proxy {
            child,
            url: format!("http://127.0.0.1:{port}/dicom-web"),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECTIONS: &str = r#"
[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.34, val = 0.33, test = 0.33 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { timesteps = 50 }

[train]
epochs = 1
batch_size = 4
checkpoint_every = 1000

[synthesize]
split = "all"
sampler = { kind = "ddim", steps = 2 }

[evaluate]
metrics = ["ssim", "psnr"]
"#;

const SERIES: &str = r#"series = { t1 = { modality = "MR", description = "*phantom t1" }, t2 = { modality = "MR", description = "*phantom t2" } }"#;

/// A pipeline reading the phantom files under `phantom/`.
fn on_files(name: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\nseed = 5\n\n[input]\nformat = \"dicom\"\nroot = \"phantom\"\nsubjects = \"study\"\n{SERIES}\npseudonym_key_file = \"secret/key.txt\"\n{SECTIONS}\n[output]\nformats = [\"nifti\", \"dicom\"]\n"
    )
}

/// The same pipeline reading from `url`, with `extra` lines in `input.dicomweb`'s table and
/// `output` as its `[output]` body.
fn on_server(name: &str, url: &str, extra: &str, output: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\nseed = 5\n\n[input]\nformat = \"dicomweb\"\nsubjects = \"study\"\n{SERIES}\npseudonym_key_file = \"secret/key.txt\"\n\n[input.dicomweb]\nurl = \"{url}\"\nauth = {{ scheme = \"basic\", env = \"ORTHANC_AUTH\" }}\nquery = {{ ModalitiesInStudy = \"MR\" }}\n{extra}\n{SECTIONS}\n[output]\n{output}\n"
    )
}

fn run(root: &Path, name: &str, text: &str) -> std::process::Output {
    let file = root.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_medsynth"))
        .args(["run", "--root"])
        .arg(root)
        .arg(&file)
        .env_remove("MEDSYNTH_LOG")
        .env_remove("MEDSYNTH_FID_WEIGHTS")
        .env("ORTHANC_AUTH", AUTH)
        .output()
        .unwrap()
}

/// A cohort of `subjects` phantom studies as DICOM files under `root/phantom`, with the key.
fn cohort(root: &Path, subjects: &str) {
    common::assert_success(&common::medsynth(&[
        "phantom",
        "--subjects",
        subjects,
        "--shape",
        "40,44,36",
        "--spacing",
        "4.5,4,6",
        "--orientation",
        "LPS",
        "--tilt",
        "12,0,-8",
        "--format",
        "dicom",
        "--out",
        root.join("phantom").to_str().unwrap(),
    ]));
    std::fs::create_dir_all(root.join("secret")).unwrap();
    std::fs::write(
        root.join("secret/key.txt"),
        "a test key of the DICOMweb tests\n",
    )
    .unwrap();
}

fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// Every file under `dir` (recursively) whose name ends in `.dcm`.
fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(dicom_files(&p));
        } else if p.extension().is_some_and(|x| x == "dcm") {
            out.push(p);
        }
    }
    out
}

fn uid(path: &Path, tag: ::dicom::core::Tag) -> String {
    let obj = ::dicom::object::open_file(path).unwrap();
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

#[test]
fn a_cohort_pulled_over_dicomweb_runs_as_on_the_files_and_its_series_go_back() {
    let server = Orthanc::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    cohort(root, "3");
    let uploaded: serde_json::Value = serde_json::from_str(&peer(&[
        "upload",
        server.url(),
        root.join("phantom").to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(uploaded["uploaded"], 3 * 4 * 36, "{uploaded}");

    let files = run(root, "files", &on_files("files"));
    common::assert_success(&files);
    let output = format!(
        "formats = [\"nifti\"]\ndicomweb = {{ url = \"{}\", auth = {{ scheme = \"basic\", env = \"ORTHANC_AUTH\" }} }}",
        server.dicomweb()
    );
    let web = run(
        root,
        "web",
        &on_server("web", &server.dicomweb(), "", &output),
    );
    common::assert_success(&web);
    let stderr = common::stderr(&web);
    assert!(stderr.contains("fetched=6 reused=0"), "{stderr}");
    assert!(stderr.contains("sent=3 already=0"), "{stderr}");

    // The retrieved files are the uploaded T1 and T2 files, byte for byte (no transcoding).
    let cache = root.join("runs/web/dicomweb");
    let cached: BTreeSet<String> = dicom_files(&cache).iter().map(|p| sha(p)).collect();
    let originals: BTreeSet<String> = dicom_files(&root.join("phantom"))
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("t1") || p.parent().unwrap().ends_with("t2"))
        .map(|p| sha(p))
        .collect();
    assert_eq!(cached.len(), 3 * 2 * 36);
    assert_eq!(cached, originals);
    assert!(
        std::fs::read_dir(&cache)
            .unwrap()
            .all(|e| e.unwrap().path().join(".complete").is_file()),
        "a cached series folder lacks its marker"
    );

    // The result equals the same pipeline on the files: subjects (keyed pseudonyms of the
    // study), every synthesized volume byte for byte, every score.
    let synth = |run: &str| root.join("runs").join(run).join("synth/variant-0");
    let subjects: Vec<String> = std::fs::read_dir(synth("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for s in &subjects {
        assert_eq!(
            sha(&synth("files").join(s).join("t2.nii.gz")),
            sha(&synth("web").join(s).join("t2.nii.gz")),
            "{s}"
        );
    }
    let scores = |run: &str| -> Vec<(String, String, String, String, f64)> {
        medsynth::pipeline::read_metrics(&root.join("runs").join(run).join("metrics.parquet"))
            .unwrap()
            .into_iter()
            .map(|r| (r.method, r.subject, r.metric, r.region, r.value))
            .collect()
    };
    let (a, b) = (scores("files"), scores("web"));
    assert!(a.len() >= 12, "{a:?}");
    assert_eq!(a, b);

    // Each synthesized series, read back from the server by an independent WADO-RS client,
    // is the written files byte for byte; the files run wrote the same series.
    for s in &subjects {
        let folder = synth("web").join(s).join("t2");
        let local = dicom_files(&folder);
        assert_eq!(local.len(), 36);
        use ::dicom::dictionary_std::tags;
        let study = uid(&local[0], tags::STUDY_INSTANCE_UID);
        let series = uid(&local[0], tags::SERIES_INSTANCE_UID);
        let back: BTreeMap<String, String> =
            serde_json::from_str(&peer(&["retrieve", &server.dicomweb(), &study, &series]))
                .unwrap();
        let written: BTreeMap<String, String> = local
            .iter()
            .map(|p| (uid(p, tags::SOP_INSTANCE_UID), sha(p)))
            .collect();
        assert_eq!(back, written, "{s}");
        // The files run wrote the same instances (UIDs and pixels; only the derivation text,
        // which names the checkpoint, differs between the two pipeline files).
        let pixels = |files: Vec<PathBuf>| -> BTreeMap<String, Vec<u8>> {
            files
                .iter()
                .map(|p| {
                    let obj = ::dicom::object::open_file(p).unwrap();
                    let data = obj
                        .element(tags::PIXEL_DATA)
                        .unwrap()
                        .to_bytes()
                        .unwrap()
                        .to_vec();
                    (uid(p, tags::SOP_INSTANCE_UID), data)
                })
                .collect()
        };
        assert_eq!(
            pixels(dicom_files(&synth("files").join(s).join("t2"))),
            pixels(local.clone()),
            "{s}"
        );
    }

    // A re-run retrieves nothing and stores nothing: both sides are complete.
    let again = run(
        root,
        "web",
        &on_server("web", &server.dicomweb(), "", &output),
    );
    common::assert_success(&again);
    let stderr = common::stderr(&again);
    assert!(stderr.contains("fetched=0 reused=6"), "{stderr}");
    assert!(stderr.contains("sent=0 already=3"), "{stderr}");
    assert!(
        common::stdout(&again).contains(&format!(
            "stored on    {}: 0 series sent (0 instances), 3 already there",
            server.dicomweb()
        )),
        "{}",
        common::stdout(&again)
    );
    // No credential in the run folder's files or in what was printed.
    assert!(!stderr.contains("test-password") && !common::stdout(&again).contains("test-password"));
}

#[test]
fn a_failing_server_leaves_no_partial_input_and_names_the_series_and_the_server() {
    let server = Orthanc::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    cohort(root, "1");
    peer(&[
        "upload",
        server.url(),
        root.join("phantom").to_str().unwrap(),
    ]);
    use ::dicom::dictionary_std::tags;
    let series: Vec<String> = ["t1", "t2"]
        .iter()
        .map(|m| {
            uid(
                &dicom_files(&root.join("phantom/sub-001").join(m))[0],
                tags::SERIES_INSTANCE_UID,
            )
        })
        .collect();
    for mode in ["drop", "500", "slow"] {
        let proxy = Proxy::start(&server.dicomweb(), mode);
        let name = format!("faulty-{mode}");
        let o = run(
            root,
            &name,
            &on_server(
                &name,
                &proxy.url,
                "timeout_s = 3\nretries = 1",
                "formats = [\"nifti\"]",
            ),
        );
        assert!(!o.status.success(), "{mode}: the run succeeded");
        let text = common::stderr(&o);
        assert!(
            text.contains(&proxy.url),
            "{mode}: the server is not named:\n{text}"
        );
        assert!(
            series.iter().any(|s| text.contains(&format!("series {s}"))),
            "{mode}: no series named:\n{text}"
        );
        let expected = match mode {
            "drop" => "cut short",
            "500" => "HTTP 500",
            _ => "timed out",
        };
        assert!(
            text.contains(expected),
            "{mode}: {expected:?} not said:\n{text}"
        );
        assert!(text.contains("gave up after 2 tries"), "{mode}:\n{text}");
        // Nothing of the series is left in the cache, not even a temporary folder.
        let cache = root.join("runs").join(&name).join("dicomweb");
        let left: Vec<PathBuf> = std::fs::read_dir(&cache)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{mode}: left in the cache: {left:?}");
    }
}
