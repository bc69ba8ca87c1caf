//! Storing series on a DICOMweb server with STOW-RS. The server is asked first which
//! instances of the series it already has (QIDO-RS), only the others are sent, and a series
//! counts as stored once the server's answer acknowledges every instance sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dicom::dictionary_std::tags;

use super::{Client, DicomWebError, json_str};
use crate::progress::Progress;
use crate::spec::DicomWebServer;

/// Instances sent per STOW-RS request, at most.
const BATCH: usize = 64;

/// What a store did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Series with at least one instance sent now, and series the server already had whole.
    pub sent_series: usize,
    pub present_series: usize,
    /// Instances sent now.
    pub sent_instances: usize,
}

/// One instance file and its UIDs.
struct Instance {
    path: PathBuf,
    study: String,
    series: String,
    sop: String,
}

fn read_instance(path: &Path) -> Result<Instance, String> {
    let obj = dicom::object::open_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = |tag, name: &str| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{} has no {name}", path.display()))
    };
    Ok(Instance {
        path: path.to_owned(),
        study: text(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?,
        series: text(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?,
        sop: text(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
    })
}

/// Stores every series folder in `folders` (each a folder of one series' files) on `server`.
pub fn store_series(server: &DicomWebServer, folders: &[PathBuf]) -> Result<Stored, DicomWebError> {
    let client = Client::new(server)?;
    let mut out = Stored::default();
    let bar = Progress::new("dicomweb-store", "series", folders.len() as u64);
    let result = store_each(&client, folders, &mut out, &bar);
    if result.is_err() {
        bar.abandon();
    } else {
        bar.finish();
    }
    result.map(|()| out)
}

/// Stores each series folder, counting into `out` and `bar`.
fn store_each(
    client: &Client,
    folders: &[PathBuf],
    out: &mut Stored,
    bar: &Progress,
) -> Result<(), DicomWebError> {
    for folder in folders {
        bar.inc(1);
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|e| client.error(format!("cannot read {}: {e}", folder.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let instances: Vec<Instance> = files
            .iter()
            .map(|p| read_instance(p))
            .collect::<Result<_, _>>()
            .map_err(|e| client.error(format!("storing {}: {e}", folder.display())))?;
        let Some(first) = instances.first() else {
            continue;
        };
        let (study, series) = (first.study.clone(), first.series.clone());
        if let Some(other) = instances
            .iter()
            .find(|i| i.series != series || i.study != study)
        {
            return Err(client.error(format!(
                "storing {}: {} belongs to another series or study than {}",
                folder.display(),
                other.path.display(),
                first.path.display()
            )));
        }
        let name = format!("series {series} ({})", folder.display());
        let present: BTreeSet<String> = client
            .search_or_none(
                &format!("asking which instances of {name} the server has"),
                &format!("/studies/{study}/series/{series}/instances"),
            )?
            .iter()
            .filter_map(|d| json_str(d, "00080018"))
            .collect();
        let missing: Vec<&Instance> = instances
            .iter()
            .filter(|i| !present.contains(&i.sop))
            .collect();
        if missing.is_empty() {
            out.present_series += 1;
            continue;
        }
        for batch in missing.chunks(BATCH) {
            let bytes: Vec<Vec<u8>> = batch
                .iter()
                .map(|i| {
                    std::fs::read(&i.path)
                        .map_err(|e| client.error(format!("cannot read {}: {e}", i.path.display())))
                })
                .collect::<Result<_, _>>()?;
            let answer = client.store(&format!("storing {name} (STOW-RS)"), &study, &bytes)?;
            let acknowledged: BTreeSet<String> = answer
                .get("00081199")
                .and_then(|e| e.get("Value"))
                .and_then(|v| v.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|d| json_str(d, "00081155"))
                        .collect()
                })
                .unwrap_or_default();
            let refused: Vec<&Instance> = batch
                .iter()
                .copied()
                .filter(|i| !acknowledged.contains(&i.sop))
                .collect();
            if !refused.is_empty() {
                let reasons: Vec<String> = answer
                    .get("00081198")
                    .and_then(|e| e.get("Value"))
                    .and_then(|v| v.as_array())
                    .map(|items| {
                        items
                            .iter()
                            .map(|d| {
                                format!(
                                    "{} failure reason {}",
                                    json_str(d, "00081155").unwrap_or_default(),
                                    json_str(d, "00081197").unwrap_or_else(|| "not given".into())
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(client.error(format!(
                    "storing {name}: the server acknowledged {} of {} instances{}",
                    batch.len() - refused.len(),
                    batch.len(),
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join("; "))
                    }
                )));
            }
            out.sent_instances += batch.len();
        }
        out.sent_series += 1;
    }
    Ok(())
}
