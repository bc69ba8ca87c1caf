//! Scoring one subject's synthetic volumes against its real one, region by region, and
//! across the model's variants.

use std::path::PathBuf;

use super::{Scoring, failed};
use crate::metrics::protocol::{Score, brasyn_clip, score_regions};
use crate::pipeline::error::RunError;
use crate::pipeline::handoff::{MetricRow, metric_name};

/// The subject's foreground on the target's original grid, as preprocessing finds it: the
/// union over the subject's modalities stored on that grid (the target's own otherwise).
pub(super) fn subject_foreground(
    inputs: &crate::preprocess::SubjectInputs,
    target: &crate::volume::Volume,
) -> Result<ndarray::ArrayD<bool>, RunError> {
    let mut same = vec![target.clone()];
    for source in inputs.modalities.values() {
        let v = source.read().map_err(|e| failed(&source.path(), e))?;
        if v.source != target.source && crate::preprocess::same_grid(&v.geometry, &target.geometry)
        {
            same.push(v);
        }
    }
    let refs: Vec<&crate::volume::Volume> = same.iter().collect();
    crate::preprocess::foreground_mask(&refs)
        .ok_or_else(|| failed(&target.source.path, "no volume to take a foreground from"))
}

/// Scores one subject's images of one target against its real one.
pub(super) struct Scorer<'a> {
    pub(super) scoring: &'a Scoring,
    pub(super) real: ndarray::ArrayD<f32>,
    pub(super) label: Option<&'a ndarray::ArrayD<f32>>,
    pub(super) foreground: &'a ndarray::ArrayD<bool>,
    pub(super) path: PathBuf,
    pub(super) subject: &'a str,
    pub(super) target: &'a str,
}

impl Scorer<'_> {
    pub(super) fn score(&self, fake: &ndarray::ArrayD<f32>) -> Result<Vec<Score>, RunError> {
        if fake.shape() != self.real.shape() {
            return Err(failed(
                &self.path,
                format!(
                    "{}: the synthetic {} is {:?}, the real one {:?}",
                    self.subject,
                    self.target,
                    fake.shape(),
                    self.real.shape()
                ),
            ));
        }
        let section = &self.scoring.section;
        score_regions(
            self.real.view(),
            fake.view(),
            self.label.map(|l| l.view()),
            Some(self.foreground.view()),
            &self.scoring.metrics,
            section.protocol,
            section.data_range,
        )
        .map_err(|e| failed(&self.path, format!("{}: {e}", self.subject)))
    }

    fn row(
        &self,
        method: &str,
        variant: &str,
        metric: String,
        region: &str,
        value: f64,
    ) -> MetricRow {
        MetricRow {
            method: method.to_owned(),
            subject: self.subject.to_owned(),
            modality: self.target.to_owned(),
            metric,
            region: region.to_owned(),
            protocol: self.scoring.protocol.clone(),
            value,
            variant: variant.to_owned(),
            setting: String::new(),
        }
    }

    pub(super) fn rows(&self, method: &str, variant: &str, scores: &[Score]) -> Vec<MetricRow> {
        scores
            .iter()
            .map(|s| self.row(method, variant, metric_name(s.metric), s.region, s.value))
            .collect()
    }

    /// With two or more variants: the score of their voxel-wise mean (`posterior-mean`), the
    /// mean of their scores (`variant-mean`) and their `diversity`: the voxel standard
    /// deviation across variants (population, in the protocol's intensities: BraSyn-clipped
    /// for `brasyn`, as written otherwise), averaged over the foreground.
    pub(super) fn across_variants(
        &self,
        method: &str,
        images: &[(ndarray::ArrayD<f32>, Vec<Score>)],
    ) -> Result<Vec<MetricRow>, RunError> {
        let n = images.len();
        if n < 2 {
            return Ok(Vec::new());
        }
        let mut mean = ndarray::ArrayD::<f32>::zeros(self.real.raw_dim());
        for (image, _) in images {
            mean += image;
        }
        mean /= n as f32;
        let mut out = self.rows(method, "posterior-mean", &self.score(&mean)?);
        for (i, s) in images[0].1.iter().enumerate() {
            let values: Vec<f64> = images
                .iter()
                .filter_map(|(_, v)| v.get(i))
                .map(|v| v.value)
                .collect();
            let value = values.iter().sum::<f64>() / values.len() as f64;
            out.push(self.row(
                method,
                "variant-mean",
                metric_name(s.metric),
                s.region,
                value,
            ));
        }
        let scaled: Vec<ndarray::ArrayD<f32>> = images
            .iter()
            .map(|(image, _)| match self.scoring.section.protocol {
                crate::spec::Protocol::Brasyn => brasyn_clip(image.view()),
                _ => image.clone(),
            })
            .collect();
        let mut sum = 0.0f64;
        let mut count = 0usize;
        for (idx, &inside) in self.foreground.indexed_iter() {
            if !inside {
                continue;
            }
            let v: Vec<f64> = scaled.iter().map(|a| f64::from(a[&idx])).collect();
            let m = v.iter().sum::<f64>() / n as f64;
            sum += (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            count += 1;
        }
        if count > 0 {
            out.push(self.row(
                method,
                "all",
                "diversity".into(),
                "foreground",
                sum / count as f64,
            ));
        }
        Ok(out)
    }
}
