//! BIDS (Brain Imaging Data Structure) datasets: file names as entities and a suffix, reading
//! a dataset's anatomical images as subjects, and the names medsynth gives its derivatives.

mod name;
mod read;

pub use name::{Name, Pattern, default_suffix, subject_label};
pub use read::bids_subjects;

/// The entities and suffix a synthesized `modality` is written with: `output.bids.suffixes`,
/// else for BIDS input the modality's own pattern (when it has no glob), else the usual one
/// ([`default_suffix`]).
pub fn suffix_for(file: &crate::spec::PipelineFile, modality: &str) -> Option<String> {
    if let Some(s) = file
        .output
        .bids
        .as_ref()
        .and_then(|b| b.suffixes.get(modality))
    {
        return Some(s.clone());
    }
    if file.input.format == crate::spec::InputFormat::Bids
        && let Some(p) = file.input.modalities.get(modality)
        && let Some(literal) = Pattern::parse(p).ok().and_then(|p| p.literal())
    {
        return Some(literal);
    }
    default_suffix(modality).map(str::to_owned)
}
