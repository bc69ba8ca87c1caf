//! The slice store models read: float32 tensors N × C × H × W in safetensors shards, and a
//! `manifest.parquet` with one row per slice (subject, split, axis, index, world position,
//! which channels are real or missing, source digests, the preprocessing record).

mod loader;
mod manifest;
mod safetensors;

pub use loader::{Batch, Loader, SliceSet, Slices, augment};
pub use manifest::{
    ManifestRow, read_manifest, read_parquet, text_column, write_manifest, write_parquet,
};
pub use safetensors::{read_shard, shard_layout, shard_metadata, shard_shape, write_shard};

use std::path::PathBuf;

/// Why the slice store could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}
