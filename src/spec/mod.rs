//! The pipeline file: typed sections, loading with located errors, semantic checks and the
//! JSON Schema.
//!
//! A pipeline file is TOML with one table per stage. Parsing goes in two steps: serde turns
//! the text into [`PipelineFile`] (shape and types), then [`check`] applies the rules that
//! tie fields together (split fractions add up, the target is not an input, the image size
//! suits the UNet, the run folder stays inside the run root). Every error names the file,
//! line, column and key path:
//!
//! ```text
//! pipelines/x.toml:14:9: model.attention.kind: unknown variant "tmsaa", expected one of "none", "mhsa", "tmsa"
//! ```
//!
//! ```
//! let text = r#"
//! [pipeline]
//! name = "demo"
//! [input]
//! format = "phantom"
//! "#;
//! let file = medsynth::spec::parse(text, "demo.toml".as_ref()).unwrap();
//! assert_eq!(file.pipeline.seed, 0);
//! ```

mod check;
mod dicomweb;
mod evaluate;
mod input;
mod load;
mod model;
mod output;
mod pipeline;
mod preprocess;
mod schema;
mod synthesize;
mod train;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use check::{Finding, KeyPath, check};
pub use dicomweb::{AuthScheme, DicomWebAuth, DicomWebServer, QUERY_KEYS, QueryValue};
pub use evaluate::{Baseline, EvaluateSection, Metric, Protocol, SegmentationConfig};
pub use input::{
    InputFormat, InputSection, PhantomInput, Prefer, SeriesMatch, Spacing, SubjectGrouping,
};
pub use load::{Diagnostic, SpecError, load, parse};
pub use model::{
    AttentionConfig, AttentionKind, DiffusionConfig, GanConfig, Modalities, ModelKind,
    ModelSection, Prediction, Schedule, Task, UnetConfig,
};
pub use output::{BidsOutput, NnunetConfig, OutputSection, WriteFormat};
pub use pipeline::PipelineSection;
pub use preprocess::{
    CropMode, NormalizeConfig, NormalizeMethod, PreprocessSection, SliceAxis, SliceConfig,
    SplitConfig,
};
pub use schema::schema_json;
pub use synthesize::{GuidanceConfig, SamplerConfig, SamplerKind, SplitName, SynthesizeSection};
pub use train::{AugmentConfig, DeviceKind, OptimizerKind, TrainSection};

/// The modalities a phantom input provides, in the order they are written.
pub const PHANTOM_MODALITIES: [&str; 4] = ["t1", "t1ce", "t2", "flair"];

/// A whole pipeline file. Sections after `[input]` are optional: a run does the stages
/// whose sections are present, in order, and stops after the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "medsynth pipeline")]
pub struct PipelineFile {
    /// Name, seed and run folder.
    pub pipeline: PipelineSection,
    /// Where subjects come from.
    pub input: InputSection,
    /// Invertible preprocessing into the slice store (defaults apply when absent).
    #[serde(default)]
    pub preprocess: PreprocessSection,
    /// The generator; absent for preprocessing-only pipelines.
    #[serde(default)]
    pub model: Option<ModelSection>,
    /// Training; absent to apply `model.checkpoint` as it is.
    #[serde(default)]
    pub train: Option<TrainSection>,
    /// Applying the generator.
    #[serde(default)]
    pub synthesize: Option<SynthesizeSection>,
    /// Metrics.
    #[serde(default)]
    pub evaluate: Option<EvaluateSection>,
    /// What to write (formats, nnU-Net export, report).
    #[serde(default)]
    pub output: OutputSection,
    /// Settings `medsynth sweep` varies: dotted keys of this file, each with the values to
    /// try, e.g. `"model.attention.kind" = ["none", "mhsa", "tmsa"]`. `medsynth sweep` runs
    /// every combination (with any `--set` on its command line); `medsynth run` runs the file
    /// as written. Default none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sweep: std::collections::BTreeMap<String, Vec<SweepValue>>,
}

/// One value a sweep tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SweepValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

impl PipelineFile {
    /// Names of the modalities the input section provides, in declaration order.
    pub fn declared_modalities(&self) -> Vec<String> {
        match self.input.format {
            InputFormat::Nifti | InputFormat::Bids => {
                self.input.modalities.keys().cloned().collect()
            }
            InputFormat::Dicom | InputFormat::Dicomweb => {
                self.input.series.keys().cloned().collect()
            }
            InputFormat::Phantom => PHANTOM_MODALITIES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether subjects come with a label volume.
    pub fn has_label(&self) -> bool {
        self.input.format == InputFormat::Phantom || self.input.label.is_some()
    }

    /// The run folder relative to the run root, with `{name}` and `{seed}` substituted.
    pub fn output_dir(&self) -> String {
        self.pipeline
            .output
            .replace("{name}", &self.pipeline.name)
            .replace("{seed}", &self.pipeline.seed.to_string())
    }
}
