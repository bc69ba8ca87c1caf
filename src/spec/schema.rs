//! The JSON Schema of pipeline files, generated from the serde types so it cannot drift.

use super::PipelineFile;

/// The JSON Schema (draft 2020-12) of a pipeline file, pretty-printed with a final newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(PipelineFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is always valid JSON");
    text.push('\n');
    text
}
