//! medsynth: declarative pipelines for medical imaging research data.
//!
//! Data flows one way through the layers, lowest first: [`volume`] (volumes, geometry, file
//! formats) → preprocessing → the slice store → models → training and synthesis → metrics,
//! reports and provenance → [`pipeline`] (plan and run). [`spec`] is the pipeline file and
//! [`phantom`] makes test and demo subjects.

pub mod bids;
pub mod conditioning;
pub mod dataset;
pub mod device;
pub mod dicomweb;
pub mod fingerprint;
pub mod metrics;
pub mod models;
pub mod names;
pub mod phantom;
pub mod pipeline;
pub mod preprocess;
pub mod progress;
pub mod provenance;
pub mod pseudonym;
pub mod report;
pub mod segmentation;
pub mod slurm;
pub mod spec;
pub mod sweep;
pub mod synth;
pub mod train;
pub mod volume;

/// The medsynth version, recorded in provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
