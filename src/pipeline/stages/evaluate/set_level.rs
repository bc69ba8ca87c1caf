//! Set-level scores (FID, KID) of every method against the real slices of the split.

use std::path::Path;

use super::{Method, failed, pick};
use crate::dataset::SliceSet;
use crate::metrics::inception::{FidInception, distances, slice_features, value_range};
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::Store;
use crate::pipeline::handoff::{MetricRow, metric_name};
use crate::spec::Metric;

/// Slices per Inception pass: features are computed a chunk at a time, so memory does not
/// grow with the split.
const CHUNK: usize = 256;

/// Inception features of the images `images` gives for each chunk of `rows`.
fn chunked_features(
    net: &FidInception,
    rows: &[usize],
    images: impl Fn(&[usize]) -> Result<ndarray::Array4<f32>, String>,
    range: [f32; 2],
    device: &burn::tensor::Device,
    path: &Path,
) -> Result<ndarray::Array2<f64>, RunError> {
    let mut parts = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        let x = images(chunk).map_err(|e| failed(path, e))?;
        parts.push(slice_features(net, &x, range, device).map_err(|e| failed(path, e))?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| failed(path, e))
}

/// FID and KID of every method against the real slices of the split, over Inception
/// features computed a chunk at a time on `device`; `w` is the weights file.
#[allow(clippy::too_many_arguments)]
pub(super) fn set_level_rows(
    file: &crate::spec::PipelineFile,
    device: &burn::tensor::Device,
    section: &crate::spec::EvaluateSection,
    set_level: &[Metric],
    w: &Path,
    methods: &[Method],
    (real_set, fake_set): (&SliceSet, &SliceSet),
    store: &Store,
) -> Result<Vec<MetricRow>, RunError> {
    let Some(model) = &file.model else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    let net = FidInception::load(w, device).map_err(|e| failed(w, e))?;
    let clip = crate::pipeline::model::clip_range(file);
    let seed = crate::synth::unit_seed(file.pipeline.seed, "evaluate/kid");
    for (t, target) in model.target.iter().enumerate() {
        let Some(rc) = real_set.channels.iter().position(|c| c == target) else {
            continue;
        };
        let with_target: Vec<usize> = (0..real_set.len())
            .filter(|&i| {
                !real_set.rows[i]
                    .channels_missing
                    .split(',')
                    .any(|m| m == target)
            })
            .collect();
        if with_target.len() < 2 {
            continue;
        }
        let real_images =
            |rows: &[usize]| real_set.gather_channel(rows, rc).map_err(|e| e.to_string());
        let range = match clip {
            Some(r) => r,
            None => {
                let mut range = [f32::INFINITY, f32::NEG_INFINITY];
                for chunk in with_target.chunks(CHUNK) {
                    let [lo, hi] =
                        value_range(&real_images(chunk).map_err(|e| failed(&store.dir, e))?);
                    range = [range[0].min(lo), range[1].max(hi)];
                }
                range
            }
        };
        tracing::info!(%target, slices = with_target.len(), "Inception features of the real slices");
        let real_features = chunked_features(&net, &with_target, real_images, range, device, w)?;
        let every: Vec<usize> = (0..real_set.len()).collect();
        for (method, generator) in methods {
            let fake_features = match generator {
                None => {
                    let all: Vec<usize> = (0..fake_set.len()).collect();
                    let images = |rows: &[usize]| {
                        fake_set.gather_channel(rows, t).map_err(|e| e.to_string())
                    };
                    tracing::info!(%method, %target, slices = all.len(), "Inception features");
                    chunked_features(&net, &all, images, range, device, w)?
                }
                Some(g) if g.targets().first().map(String::as_str) == Some(target) => {
                    let images = |rows: &[usize]| {
                        let (x, described) = pick(real_set, rows).map_err(|e| e.to_string())?;
                        let out = g
                            .generate(&x, &described, &vec![0; described.len()])
                            .map_err(|e| e.to_string())?;
                        Ok(out.slice_move(ndarray::s![.., 0..1, .., ..]))
                    };
                    tracing::info!(%method, %target, slices = every.len(), "Inception features");
                    chunked_features(&net, &every, images, range, device, w)?
                }
                Some(_) => continue,
            };
            let (fid, (kid, _)) =
                distances(&real_features, &fake_features, section.kid_subsets, seed)
                    .map_err(|e| failed(w, e))?;
            for m in set_level {
                rows.push(MetricRow {
                    method: method.clone(),
                    subject: "all".into(),
                    modality: target.to_owned(),
                    metric: metric_name(*m),
                    region: "whole".into(),
                    protocol: "slices".into(),
                    value: if *m == Metric::Fid { fid } else { kid },
                    variant: if generator.is_none() { "0" } else { "" }.into(),
                    setting: String::new(),
                });
            }
        }
    }
    Ok(rows)
}
