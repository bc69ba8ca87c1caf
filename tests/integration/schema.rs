//! The checked-in JSON Schema is the one generated from the pipeline types.

use crate::common;

use common::{medsynth, repo, stdout};

#[test]
fn checked_in_schema_matches_the_types() {
    let out = medsynth(&["schema"]);
    assert!(out.status.success());
    let generated = stdout(&out);
    let checked_in = std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap();
    assert!(
        generated == checked_in,
        "schemas/pipeline.schema.json is stale: regenerate it with\n  cargo run -- schema > schemas/pipeline.schema.json"
    );
}

#[test]
fn schema_documents_fields_and_defaults() {
    let schema: serde_json::Value = serde_json::from_str(&medsynth::spec::schema_json()).unwrap();
    let defs = &schema["$defs"];
    let seed = &defs["PipelineSection"]["properties"]["seed"];
    assert_eq!(seed["default"], 0);
    assert!(seed["description"].as_str().unwrap().contains("seed"));
    let kinds: Vec<&str> = defs["AttentionKind"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["const"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["none", "mhsa", "tmsa"]);
    assert_eq!(defs["PreprocessSection"]["additionalProperties"], false);
}
