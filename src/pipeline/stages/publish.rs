//! Publishing: storing the synthesized DICOM series on the DICOMweb server `output.dicomweb` names
//! (STOW-RS): what the server already holds is not sent again.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::dicomweb::{Stored, store_series};
use crate::pipeline::context::Run;
use crate::pipeline::error::RunError;
use crate::pipeline::stage::Stage;
use crate::spec::DicomWebServer;

/// Stores every synthesized series of `run` (the folders its `synthetic-volume` DICOM files
/// lie in) on `server` (`output.dicomweb`).
pub fn run(run: &Run, server: &DicomWebServer) -> Result<Stored, RunError> {
    let folders: BTreeSet<PathBuf> = run
        .provenance()
        .iter()
        .filter(|r| r.kind == "synthetic-volume" && r.artifact.ends_with(".dcm"))
        .filter_map(|r| run.dir().join(&r.artifact).parent().map(PathBuf::from))
        .collect();
    let folders: Vec<PathBuf> = folders.into_iter().collect();
    let stored = store_series(server, &folders)
        .map_err(|e| RunError::failed(Stage::Output, &run.dir().join("synth"), e))?;
    tracing::info!(server = %server.url, series = folders.len(), sent = stored.sent_series, already = stored.present_series, instances = stored.sent_instances, "synthesized series stored (STOW-RS)");
    Ok(stored)
}
