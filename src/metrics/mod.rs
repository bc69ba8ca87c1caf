//! Image similarity metrics, computed as the reference implementations compute them.

mod ssim;

pub use ssim::ssim_2d;
