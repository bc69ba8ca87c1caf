//! `train_log.parquet`: one row per optimizer step.

use std::path::Path;

use polars::prelude::*;

use crate::dataset::StoreError;

/// One optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    /// Mean validation loss, on the last step of an epoch.
    pub val_loss: Option<f64>,
    pub lr: f64,
    pub steps_per_s: f64,
    /// GANs: the discriminator's hinge loss (mean over its steps); `loss` is then the
    /// generator's loss.
    pub d_loss: Option<f64>,
    /// GANs: γ of the generator's and the discriminator's SAGAN attention blocks.
    pub gamma_g: Option<f64>,
    pub gamma_d: Option<f64>,
}

/// Writes the log atomically.
pub fn write_log(path: &Path, rows: &[LogRow]) -> Result<(), StoreError> {
    let err = |e: PolarsError| StoreError::Write {
        path: path.to_owned(),
        source: Box::new(e),
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step).collect::<Vec<u64>>(),
        ),
        Column::new(
            "epoch".into(),
            rows.iter().map(|r| r.epoch).collect::<Vec<u64>>(),
        ),
        Column::new(
            "loss".into(),
            rows.iter().map(|r| r.loss).collect::<Vec<f64>>(),
        ),
        Column::new(
            "val_loss".into(),
            rows.iter()
                .map(|r| r.val_loss)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new("lr".into(), rows.iter().map(|r| r.lr).collect::<Vec<f64>>()),
        Column::new(
            "steps_per_s".into(),
            rows.iter().map(|r| r.steps_per_s).collect::<Vec<f64>>(),
        ),
        Column::new(
            "d_loss".into(),
            rows.iter().map(|r| r.d_loss).collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "gamma_g".into(),
            rows.iter().map(|r| r.gamma_g).collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "gamma_d".into(),
            rows.iter().map(|r| r.gamma_d).collect::<Vec<Option<f64>>>(),
        ),
    ])
    .map_err(err)?;
    crate::dataset::write_parquet(path, &mut df)
}

/// Reads a log written by [`write_log`] (empty when the file does not exist).
pub fn read_log(path: &Path) -> Result<Vec<LogRow>, StoreError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |what: String| StoreError::Invalid {
        path: path.to_owned(),
        what,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| bad(e.to_string()))?;
    let u = |n: &str| -> Result<Vec<u64>, StoreError> {
        Ok(df
            .column(n)
            .and_then(|c| c.u64().cloned())
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|v| v.unwrap_or_default())
            .collect())
    };
    let f = |n: &str| -> Result<Vec<Option<f64>>, StoreError> {
        Ok(df
            .column(n)
            .and_then(|c| c.f64().cloned())
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .collect())
    };
    let (step, epoch) = (u("step")?, u("epoch")?);
    let (loss, val, lr, sps) = (f("loss")?, f("val_loss")?, f("lr")?, f("steps_per_s")?);
    // Logs written before the GAN columns existed have none.
    let optional = |n: &str| f(n).unwrap_or_else(|_| vec![None; df.height()]);
    let (d_loss, gamma_g, gamma_d) = (optional("d_loss"), optional("gamma_g"), optional("gamma_d"));
    Ok((0..df.height())
        .map(|i| LogRow {
            step: step[i],
            epoch: epoch[i],
            loss: loss[i].unwrap_or(f64::NAN),
            val_loss: val[i],
            lr: lr[i].unwrap_or(f64::NAN),
            steps_per_s: sps[i].unwrap_or(f64::NAN),
            d_loss: d_loss[i],
            gamma_g: gamma_g[i],
            gamma_d: gamma_d[i],
        })
        .collect())
}
