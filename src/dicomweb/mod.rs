//! DICOMweb (DICOM PS3.18) against a PACS or research archive: QIDO-RS to search, WADO-RS to
//! retrieve series into the input cache, STOW-RS to store synthesized series. Every request
//! has a timeout and bounded retries; credentials come from the environment and never appear
//! in messages.

mod multipart;
mod retrieve;
mod store;

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::spec::{AuthScheme, DicomWebServer};

pub use retrieve::{Retrieved, retrieve_cohort};
pub use store::{Stored, store_series};

/// A failed exchange with a DICOMweb server.
#[derive(Debug, thiserror::Error)]
#[error("DICOMweb server {server}: {what}")]
pub struct DicomWebError {
    /// The server's base URL.
    pub server: String,
    pub what: String,
}

/// What came back: status, Content-Type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One request: what it is for (for messages), the path under the base URL, query pairs, the
/// Accept header and, for a POST, the Content-Type and body.
struct Request<'a> {
    what: &'a str,
    path: String,
    query: &'a [(String, String)],
    accept: &'a str,
    body: Option<(&'a str, &'a [u8])>,
}

/// A connection to one DICOMweb service.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    retries: u32,
}

/// Seconds waited before the first retry; doubled for each further one.
const BACKOFF_S: f64 = 1.0;

/// Whether a status is worth trying again.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

