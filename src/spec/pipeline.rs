//! `[pipeline]`: the run's name, its one seed and where it writes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[pipeline]`: what the run is called, the seed that drives it and its run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Name of the run: ASCII letters, digits, `-`, `_` and `.`, at most 64 characters.
    /// Substituted for `{name}` in `output`.
    pub name: String,
    /// The one seed that drives every random choice of the run: subject splits, augmentation,
    /// weight initialisation, modality dropout and sampling. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Run folder, relative to the run root (the folder medsynth is started in, or `--root`).
    /// `{name}` and `{seed}` are substituted. It must stay inside the run root: absolute paths
    /// and `..` that climb out of it are refused. Default `runs/{name}`.
    #[serde(default = "default_output")]
    pub output: String,
    /// Worker threads for every CPU stage, burn's CPU backend (training and sampling)
    /// included; 0 uses every core. `--threads` on the command line overrides it. Default 0.
    #[serde(default)]
    pub threads: usize,
}

fn default_output() -> String {
    "runs/{name}".to_owned()
}
