//! The integration tests, one binary: a module per capability (formats, preprocessing, models,
//! training, runs of whole pipelines, services), sharing the helpers in [`common`].
//!
//!     cargo test --test integration                  # all of them
//!     cargo test --test integration run_reuse::      # one module

mod common;

mod baseline;
mod bids;
mod cli;
mod dataset;
mod dcm2niix;
mod dicom;
mod dicom_conformance;
mod dicom_coverage;
mod dicomweb;
mod gan_layers;
mod geometry;
mod gpu;
mod inception;
mod loader;
mod metrics;
mod models;
mod nifti;
mod phantom;
mod preprocess;
mod provenance;
mod run_downstream;
mod run_export;
mod run_flat_dicom;
mod run_gan;
mod run_geometry;
mod run_lock;
mod run_logs;
mod run_preprocess;
mod run_reuse;
mod run_shards;
mod run_train;
mod schema;
mod slurm;
mod sweep;
mod train_diffusion;
mod train_gan;
mod validate;
