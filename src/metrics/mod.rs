//! Image similarity metrics, computed as the reference implementations compute them: SSIM
//! (scikit-image), MS-SSIM (pytorch-msssim), MAE, MSE and PSNR (scikit-image), inside or
//! outside a mask, and the BraSyn protocol.

mod error;
pub mod fid;
pub mod inception;
mod msssim;
pub mod protocol;
mod ssim;
pub mod wilcoxon;

pub use error::{errors, psnr};
pub use msssim::{WEIGHTS as MS_SSIM_WEIGHTS, ms_ssim};
pub use ssim::{MetricError, check_range, masked_mean, ssim, ssim_2d, ssim_map, valid_mean};
