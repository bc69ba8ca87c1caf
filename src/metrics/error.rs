//! Voxel-wise error metrics, optionally inside a mask: MAE, MSE and PSNR as scikit-image's
//! `mean_squared_error` and `peak_signal_noise_ratio(image_true, image_test, data_range=R)`
//! compute them (PSNR = 10 log10(R² / MSE), infinite for identical images). Arithmetic in f64.

use ndarray::{ArrayViewD, Zip};

use super::{MetricError, check_range};

/// Mean absolute and mean squared error over the voxels where `mask` holds (all without one).
pub fn errors(
    real: ArrayViewD<f32>,
    fake: ArrayViewD<f32>,
    mask: Option<ArrayViewD<bool>>,
) -> Result<(f64, f64), MetricError> {
    if real.shape() != fake.shape() {
        return Err(MetricError::Shape(
            real.shape().to_vec(),
            fake.shape().to_vec(),
        ));
    }
    if let Some(m) = &mask
        && m.shape() != real.shape()
    {
        return Err(MetricError::Mask(m.shape().to_vec(), real.shape().to_vec()));
    }
    let (mut abs, mut sq, mut n) = (0f64, 0f64, 0usize);
    let mut add = |r: f32, f: f32| {
        let d = f as f64 - r as f64;
        abs += d.abs();
        sq += d * d;
        n += 1;
    };
    match &mask {
        Some(m) => Zip::from(&real).and(&fake).and(m).for_each(|&r, &f, &m| {
            if m {
                add(r, f)
            }
        }),
        None => Zip::from(&real).and(&fake).for_each(|&r, &f| add(r, f)),
    }
    if n == 0 {
        return Err(MetricError::EmptyMask);
    }
    Ok((abs / n as f64, sq / n as f64))
}

/// PSNR in dB from an MSE and the data range.
pub fn psnr(mse: f64, data_range: f64) -> Result<f64, MetricError> {
    check_range(data_range)?;
    Ok(10.0 * (data_range * data_range / mse).log10())
}
