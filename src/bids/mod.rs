//! BIDS (Brain Imaging Data Structure) datasets: file names as entities and a suffix, reading
//! a dataset's anatomical images as subjects, and the names medsynth gives its derivatives.

mod read;

pub use crate::names::bids::{Name, Pattern, default_suffix, subject_label};
pub use read::bids_subjects;
