//! Applying a trained generator to stored slices. Everything downstream (writing slices,
//! reassembling volumes, metrics, reports) sees only [`Generator`], so it does not depend on
//! the model family.

pub mod baseline;
pub mod diffusion;
pub mod gan;
pub mod unet_baseline;
pub mod volumes;

use ndarray::{Array3, Array4};

use crate::dataset::{ManifestRow, Slices};

pub use diffusion::DiffusionGenerator;
pub use gan::SaganGenerator;

/// Why synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] crate::dataset::StoreError),
    #[error("{path}: {what}")]
    Checkpoint {
        path: std::path::PathBuf,
        what: String,
    },
}

/// A model that produces target modalities for stored slices.
pub trait Generator {
    /// The modalities it produces, in output channel order.
    fn targets(&self) -> Vec<String>;

    /// Synthesizes the targets for `slices` `[B, C, H, W]` (channels in the slice store's
    /// order) described by their manifest `rows`; an input a row lists as missing is not used.
    /// Slice `i` draws its randomness from `seeds[i]` alone: the same seed gives the same
    /// result for that slice in any batch.
    ///
    /// # Shapes
    /// -> `[B, targets, H, W]`
    fn generate(
        &self,
        slices: &Array4<f32>,
        rows: &[&ManifestRow],
        seeds: &[u64],
    ) -> Result<Array4<f32>, SynthError>;

    /// How it samples, for provenance (e.g. `ddim steps=50 eta=0`).
    fn sampler(&self) -> String;

    /// Its guidance settings, for provenance (e.g. `sag=0.5 cfg=1`).
    fn guidance(&self) -> String;

    /// Where the model attends while producing `fake` (its output for `slices` with `seeds`),
    /// for pictures: per slice a map `[B, H, W]` of the attention each position receives,
    /// 1 = uniform. `None` for models without attention.
    fn attention(
        &self,
        _slices: &Array4<f32>,
        _rows: &[&ManifestRow],
        _fake: &Array4<f32>,
        _seeds: &[u64],
    ) -> Option<Result<Array3<f32>, SynthError>> {
        None
    }
}

/// A generator's output `[B, C, H, W]` read back to the host; non-finite values (a diverged
/// checkpoint) are an error.
pub fn to_array(t: burn::tensor::Tensor<4>) -> Result<Array4<f32>, SynthError> {
    let [b, c, h, w] = t.dims();
    let values = t
        .to_data()
        .try_to_vec::<f32>()
        .map_err(|e| SynthError::Setup(format!("reading the output back: {e:?}")))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(SynthError::Setup(
            "the model produced non-finite values; the checkpoint may be from a diverged run"
                .into(),
        ));
    }
    Array4::from_shape_vec((b, c, h, w), values).map_err(|e| SynthError::Setup(e.to_string()))
}

/// Loads the EMA weights (`ema.bpk`) of the checkpoint folder `checkpoint` into `module`.
pub fn load_weights<M: burn::module::Module>(
    module: M,
    checkpoint: &std::path::Path,
) -> Result<M, SynthError> {
    let path = checkpoint.join("ema.bpk");
    if !path.is_file() {
        return Err(SynthError::Checkpoint {
            path,
            what: "no EMA weights here; expected a checkpoint folder written by medsynth \
                   training (step-NNNNNNNN/)"
                .into(),
        });
    }
    let record = burn::store::ModuleRecord::load(&path).map_err(|e| SynthError::Checkpoint {
        path: path.clone(),
        what: format!("{e:?}"),
    })?;
    module
        .try_load_record(record)
        .map_err(|e| SynthError::Checkpoint {
            path,
            what: format!("the weights do not fit the model the pipeline file describes: {e:?}"),
        })
}

/// Checks that a batch of `b` slices comes with `rows` and `seeds` of its length.
/// `slices` in row-major order, as [`Slices`] with their `rows` take them (a copy only when
/// the array is not already in that order).
pub fn host(slices: &Array4<f32>) -> ndarray::CowArray<'_, f32, ndarray::Ix4> {
    slices.as_standard_layout()
}

/// The slices of `values` (from [`host`]) with their rows.
pub fn with_rows<'a>(
    values: &'a ndarray::CowArray<'_, f32, ndarray::Ix4>,
    rows: &[&'a ManifestRow],
) -> Slices<'a> {
    let (b, c, h, w) = values.dim();
    Slices::of(values.as_slice().unwrap_or_default(), [b, c, h, w], rows)
}

pub fn check_batch(b: usize, rows: usize, seeds: usize) -> Result<(), SynthError> {
    if rows != b || seeds != b {
        return Err(SynthError::Setup(format!(
            "{b} slices but {rows} manifest rows and {seeds} seeds"
        )));
    }
    Ok(())
}

/// The seed of a subject's synthesis in variant `variant` (recorded in provenance).
pub fn subject_seed(seed: u64, subject: &str, variant: u32) -> u64 {
    unit_seed(seed, &format!("synth/{subject}/variant-{variant}"))
}

/// The seed of one slice of a subject, from the subject's seed and the slice's place in the
/// store (axis and index): a slice's sample is the same whatever batch, shard or resumed run
/// it is drawn in.
pub fn slice_seed(subject_seed: u64, row: &ManifestRow) -> u64 {
    unit_seed(subject_seed, &format!("{}{}", row.axis, row.slice_index))
}

/// A seed for one unit of work: splitmix64 over the run seed and the unit's name, so a unit's
/// result does not depend on the order units run in (runs resume and parallelize).
pub fn unit_seed(seed: u64, unit: &str) -> u64 {
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in unit.bytes() {
        z = (z ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
