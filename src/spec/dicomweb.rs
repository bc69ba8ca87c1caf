//! `input.dicomweb` and `output.dicomweb`: a DICOMweb server (a PACS or research archive such
//! as Orthanc, dcm4chee or a cloud DICOM store) to search and retrieve studies from, or to
//! store synthesized series in.

use super::check::{Findings, is_name, stays_inside};
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DICOMweb service and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DicomWebServer {
    /// Base URL of the service, the part before `/studies`, e.g.
    /// `http://127.0.0.1:8042/dicom-web` (Orthanc) or `https://pacs.example.org/dcm4chee-arc/aets/DCM4CHEE/rs`.
    /// No credentials in the URL: they go in `auth`.
    pub url: String,
    /// How to authenticate; default none.
    #[serde(default)]
    pub auth: Option<DicomWebAuth>,
    /// Seconds one request may take, connection to last byte (one series retrieved, one
    /// series stored, one search), before it counts as failed. Default 300.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// How many times a failed request is tried again (connection errors, timeouts, HTTP 408,
    /// 429 and 5xx), waiting 1 s, 2 s, 4 s, ... between tries. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `input.dicomweb` only: the QIDO-RS study search, attribute keyword -> value, e.g.
    /// `{ StudyDate = "20240101-20241231", ModalitiesInStudy = "MR" }`; a list of values
    /// (`StudyInstanceUID = ["1.2.3", "1.2.4"]`) searches for each and takes them all.
    /// Default: every study on the server.
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// `input.dicomweb` only: folder the retrieved series are kept in, relative to the run
    /// root; one folder per series, named by a hash of the server, study and series, so runs
    /// can share it and a re-run retrieves only what it lacks. Default `<run folder>/dicomweb`.
    #[serde(default)]
    pub cache: Option<String>,
}

/// A QIDO-RS match value: one, or a list searched one at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum QueryValue {
    One(String),
    Many(Vec<String>),
}

impl QueryValue {
    /// The values, in order.
    pub fn values(&self) -> Vec<String> {
        match self {
            QueryValue::One(v) => vec![v.clone()],
            QueryValue::Many(v) => v.clone(),
        }
    }
}

/// Credentials for a DICOMweb server, read from an environment variable when the run starts
/// (never written to the pipeline file, the run folder or the log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DicomWebAuth {
    /// `bearer` (the variable holds a token: `Authorization: Bearer <token>`) or `basic`
    /// (it holds `user:password`).
    pub scheme: AuthScheme,
    /// Name of the environment variable holding the token or `user:password`.
    pub env: String,
}

/// An HTTP authentication scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthScheme {
    Bearer,
    Basic,
}

fn default_timeout() -> f64 {
    300.0
}
fn default_retries() -> u32 {
    3
}

/// The QIDO-RS study-level attributes `input.dicomweb.query` may match on.
pub const QUERY_KEYS: [&str; 11] = [
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ModalitiesInStudy",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "PatientID",
    "PatientName",
    "ReferringPhysicianName",
    "InstitutionName",
];

/// Checks a DICOMweb server entry; `input` allows the search and the cache.
pub(super) fn check(
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
