//! Semantic checks: the rules that tie fields of a pipeline file together.
//!
//! serde already guarantees shapes and types; this module checks meaning, and reports every
//! problem it finds (not just the first), each with the key path it belongs to.

use std::collections::BTreeSet;
use std::fmt;

use super::{
    AttentionKind, InputFormat, ModelKind, ModelSection, NormalizeMethod, PipelineFile, Protocol,
    Spacing, SplitName, Task, WriteFormat,
};

/// One segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `model.attention.kind` or `preprocess.size[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// Parses `a.b[2].c`.
    pub fn parse(path: &str) -> Self {
        let mut segs = Vec::new();
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                segs.push(Seg::Key(name.to_owned()));
            }
            for index in rest.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
        }
        KeyPath(segs)
    }

    /// This path with `key` appended.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    /// This path with an array index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(i));
        KeyPath(segs)
    }

    pub(crate) fn segments(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A semantic problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: KeyPath,
    pub message: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.add_at(KeyPath::parse(key), message);
    }
    fn add_at(&mut self, key: KeyPath, message: impl Into<String>) {
        self.0.push(Finding {
            key,
            message: message.into(),
        });
    }
    /// `value` must lie in `[low, high]` (or `[low, high)` when `high_open`).
    fn range(&mut self, key: &str, value: f64, low: f64, high: f64, high_open: bool) {
        let ok = value.is_finite()
            && value >= low
            && if high_open {
                value < high
            } else {
                value <= high
            };
        if !ok {
            let close = if high_open { ")" } else { "]" };
            self.add(
                key,
                format!("{value} is out of range, expected a number in [{low}, {high}{close}"),
            );
        }
    }
    fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.add(
                key,
                format!("{value} is not allowed, expected a positive number"),
            );
        }
    }
    fn at_least_one(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "0 is not allowed, expected at least 1");
        }
    }
}

/// Checks the rules that tie a parsed pipeline file's fields together.
pub fn check(file: &PipelineFile) -> Vec<Finding> {
    let mut out = Findings::default();
    check_pipeline(file, &mut out);
    let declared = check_input(file, &mut out);
    check_preprocess(file, &declared, &mut out);
    if let Some(model) = &file.model {
        check_model(file, model, &declared, &mut out);
    }
    check_train(file, &mut out);
    check_synthesize(file, &mut out);
    check_evaluate(file, &mut out);
    check_output(file, &mut out);
    out.0
}

fn is_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

