//! `manifest.parquet`: one row per stored slice.

use std::path::Path;

use polars::prelude::*;

use super::StoreError;
use crate::volume::AtomicFile;

/// One slice of the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRow {
    pub subject: String,
    pub split: String,
    pub axis: String,
    pub slice_index: u32,
    /// Position of the slice's centre along the cut axis, world mm.
    pub world_position_mm: f64,
    /// Which shard file and which row of its tensor.
    pub shard: String,
    pub row: u32,
    /// Comma-separated channel names that hold real data.
    pub channels_real: String,
    /// Comma-separated channel names that are missing (zero-filled) for this subject.
    pub channels_missing: String,
    /// Comma-separated SHA-256 of the source files, in channel order.
    pub source_sha256: String,
    /// The preprocessing record (JSON) that inverts this subject's steps.
    pub record: String,
}

/// Writes the manifest atomically.
pub fn write_manifest(path: &Path, rows: &[ManifestRow]) -> Result<(), StoreError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let col = |name: &str, f: &dyn Fn(&ManifestRow) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<String>>())
    };
    let mut df = DataFrame::new_infer_height(vec![
        col("subject", &|r| r.subject.clone()),
        col("split", &|r| r.split.clone()),
        col("axis", &|r| r.axis.clone()),
        Column::new(
            "slice_index".into(),
            rows.iter().map(|r| r.slice_index).collect::<Vec<u32>>(),
        ),
        Column::new(
            "world_position_mm".into(),
            rows.iter()
                .map(|r| r.world_position_mm)
                .collect::<Vec<f64>>(),
        ),
        col("shard", &|r| r.shard.clone()),
        Column::new(
            "row".into(),
            rows.iter().map(|r| r.row).collect::<Vec<u32>>(),
        ),
        col("channels_real", &|r| r.channels_real.clone()),
        col("channels_missing", &|r| r.channels_missing.clone()),
        col("source_sha256", &|r| r.source_sha256.clone()),
        col("record", &|r| r.record.clone()),
    ])
    .map_err(|e| err(Box::new(e)))?;
    write_parquet(path, &mut df)
}

/// Writes a data frame as parquet, atomically (temporary name, then rename).
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), StoreError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let file = AtomicFile::new(path).map_err(|e| err(Box::new(e)))?;
    let out = std::fs::File::create(file.temp()).map_err(|e| err(Box::new(e)))?;
    ParquetWriter::new(out)
        .finish(df)
        .map_err(|e| err(Box::new(e)))?;
    file.commit().map_err(|e| err(Box::new(e)))
}

/// Reads a parquet file whole; errors name the file.
pub fn read_parquet(path: &Path) -> Result<DataFrame, StoreError> {
    let file = std::fs::File::open(path).map_err(|e| StoreError::Invalid {
        path: path.to_owned(),
        what: format!("cannot open: {e}"),
    })?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| StoreError::Invalid {
            path: path.to_owned(),
            what: format!("not a readable parquet file: {e}"),
        })
}

/// A string column of `df` (read from `path`), nulls as empty strings.
pub fn text_column(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<String>, StoreError> {
    let c = df
        .column(name)
        .and_then(|c| c.str().cloned())
        .map_err(|e| StoreError::Invalid {
            path: path.to_owned(),
            what: format!("column {name}: {e}"),
        })?;
    Ok(c.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
}

/// Reads a manifest written by [`write_manifest`].
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, StoreError> {
    let bad = |what: String| StoreError::Invalid {
        path: path.to_owned(),
        what,
    };
    let df = read_parquet(path)?;
    let text = |name: &str| text_column(&df, path, name);
    let uint = |name: &str| -> Result<Vec<u32>, StoreError> {
        let c = df
            .column(name)
            .and_then(|c| c.u32().cloned())
            .map_err(|e| bad(format!("column {name}: {e}")))?;
        Ok(c.iter().map(|v| v.unwrap_or_default()).collect())
    };
    let position: Vec<f64> = df
        .column("world_position_mm")
        .and_then(|c| c.f64().cloned())
        .map_err(|e| bad(format!("column world_position_mm: {e}")))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let (subject, split, axis) = (text("subject")?, text("split")?, text("axis")?);
    let (shard, real, missing) = (
        text("shard")?,
        text("channels_real")?,
        text("channels_missing")?,
    );
    let (sha, record) = (text("source_sha256")?, text("record")?);
    let (index, row) = (uint("slice_index")?, uint("row")?);
    Ok((0..df.height())
        .map(|i| ManifestRow {
            subject: subject[i].clone(),
            split: split[i].clone(),
            axis: axis[i].clone(),
            slice_index: index[i],
            world_position_mm: position[i],
            shard: shard[i].clone(),
            row: row[i],
            channels_real: real[i].clone(),
            channels_missing: missing[i].clone(),
            source_sha256: sha[i].clone(),
            record: record[i].clone(),
        })
        .collect())
}