impl Client {
    /// A client for `server`, reading its credentials from the environment.
    pub fn new(server: &DicomWebServer) -> Result<Client, DicomWebError> {
        let base = server.url.trim_end_matches('/').to_owned();
        let fail = |what: String| DicomWebError {
            server: base.clone(),
            what,
        };
        let authorization = match &server.auth {
            None => None,
            Some(auth) => {
                let value = std::env::var(&auth.env).map_err(|_| {
                    fail(format!(
                        "the environment variable {} (auth.env) is not set; it must hold the {}",
                        auth.env,
                        match auth.scheme {
                            AuthScheme::Bearer => "bearer token",
                            AuthScheme::Basic => "user:password",
                        }
                    ))
                })?;
                Some(match auth.scheme {
                    AuthScheme::Bearer => format!("Bearer {}", value.trim()),
                    AuthScheme::Basic => {
                        if !value.contains(':') {
                            return Err(fail(format!(
                                "the environment variable {} holds no ':'; basic auth expects user:password",
                                auth.env
                            )));
                        }
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(value.trim())
                        )
                    }
                })
            }
        };
        let timeout = Duration::from_secs_f64(server.timeout_s.max(0.001));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            authorization,
            retries: server.retries,
        })
    }

    /// The server's base URL, for messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn error(&self, what: impl Into<String>) -> DicomWebError {
        DicomWebError {
            server: self.base.clone(),
            what: what.into(),
        }
    }

    /// Sends `request`. Transport errors and transient statuses are tried again up to
    /// `retries` times; `check` may refuse an answer (e.g. a cut-short body) as transient too.
    /// A 404 answers `not_found` when given.
    fn exchange<T>(
        &self,
        request: Request<'_>,
        not_found: Option<T>,
        check: impl Fn(&Answer) -> Result<T, String>,
    ) -> Result<T, DicomWebError>
    where
        T: Clone,
    {
        let Request {
            what,
            path,
            query,
            accept,
            body,
        } = request;
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let wait = BACKOFF_S * f64::from(1u32 << (attempt - 1).min(10));
                tracing::warn!(server = %self.base, attempt, wait_s = wait, "{what} failed ({last}); trying again");
                std::thread::sleep(Duration::from_secs_f64(wait));
            }
            let sent = match body {
                None => {
                    let mut r = self.agent.get(&url).header("Accept", accept);
                    for (k, v) in query {
                        r = r.query(k, v);
                    }
                    if let Some(a) = &self.authorization {
                        r = r.header("Authorization", a);
                    }
                    r.call()
                }
                Some((content_type, bytes)) => {
                    let mut r = self
                        .agent
                        .post(&url)
                        .header("Accept", accept)
                        .header("Content-Type", content_type);
                    if let Some(a) = &self.authorization {
                        r = r.header("Authorization", a);
                    }
                    r.send(bytes)
                }
            };
            let mut response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = transport(&e);
                    continue;
                }
            };
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = match response.body_mut().with_config().read_to_vec() {
                Ok(b) => b,
                Err(e) => {
                    last = format!("the answer was cut short: {}", transport(&e));
                    continue;
                }
            };
            let answer = Answer {
                status,
                content_type,
                body,
            };
            if transient(status) {
                last = format!("HTTP {status}{}", excerpt(&answer.body));
                continue;
            }
            if status == 404
                && let Some(v) = &not_found
            {
                return Ok(v.clone());
            }
            if !(200..300).contains(&status) {
                return Err(self.error(format!("{what}: HTTP {status}{}", excerpt(&answer.body))));
            }
            match check(&answer) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(self.error(format!(
            "{what}: {last} (gave up after {} tries)",
            self.retries + 1
        )))
    }

    /// QIDO-RS: the JSON datasets a search at `path` (e.g. `/studies`) with `query` finds.
    pub fn search(
        &self,
        what: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Vec<Value>, DicomWebError> {
        self.exchange(
            Request {
                what,
                path: path.to_owned(),
                query,
                accept: "application/dicom+json",
                body: None,
            },
            None,
            json_array,
        )
    }

    /// QIDO-RS: what a search at `path` finds, none when the server answers 404 (the study
    /// or series is not there).
    pub fn search_or_none(&self, what: &str, path: &str) -> Result<Vec<Value>, DicomWebError> {
        self.exchange(
            Request {
                what,
                path: path.to_owned(),
                query: &[],
                accept: "application/dicom+json",
                body: None,
            },
            Some(Vec::new()),
            json_array,
        )
    }

    /// WADO-RS: every instance of a series, as the server stores it (no transcoding).
    pub fn retrieve(
        &self,
        what: &str,
        study: &str,
        series: &str,
    ) -> Result<Vec<Vec<u8>>, DicomWebError> {
        self.exchange(
            Request {
                what,
                path: format!("/studies/{study}/series/{series}"),
                query: &[],
                accept: "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
                body: None,
            },
            None,
            |a| {
                let b = multipart::boundary(&a.content_type).ok_or_else(|| {
                    format!(
                        "expected a multipart/related answer, got Content-Type {:?}",
                        a.content_type
                    )
                })?;
                multipart::parse(&a.body, &b)
            },
        )
    }

    /// STOW-RS: stores `instances` (Part 10 files) in `study`; returns the server's answer
    /// (the Store Instances Response dataset).
    pub fn store(
        &self,
        what: &str,
        study: &str,
        instances: &[Vec<u8>],
    ) -> Result<Value, DicomWebError> {
        let (body, content_type) = multipart::build(instances, "medsynth-stow-2f9a7c1e");
        self.exchange(
            Request {
                what,
                path: format!("/studies/{study}"),
                query: &[],
                accept: "application/dicom+json",
                body: Some((&content_type, &body)),
            },
            None,
            |a| {
                serde_json::from_slice::<Value>(&a.body)
                    .map_err(|e| format!("the store answer is not DICOM JSON: {e}"))
            },
        )
    }
}

/// A QIDO-RS answer's datasets (none for 204 No Content or an empty body).
fn json_array(a: &Answer) -> Result<Vec<Value>, String> {
    if a.status == 204 || a.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Vec<Value>>(&a.body)
        .map_err(|e| format!("the search answer is not a DICOM JSON array: {e}"))
}

/// A transport error in words.
fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

/// The start of an error answer's text, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// The first string value of attribute `tag` (8 hex digits) in a DICOM JSON dataset.
pub fn json_str(dataset: &Value, tag: &str) -> Option<String> {
    dataset
        .get(tag)?
        .get("Value")?
        .get(0)
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => o
                .get("Alphabetic")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        })
}

/// The string values of attribute `tag` in a DICOM JSON dataset.
pub fn json_strs(dataset: &Value, tag: &str) -> Vec<String> {
    dataset
        .get(tag)
        .and_then(|e| e.get("Value"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