fn is_modality_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Placeholders in `{...}` that are not in `allowed`.
fn unknown_placeholders<'a>(template: &'a str, allowed: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !allowed.contains(&name) {
                    out.push(name);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

/// Whether a relative path stays inside its base folder (no absolute path, no `..` that climbs
/// above the start).
fn stays_inside(path: &str) -> bool {
    let p = std::path::Path::new(path);
    if p.is_absolute() || path.starts_with('/') || path.starts_with('\\') {
        return false;
    }
    let mut depth: i64 = 0;
    for comp in p.components() {
        match comp {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    depth > 0
}

fn check_pipeline(file: &PipelineFile, out: &mut Findings) {
    let p = &file.pipeline;
    if !is_name(&p.name, &['-', '_', '.']) || p.name.starts_with('.') {
        out.add(
            "pipeline.name",
            format!(
                "{:?} is not a valid run name, expected 1-64 ASCII letters, digits, '-', '_' or '.', not starting with '.'",
                p.name
            ),
        );
    }
    let unknown = unknown_placeholders(&p.output, &["name", "seed"]);
    if !unknown.is_empty() {
        out.add(
            "pipeline.output",
            format!(
                "unknown placeholder {{{}}}, expected only {{name}} and {{seed}}",
                unknown[0]
            ),
        );
    } else if !stays_inside(&file.output_dir()) {
        out.add(
            "pipeline.output",
            format!(
                "{:?} escapes the run root, expected a relative folder inside it (no absolute path, no '..' above it)",
                p.output
            ),
        );
    }
}

/// Checks `[input]` and returns the declared modality names.
fn check_input(file: &PipelineFile, out: &mut Findings) -> Vec<String> {
    let input = &file.input;
    let format = input.format;
    let needs_root = matches!(
        format,
        InputFormat::Nifti | InputFormat::Dicom | InputFormat::Bids
    );
    match (&input.root, needs_root) {
        (None, true) => out.add(
            "input",
            format!(
                "missing field \"root\", required for format {:?}",
                format_name(format)
            ),
        ),
        (Some(_), false) => out.add(
            "input.root",
            match format {
                InputFormat::Dicomweb => "not used with format \"dicomweb\", whose series come from input.dicomweb.url",
                _ => "not used with format \"phantom\", which generates its subjects into the run folder",
            },
        ),
        _ => {}
    }
    if input.subject_glob.trim().is_empty() {
        out.add(
            "input.subject_glob",
            "empty glob, expected a pattern such as \"sub-*\"",
        );
    }
    let dicom = matches!(format, InputFormat::Dicom | InputFormat::Dicomweb);
    if !dicom && input.subjects != crate::spec::SubjectGrouping::Folder {
        out.add(
            "input.subjects",
            "only used with formats \"dicom\" and \"dicomweb\"; other inputs have one folder per subject",
        );
    }
    if format == InputFormat::Dicomweb && input.subjects == crate::spec::SubjectGrouping::Folder {
        out.add(
            "input.subjects",
            "format \"dicomweb\" groups its series into subjects by header: expected \"patient\" or \"study\"",
        );
    }
    if !dicom && format != InputFormat::Bids && input.prefer != crate::spec::Prefer::Error {
        out.add(
            "input.prefer",
            "only used with formats \"dicom\", \"dicomweb\" and \"bids\"",
        );
    }
    match (&input.dicomweb, format == InputFormat::Dicomweb) {
        (None, true) => out.add(
            "input",
            "missing field \"dicomweb\", required for format \"dicomweb\" (e.g. dicomweb = { url = \"http://127.0.0.1:8042/dicom-web\" })",
        ),
        (Some(_), false) => out.add("input.dicomweb", "only used with format \"dicomweb\""),
        (Some(server), true) => check_dicomweb("input.dicomweb", server, true, out),
        (None, false) => {}
    }
    if input.subjects == crate::spec::SubjectGrouping::Folder {
        for (key, set) in [
            (
                "input.pseudonym_key_file",
                input.pseudonym_key_file.is_some(),
            ),
            ("input.pseudonym_map", input.pseudonym_map.is_some()),
        ] {
            if set {
                out.add(key, "only used when input.subjects is \"patient\" or \"study\" (subjects named by pseudonym)");
            }
        }
    }
    if let Some(map) = &input.pseudonym_map
        && std::path::Path::new(map).starts_with(file.output_dir())
    {
        out.add("input.pseudonym_map", format!("{map:?} lies inside the run folder {:?}; the map links pseudonyms to real identities, so it must be kept elsewhere", file.output_dir()));
    }
    if input.assume_geometry && !dicom {
        out.add(
            "input.assume_geometry",
            "only used with formats \"dicom\" and \"dicomweb\"; NIfTI files and phantoms always carry geometry",
        );
    }
    match format {
        InputFormat::Nifti => {
            if input.modalities.is_empty() {
                out.add("input", "missing field \"modalities\", expected a table of modality = \"path template\" for format \"nifti\"");
            }
            if !input.series.is_empty() {
                out.add(
                    "input.series",
                    "only used with format \"dicom\"; NIfTI modalities go in input.modalities",
                );
            }
            for (name, template) in &input.modalities {
                check_template(&format!("input.modalities.{name}"), template, out);
            }
        }
        InputFormat::Bids => {
            if input.modalities.is_empty() {
                out.add("input", "missing field \"modalities\", expected a table of modality = \"entities_suffix\" (e.g. t1 = \"T1w\", t1ce = \"ce-gd_T1w\") for format \"bids\"");
            }
            if !input.series.is_empty() {
                out.add(
                    "input.series",
                    "only used with formats \"dicom\" and \"dicomweb\"; BIDS modalities go in input.modalities",
                );
            }
            for (name, pattern) in &input.modalities {
                if let Err(e) = crate::bids::Pattern::parse(pattern) {
                    out.add(&format!("input.modalities.{name}"), e);
                }
            }
        }
        InputFormat::Dicom | InputFormat::Dicomweb => {
            if input.series.is_empty() {
                out.add("input", format!("missing field \"series\", expected a table of modality = {{ modality, description }} for format {:?}", format_name(format)));
            }
            if !input.modalities.is_empty() {
                out.add(
                    "input.modalities",
                    "only used with formats \"nifti\" and \"bids\"; DICOM series are matched by input.series",
                );
            }
            for (name, m) in &input.series {
                if m.modality.is_none() && m.description.is_none() {
                    out.add(
                        &format!("input.series.{name}"),
                        "matches every series, expected \"modality\" and/or \"description\"",
                    );
                }
            }
        }
        InputFormat::Phantom => {
            if !input.modalities.is_empty() || !input.series.is_empty() || input.label.is_some() {
                let key = if !input.modalities.is_empty() {
                    "input.modalities"
                } else if !input.series.is_empty() {
                    "input.series"
                } else {
                    "input.label"
                };
                out.add(key, "not used with format \"phantom\", which provides t1, t1ce, t2, flair and a BraTS label");
            }
            if let Some(ph) = &input.phantom {
                out.at_least_one("input.phantom.subjects", ph.subjects);
                for (i, &n) in ph.shape.iter().enumerate() {
                    if !(16..=1024).contains(&n) {
                        out.add_at(
                            KeyPath::parse("input.phantom.shape").index(i),
                            format!("{n} voxels is out of range, expected 16 to 1024"),
                        );
                    }
                }
                match ph.spacing_mm {
                    Spacing::Isotropic(s) => out.positive("input.phantom.spacing_mm", s),
                    Spacing::PerAxis(s) => {
                        for (i, v) in s.into_iter().enumerate() {
                            if !(v.is_finite() && v > 0.0) {
                                out.add_at(
                                    KeyPath::parse("input.phantom.spacing_mm").index(i),
                                    format!("{v} mm, expected a positive size"),
                                );
                            }
                        }
                    }
                }
                if !is_orientation(&ph.orientation) {
                    out.add(
                        "input.phantom.orientation",
                        format!("{:?} is not an orientation code, expected three letters with one of R/L, one of A/P and one of S/I, such as \"LAS\" or \"LPS\"", ph.orientation),
                    );
                }
                for (i, &t) in ph.tilt_deg.iter().enumerate() {
                    if !(t.is_finite() && t.abs() <= 40.0) {
                        out.add_at(
                            KeyPath::parse("input.phantom.tilt_deg").index(i),
                            format!("{t} degrees, expected -40 to 40 (past 45 an axis changes its orientation letter)"),
                        );
                    }
                }
                out.range(
                    "input.phantom.tumour_fraction",
                    ph.tumour_fraction,
                    0.0,
                    1.0,
                    false,
                );
            }
        }
    }
    if format != InputFormat::Phantom && input.phantom.is_some() {
        out.add("input.phantom", "only used with format \"phantom\"");
    }
    match (&input.label, format) {
        (Some(label), InputFormat::Bids) => {
            if let Err(e) = crate::bids::Pattern::parse(label) {
                out.add("input.label", e);
            }
        }
        (Some(_), InputFormat::Dicom | InputFormat::Dicomweb) => out.add(
            "input.label",
            "not used with DICOM input; labels are read from NIfTI (format \"nifti\" or \"bids\")",
        ),
        (Some(label), _) => check_template("input.label", label, out),
        (None, _) => {}
    }
    let declared = file.declared_modalities();
    let table = match format {
        InputFormat::Dicom | InputFormat::Dicomweb => "input.series",
        _ => "input.modalities",
    };
    for name in &declared {
        if !is_modality_name(name) {
            out.add(&format!("{table}.{name}"), format!("{name:?} is not a valid modality name, expected lower-case letters, digits and '_'"));
        }
    }
    if let Some(required) = &input.required {
        for (i, name) in required.iter().enumerate() {
            if !declared.contains(name) {
                out.add_at(
                    KeyPath::parse("input.required").index(i),
                    unknown_modality(name, &declared),
                );
            }
        }
    }
    declared
}

fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Nifti => "nifti",
        InputFormat::Dicom => "dicom",
        InputFormat::Phantom => "phantom",
        InputFormat::Dicomweb => "dicomweb",
        InputFormat::Bids => "bids",
    }
}

/// Checks a DICOMweb server entry; `input` allows the search and the cache.
fn check_dicomweb(
    key: &str,
    server: &crate::spec::DicomWebServer,
    input: bool,
    out: &mut Findings,
) {
    let url = server.url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        None => out.add(
            &format!("{key}.url"),
            format!("{:?} is not an http:// or https:// URL", server.url),
        ),
        Some(rest)
            if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@')) =>
        {
            out.add(
                &format!("{key}.url"),
                "holds credentials; put them in an environment variable named by auth.env instead",
            )
        }
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            out.add(&format!("{key}.url"), "has no host")
        }
        Some(_) => {}
    }
    if !(server.timeout_s.is_finite() && server.timeout_s > 0.0) {
        out.add(
            &format!("{key}.timeout_s"),
            format!(
                "{} s, expected a positive number of seconds",
                server.timeout_s
            ),
        );
    }
    if server.retries > 10 {
        out.add(
            &format!("{key}.retries"),
            format!(
                "{} tries again is past the limit of 10 (the waits double each time)",
                server.retries
            ),
        );
    }
    if let Some(auth) = &server.auth
        && !is_name(&auth.env, &['_'])
    {
        out.add(
            &format!("{key}.auth.env"),
            format!(
                "{:?} is not an environment variable name, expected letters, digits and '_'",
                auth.env
            ),
        );
    }
    if !input {
        if !server.query.is_empty() {
            out.add(&format!("{key}.query"), "only used in input.dicomweb");
        }
        if server.cache.is_some() {
            out.add(&format!("{key}.cache"), "only used in input.dicomweb");
        }
        return;
    }
    for (k, v) in &server.query {
        let tag = k.len() == 8 && k.chars().all(|c| c.is_ascii_hexdigit());
        if !tag && !crate::spec::QUERY_KEYS.contains(&k.as_str()) {
            out.add(
                &format!("{key}.query.{k}"),
                format!(
                    "not a study-level search attribute, expected one of {} or a tag as 8 hex digits",
                    crate::spec::QUERY_KEYS.join(", ")
                ),
            );
        }
        if v.values().is_empty() || v.values().iter().any(|x| x.trim().is_empty()) {
            out.add(
                &format!("{key}.query.{k}"),
                "empty value, expected the value to match",
            );
        }
    }
    if let Some(cache) = &server.cache
        && !stays_inside(cache)
    {
        out.add(
            &format!("{key}.cache"),
            format!("{cache:?} escapes the run root, expected a relative folder inside it"),
        );
    }
}

