//! DICOM series in and out.
//!
//! Reading: a folder tree is scanned in parallel, headers only (up to PixelData); files that
//! are not DICOM images are skipped with the reason logged; images are grouped by
//! SeriesInstanceUID and a series that mixes orientations, image sizes, pixel spacings or
//! echoes is split (as dcm2niix does); slices are sorted along the slice normal by
//! ImagePositionPatient and checked for uniform spacing and gaps; pixel data is decoded (native,
//! RLE, JPEG baseline/lossless and deflate transfer syntaxes), the modality rescale applied and
//! MONOCHROME1 inverted; enhanced multi-frame objects are read frame by frame with their
//! per-frame positions. DICOM's LPS world is converted to NIfTI's RAS.

mod header;
mod rle;
mod scan;
mod series;
mod write;

use std::path::PathBuf;

pub use header::{FrameInfo, Identifier, SliceHeader, read_header};
pub use scan::{Scan, Skipped, scan};
pub use series::{Series, read_frames, read_series};
pub use write::{WriteOptions, make_uid, write_series};

/// Why DICOM data could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("cannot read folder {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable DICOM file")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: missing {tag}, needed for the geometry")]
    MissingTag { path: PathBuf, tag: &'static str },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("series {series} ({folder}): {what}")]
    Series {
        series: String,
        folder: PathBuf,
        what: String,
    },
    #[error("{path}: cannot decode pixel data in transfer syntax {transfer_syntax} ({name})")]
    Decode {
        path: PathBuf,
        transfer_syntax: String,
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no DICOM image series under {path}")]
    NoSeries { path: PathBuf },
    #[error("cannot write DICOM file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