fn check_template(key: &str, template: &str, out: &mut Findings) {
    let unknown = unknown_placeholders(template, &["subject"]);
    if let Some(u) = unknown.first() {
        out.add(
            key,
            format!("unknown placeholder {{{u}}}, expected only {{subject}}"),
        );
    } else if !stays_inside(template) {
        out.add(
            key,
            format!("{template:?} leaves input.root, expected a path relative to it"),
        );
    }
}

fn unknown_modality(name: &str, declared: &[String]) -> String {
    format!(
        "unknown modality {name:?}, expected one of {}",
        declared
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn check_preprocess(file: &PipelineFile, declared: &[String], out: &mut Findings) {
    let p = &file.preprocess;
    if !is_orientation(&p.orientation) {
        out.add(
            "preprocess.orientation",
            format!("{:?} is not an orientation code, expected three letters with one of R/L, one of A/P and one of S/I, such as \"RAS\" or \"LPS\"", p.orientation),
        );
    }
    if let Some(spacing) = p.spacing_mm {
        for (i, s) in spacing.iter().enumerate() {
            if !(s.is_finite() && *s > 0.0) {
                out.add_at(
                    KeyPath::parse("preprocess.spacing_mm").index(i),
                    format!("{s} mm is not allowed, expected a positive voxel size"),
                );
            }
        }
    }
    if let Some(reference) = &p.reference
        && !declared.contains(reference)
    {
        out.add(
            "preprocess.reference",
            unknown_modality(reference, declared),
        );
    }
    if let Some(size) = p.size {
        for (i, &n) in size.iter().enumerate() {
            if !(8..=4096).contains(&n) {
                out.add_at(
                    KeyPath::parse("preprocess.size").index(i),
                    format!("{n} pixels is out of range, expected 8 to 4096"),
                );
            }
        }
    }
    let n = &p.normalize;
    if n.method == NormalizeMethod::Percentile {
        out.range("preprocess.normalize.low", n.low, 0.0, 100.0, false);
        out.range("preprocess.normalize.high", n.high, 0.0, 100.0, false);
        out.range("preprocess.normalize.tails", n.tails, 0.0, 0.5, true);
        if n.low >= n.high {
            out.add(
                "preprocess.normalize.high",
                format!(
                    "{} is not above low = {}, expected low < high",
                    n.high, n.low
                ),
            );
        }
    }
    if !(n.range[0].is_finite() && n.range[1].is_finite() && n.range[0] < n.range[1]) {
        out.add(
            "preprocess.normalize.range",
            format!(
                "[{}, {}] is empty, expected [min, max] with min < max",
                n.range[0], n.range[1]
            ),
        );
    }
    out.range(
        "preprocess.slices.min_foreground",
        p.slices.min_foreground,
        0.0,
        1.0,
        false,
    );
    if p.slices.context > 8 {
        out.add(
            "preprocess.slices.context",
            format!(
                "{} neighbours per side is too many, expected 0 to 8",
                p.slices.context
            ),
        );
    }
    let s = &p.split;
    out.range("preprocess.split.train", s.train, 0.0, 1.0, false);
    out.range("preprocess.split.val", s.val, 0.0, 1.0, false);
    out.range("preprocess.split.test", s.test, 0.0, 1.0, false);
    let sum = s.train + s.val + s.test;
    if s.list.is_none() && (sum - 1.0).abs() > 1e-6 {
        out.add(
            "preprocess.split",
            format!(
                "train + val + test = {}, expected the fractions to add up to 1",
                (sum * 1e6).round() / 1e6
            ),
        );
    }
    if file.train.is_some() && s.list.is_none() && s.train <= 0.0 {
        out.add(
            "preprocess.split.train",
            "0 leaves no subject to train on, but [train] is present",
        );
    }
}

fn is_orientation(code: &str) -> bool {
    crate::volume::parse_orientation(code).is_some()
}

fn check_model(file: &PipelineFile, model: &ModelSection, declared: &[String], out: &mut Findings) {
    for (i, name) in model.inputs.iter().enumerate() {
        if !declared.contains(name) {
            out.add_at(
                KeyPath::parse("model.inputs").index(i),
                unknown_modality(name, declared),
            );
        }
    }
    if model.target.is_empty() {
        out.add(
            "model.target",
            "empty, expected the modality (or modalities) to produce",
        );
    }
    for (i, name) in model.target.iter().enumerate() {
        let key = if model.target.0.len() == 1 {
            KeyPath::parse("model.target")
        } else {
            KeyPath::parse("model.target").index(i)
        };
        if !declared.contains(&name.to_owned()) {
            out.add_at(key, unknown_modality(name, declared));
        } else if model.inputs.iter().any(|m| m == name) {
            out.add_at(
                key,
                format!(
                    "{name:?} is also among model.inputs, expected the target not to be an input"
                ),
            );
        }
    }
    match model.task {
        Task::Translation | Task::MissingModality => {
            if model.inputs.is_empty() {
                out.add(
                    "model.inputs",
                    format!(
                        "empty, expected at least one input modality for task {:?}",
                        task_name(model.task)
                    ),
                );
            }
            if model.target.0.len() > 1 {
                out.add("model.target", "expected one target modality for this task");
            }
        }
        Task::Generation | Task::LabelToImage => {
            if !model.inputs.is_empty() {
                out.add(
                    "model.inputs",
                    format!(
                        "not used by task {:?}, which takes no input modality",
                        task_name(model.task)
                    ),
                );
            }
        }
    }
    if model.task == Task::LabelToImage && !file.has_label() {
        out.add(
            "model.task",
            "\"label-to-image\" needs a label volume, but input.label is not set",
        );
    }
    out.range(
        "model.modality_dropout",
        model.modality_dropout,
        0.0,
        1.0,
        true,
    );
    out.range("model.cond_dropout", model.cond_dropout, 0.0, 1.0, true);
    match (model.kind, &model.diffusion, &model.gan) {
        (ModelKind::Sagan, Some(_), _) => out.add(
            "model.diffusion",
            "only used with kind \"diffusion\", but model.kind is \"sagan\"",
        ),
        (ModelKind::Diffusion, _, Some(_)) => out.add(
            "model.gan",
            "only used with kind \"sagan\", but model.kind is \"diffusion\"",
        ),
        _ => {}
    }
    if let Some(d) = &model.diffusion {
        if d.timesteps == 0 || d.timesteps > 10_000 {
            out.add(
                "model.diffusion.timesteps",
                format!("{} is out of range, expected 1 to 10000", d.timesteps),
            );
        }
        out.range("model.diffusion.beta_start", d.beta_start, 0.0, 1.0, true);
        out.range("model.diffusion.beta_end", d.beta_end, 0.0, 1.0, true);
        if d.beta_start >= d.beta_end {
            out.add(
                "model.diffusion.beta_end",
                format!(
                    "{} is not above beta_start = {}, expected beta_start < beta_end",
                    d.beta_end, d.beta_start
                ),
            );
        }
    }
    if let Some(g) = &model.gan {
        out.at_least_one("model.gan.z_dim", g.z_dim);
        out.at_least_one("model.gan.n_dis", g.n_dis);
        if !(g.l1_weight.is_finite() && g.l1_weight >= 0.0) {
            out.add(
                "model.gan.l1_weight",
                format!("{} is not allowed, expected a number >= 0", g.l1_weight),
            );
        }
        out.at_least_one("model.gan.attention_resolution", g.attention_resolution);
        if g.classes > 0 && model.task != Task::Generation {
            out.add(
                "model.gan.classes",
                format!(
                    "slice-position classes condition task \"generation\", but model.task is {:?}",
                    task_name(model.task)
                ),
            );
        }
    }
    if model.kind == ModelKind::Sagan && model.attention != crate::spec::AttentionConfig::default()
    {
        out.add(
            "model.attention",
            "configures the diffusion UNet's attention; with kind \"sagan\" the SAGAN attention blocks are placed by model.gan.attention_resolution",
        );
    }
    if model.kind == ModelKind::Sagan
        && let Some(size) = file.preprocess.size
    {
        let short = size[0].min(size[1]);
        // The noise generator doubles the resolution at least once from a start of 4 pixels
        // or more, so both sides must be even.
        let even = size.iter().all(|n| n.is_multiple_of(2));
        if model.task == Task::Generation && (short < 8 || !even) {
            out.add(
                "preprocess.size",
                format!(
                    "{size:?} does not suit the GAN generator, which doubles the resolution from a start of at least 4 pixels: expected both sides even and >= 8"
                ),
            );
        } else if model.task != Task::Generation && short < 32 {
            out.add(
                "preprocess.size",
                format!("{size:?} is too small for the PatchGAN discriminator (three stride-2 convs, then two 4x4 ones), expected both sides >= 32"),
            );
        }
    }
    check_unet(file, model, out);
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Translation => "translation",
        Task::MissingModality => "missing-modality",
        Task::Generation => "generation",
        Task::LabelToImage => "label-to-image",
    }
}

fn check_unet(file: &PipelineFile, model: &ModelSection, out: &mut Findings) {
    let u = &model.unet;
    out.at_least_one("model.unet.base_channels", u.base_channels);
    out.at_least_one("model.unet.res_blocks", u.res_blocks);
    out.at_least_one("model.unet.groups", u.groups);
    out.range("model.unet.dropout", u.dropout, 0.0, 1.0, true);
    if u.channel_mult.is_empty() || u.channel_mult.len() > 7 {
        out.add("model.unet.channel_mult", "expected 1 to 7 levels");
        return;
    }
    for (i, &m) in u.channel_mult.iter().enumerate() {
        let channels = u.base_channels * m;
        if m == 0 {
            out.add_at(
                KeyPath::parse("model.unet.channel_mult").index(i),
                "0 is not allowed, expected at least 1",
            );
        } else if model.kind == ModelKind::Diffusion
            && u.groups > 0
            && !channels.is_multiple_of(u.groups)
        {
            out.add_at(
                KeyPath::parse("model.unet.channel_mult").index(i),
                format!("level {i} has {channels} channels, which model.unet.groups = {} does not divide", u.groups),
            );
        }
    }
    // The GAN's noise generator doubles from a 4-pixel start instead of using the UNet levels.
    let factor = if model.kind == ModelKind::Sagan && model.task == Task::Generation {
        1
    } else {
        1u32 << (u.channel_mult.len() - 1)
    };
    let Some(size) = file.preprocess.size else {
        out.add("preprocess", "missing field \"size\", required when [model] is present: every slice must have the same [rows, cols]");
        return;
    };
    for (i, &n) in size.iter().enumerate() {
        if !n.is_multiple_of(factor) {
            out.add_at(
                KeyPath::parse("preprocess.size").index(i),
                format!(
                    "{n} is not divisible by {factor}, the UNet's downsampling factor (2^{} for {} levels in model.unet.channel_mult)",
                    u.channel_mult.len() - 1,
                    u.channel_mult.len()
                ),
            );
        }
    }
    let a = &model.attention;
    // The GANs' attention is the SAGAN block, placed by model.gan.attention_resolution.
    if a.kind == AttentionKind::None || model.kind == ModelKind::Sagan {
        return;
    }
    out.at_least_one("model.attention.heads", a.heads);
    let short = size[0].min(size[1]);
    let levels: Vec<(u32, u32)> = u
        .channel_mult
        .iter()
        .enumerate()
        .map(|(i, &m)| (short >> i, u.base_channels * m))
        .collect();
    for (i, &r) in a.resolutions.iter().enumerate() {
        let key = KeyPath::parse("model.attention.resolutions").index(i);
        match levels.iter().find(|(res, _)| *res == r) {
            None => out.add_at(
                key,
                format!(
                    "{r} is not a UNet level resolution, expected one of {}",
                    levels
                        .iter()
                        .map(|(res, _)| res.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some((_, channels)) => {
                if a.heads > 0 && !channels.is_multiple_of(a.heads) {
                    out.add(
                        "model.attention.heads",
                        format!(
                            "{} heads do not divide the {channels} channels at resolution {r}",
                            a.heads
                        ),
                    );
                }
                // Both sides of the feature map at this level must split into windows.
                let f = short / r.max(1);
                let (rh, rw) = (size[0] / f.max(1), size[1] / f.max(1));
                if let Some(w) = a.window
                    && (w == 0 || !rh.is_multiple_of(w) || !rw.is_multiple_of(w))
                {
                    out.add(
                        "model.attention.window",
                        format!(
                            "window {w} does not divide the {rh} x {rw} feature map at attention resolution {r}"
                        ),
                    );
                }
            }
        }
    }
    if a.window.is_some() && a.kind != AttentionKind::Tmsa {
        out.add(
            "model.attention.window",
            "windowed attention is only available with kind \"tmsa\"",
        );
    }
}

fn check_train(file: &PipelineFile, out: &mut Findings) {
    let Some(t) = &file.train else { return };
    if file.model.is_none() {
        out.add("train", "[train] needs a [model] section to train");
        return;
    }
    if file.model.as_ref().is_some_and(|m| m.checkpoint.is_some()) {
        out.add(
            "model.checkpoint",
            "set together with [train]; expected either a checkpoint to apply or a [train] section",
        );
    }
    out.at_least_one("train.epochs", t.epochs);
    out.at_least_one("train.batch_size", t.batch_size);
    out.at_least_one("train.checkpoint_every", t.checkpoint_every);
    if let Some(lr) = t.lr {
        out.positive("train.lr", lr);
    }
    out.positive("train.lr_d", t.lr_d);
    if let Some([b1, b2]) = t.betas {
        out.range("train.betas[0]", b1, 0.0, 1.0, true);
        out.range("train.betas[1]", b2, 0.0, 1.0, true);
    }
    if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
        out.add(
            "train.weight_decay",
            format!("{} is not allowed, expected a number >= 0", t.weight_decay),
        );
    }
    if let Some(c) = t.grad_clip {
        out.positive("train.grad_clip", c);
    }
    out.range("train.ema", t.ema, 0.0, 1.0, true);
    out.range("train.augment.flip", t.augment.flip, 0.0, 1.0, false);
    out.range(
        "train.augment.rotate_deg",
        t.augment.rotate_deg,
        0.0,
        180.0,
        false,
    );
    out.range("train.augment.scale", t.augment.scale, 0.0, 1.0, true);
    out.range(
        "train.augment.intensity",
        t.augment.intensity,
        0.0,
        1.0,
        true,
    );
    if !t.device.is_built() {
        out.add(
            "train.device",
            format!(
                "\"{kind}\" needs medsynth built with `--features {kind}` (`medsynth devices` lists what this build has)",
                kind = t.device.name()
            ),
        );
    }
}

fn check_synthesize(file: &PipelineFile, out: &mut Findings) {
    let Some(s) = &file.synthesize else { return };
    let Some(model) = &file.model else {
        out.add("synthesize", "[synthesize] needs a [model] section");
        return;
    };
    if file.train.is_none() && model.checkpoint.is_none() {
        out.add("model", "missing field \"checkpoint\": [synthesize] needs a trained model, from [train] or model.checkpoint");
    }
    let timesteps = model.diffusion.as_ref().map_or(1000, |d| d.timesteps);
    if s.sampler.steps == 0 || s.sampler.steps > timesteps {
        out.add(
            "synthesize.sampler.steps",
            format!(
                "{} is out of range, expected 1 to model.diffusion.timesteps = {timesteps}",
                s.sampler.steps
            ),
        );
    }
    out.range("synthesize.sampler.eta", s.sampler.eta, 0.0, 1.0, false);
    if !(s.guidance.sag.is_finite() && s.guidance.sag >= 0.0) {
        out.add(
            "synthesize.guidance.sag",
            format!("{} is not allowed, expected a scale >= 0", s.guidance.sag),
        );
    }
    out.positive(
        "synthesize.guidance.sag_blur_sigma",
        s.guidance.sag_blur_sigma,
    );
    if !(s.guidance.cfg.is_finite() && s.guidance.cfg >= 0.0) {
        out.add(
            "synthesize.guidance.cfg",
            format!("{} is not allowed, expected a scale >= 0", s.guidance.cfg),
        );
    }
    if s.guidance.sag > 0.0 {
        if model.kind != ModelKind::Diffusion {
            out.add(
                "synthesize.guidance.sag",
                "Self-Attention Guidance needs model.kind = \"diffusion\"",
            );
        } else if model.attention.kind == AttentionKind::None {
            out.add("synthesize.guidance.sag", "Self-Attention Guidance reads attention maps, but model.attention.kind is \"none\"");
        }
    }
    if s.guidance.cfg != 1.0 {
        if model.task == Task::Generation {
            out.add(
                "synthesize.guidance.cfg",
                "classifier-free guidance needs a condition, but task \"generation\" has none",
            );
        } else if model.cond_dropout == 0.0 {
            out.add("synthesize.guidance.cfg", "classifier-free guidance needs a model trained with condition dropout, but model.cond_dropout is 0");
        }
    }
    out.at_least_one("synthesize.variants", s.variants);
    out.at_least_one("synthesize.batch_size", s.batch_size);
    if let Some(t) = s.truncation {
        if model.kind != ModelKind::Sagan {
            out.add(
                "synthesize.truncation",
                "the truncation trick is for model.kind = \"sagan\"",
            );
        }
        out.positive("synthesize.truncation", t);
    }
}

fn check_evaluate(file: &PipelineFile, out: &mut Findings) {
    let Some(e) = &file.evaluate else { return };
    if file.synthesize.is_none() {
        out.add("evaluate", "[evaluate] compares synthesized images with real ones and needs a [synthesize] section");
    }
    if e.metrics.is_empty() {
        out.add("evaluate.metrics", "empty, expected at least one metric");
    }
    let mut seen = BTreeSet::new();
    for (i, m) in e.metrics.iter().enumerate() {
        if !seen.insert(*m) {
            out.add_at(
                KeyPath::parse("evaluate.metrics").index(i),
                format!("{m:?} is listed twice"),
            );
        }
    }
    if e.protocol == Protocol::Brasyn && !file.has_label() {
        out.add(
            "evaluate.protocol",
            "\"brasyn\" measures SSIM inside and outside the tumour and needs input.label",
        );
    }
    if let Some(r) = e.data_range {
        out.positive("evaluate.data_range", r);
    }
    out.at_least_one("evaluate.kid_subsets[0]", e.kid_subsets[0]);
    out.at_least_one("evaluate.kid_subsets[1]", e.kid_subsets[1]);
    let mut seen = BTreeSet::new();
    for (i, b) in e.baselines.iter().enumerate() {
        if !seen.insert(*b) {
            out.add_at(
                KeyPath::parse("evaluate.baselines").index(i),
                format!("{b:?} is listed twice"),
            );
        }
    }
    if e.baselines.contains(&super::Baseline::Unet) && file.train.is_none() {
        out.add(
            "evaluate.baselines",
            "\"unet\" trains the model's UNet as the model is trained ([train]: epochs, batch, optimizer); add a [train] section or leave \"unet\" out",
        );
    }
    if let Some(seg) = &e.segmentation {
        if !file.has_label() {
            out.add(
                "evaluate.segmentation",
                "downstream segmentation trains on the labels and needs input.label",
            );
        }
        if file
            .model
            .as_ref()
            .is_some_and(|m| m.task == crate::spec::Task::Generation)
        {
            out.add(
                "evaluate.segmentation",
                "task \"generation\" makes no image to segment a subject with; expected \"missing-modality\", \"translation\" or \"label-to-image\"",
            );
        }
        let split = file.synthesize.as_ref().map(|s| s.split);
        if file
            .model
            .as_ref()
            .is_some_and(|m| m.task == crate::spec::Task::LabelToImage)
            && !matches!(split, Some(SplitName::Train | SplitName::All))
        {
            out.add(
                "evaluate.segmentation",
                "for label-to-image it compares a network trained on real slices with one trained on real plus synthetic ones, which needs synthetic training subjects: set synthesize.split = \"train\" or \"all\"",
            );
        }
        if file.train.is_none() && seg.epochs.is_none() {
            out.add(
                "evaluate.segmentation.epochs",
                "missing, required when the file has no [train] to take the epochs from",
            );
        }
        if let Some(n) = seg.epochs {
            out.at_least_one("evaluate.segmentation.epochs", n);
        }
    }
}

fn check_output(file: &PipelineFile, out: &mut Findings) {
    let o = &file.output;
    let mut seen = BTreeSet::new();
    for (i, f) in o.formats.iter().enumerate() {
        if !seen.insert(format!("{f:?}")) {
            out.add_at(
                KeyPath::parse("output.formats").index(i),
                format!("{f:?} is listed twice"),
            );
        }
    }
    let wants_nnunet = o.formats.contains(&WriteFormat::Nnunet);
    match (&o.nnunet, wants_nnunet) {
        (None, true) => out.add("output", "missing field \"nnunet\", required when output.formats has \"nnunet\" (e.g. nnunet = { id = 501, name = \"Phantom\" })"),
        (Some(_), false) => out.add("output.nnunet", "set, but output.formats does not include \"nnunet\""),
        _ => {}
    }
    if let Some(n) = &o.nnunet {
        if !(1..=999).contains(&n.id) {
            out.add(
                "output.nnunet.id",
                format!(
                    "{} is out of range, expected a dataset number 1 to 999",
                    n.id
                ),
            );
        }
        if !is_name(&n.name, &['-', '_']) {
            out.add(
                "output.nnunet.name",
                format!(
                    "{:?} is not a valid dataset name, expected letters, digits, '-' and '_'",
                    n.name
                ),
            );
        }
    }
    if let Some(server) = &o.dicomweb {
        check_dicomweb("output.dicomweb", server, false, out);
    }
    let wants_bids = o.formats.contains(&WriteFormat::Bids);
    if o.bids.is_some() && !wants_bids {
        out.add(
            "output.bids",
            "set, but output.formats does not include \"bids\"",
        );
    }
    if let Some(bids) = &o.bids {
        for (m, pattern) in &bids.suffixes {
            match crate::bids::Pattern::parse(pattern) {
                Ok(p) if p.literal().is_none() => out.add(
                    &format!("output.bids.suffixes.{m}"),
                    format!("{pattern:?} has a glob; a file name needs plain labels"),
                ),
                Ok(_) => {}
                Err(e) => out.add(&format!("output.bids.suffixes.{m}"), e),
            }
        }
    }
    if wants_bids && let Some(model) = &file.model {
        for target in model.target.iter() {
            if crate::bids::suffix_for(file, target).is_none() {
                out.add(
                    "output.bids.suffixes",
                    format!("no BIDS suffix for the synthesized modality {target:?}; add {target} = \"<entities>_<suffix>\" (e.g. \"T2w\")"),
                );
            }
        }
    }
    if let Some(root) = &o.dicom_uid_root
        && !is_uid_root(root)
    {
        out.add("output.dicom_uid_root", format!("{root:?} is not a UID root, expected digits and dots, no empty or zero-padded component, at most 40 characters"));
    }
}

fn is_uid_root(root: &str) -> bool {
    !root.is_empty()
        && root.len() <= 40
        && root.split('.').all(|c| {
            !c.is_empty()
                && c.chars().all(|d| d.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        for p in ["model.attention.kind", "preprocess.size[1]", "a.b[2][3].c"] {
            assert_eq!(KeyPath::parse(p).to_string(), p);
        }
    }

    #[test]
    fn output_must_stay_inside() {
        assert!(stays_inside("runs/demo"));
        assert!(stays_inside("runs/../other"));
        assert!(!stays_inside("../runs"));
        assert!(!stays_inside("runs/../../x"));
        assert!(!stays_inside("/tmp/x"));
        assert!(!stays_inside("."));
    }

    #[test]
    fn orientation_codes() {
        for ok in ["RAS", "LPS", "LPI", "ASR"] {
            assert!(is_orientation(ok), "{ok}");
        }
        for bad in ["RAX", "RRS", "RA", "RASS", "ras"] {
            assert!(!is_orientation(bad), "{bad}");
        }
    }

    #[test]
    fn uid_roots() {
        assert!(is_uid_root("1.2.826.0.1.3680043.10.543"));
        assert!(!is_uid_root("1.02.3"));
        assert!(!is_uid_root("1..2"));
        assert!(!is_uid_root("1.2.a"));
    }
}
