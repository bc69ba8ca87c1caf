//! The procedural head: a per-subject random anatomy evaluated voxel by voxel.
//!
//! Everything is defined in *head coordinates*: world millimetres, centred on the head,
//! rotated into the head's frame and divided by the head's semi-axes, so the scalp surface is
//! the unit sphere. A smooth random displacement (a few low-frequency sine waves) then warps
//! these coordinates, which gives each subject its own shape. Layers from outside in: scalp,
//! skull, CSF, a folded cortical ribbon of grey matter over white matter, deep grey nuclei,
//! lateral and third ventricles. Sulci are the zero set of a random field on the sphere, so
//! they wind like real ones; the interhemispheric fissure is a deep midline sulcus. The
//! cortex is a ribbon of constant thickness measured along the normal of the white-matter
//! surface (a signed distance estimated as F / |∇F| on the grid), so it follows the folds
//! instead of being a plain shell. An optional tumour (necrotic core, enhancing rim, oedema
//! spreading through white matter) pushes the anatomy around it aside (mass effect).

use ndarray::parallel::prelude::*;
use ndarray::{Array3, Zip};
use rand::Rng;
use rand_distr::StandardNormal;

use super::tissue::Tissue;
use crate::volume::Affine;

/// Outer scalp radius (head coordinates).
const R_SCALP: f64 = 1.0;
/// Scalp / skull boundary.
const R_SKULL: f64 = 0.935;
/// Skull / CSF boundary.
const R_CSF: f64 = 0.87;
/// Brain hull (pial surface over the gyral crowns).
const R_PIAL: f64 = 0.84;
/// Cortical thickness as a fraction of the mean head semi-axis (about 3 mm on an adult head).
const CORTEX_FRACTION: f64 = 0.04;
/// Depth of ordinary sulci and of the interhemispheric fissure (head coordinates).
const SULCUS_DEPTH: f64 = 0.16;
const FISSURE_DEPTH: f64 = 0.55;
/// Half-width parameter of sulci in the normalised folding field, and of the fissure.
const SULCUS_WIDTH: f64 = 0.45;
const FISSURE_WIDTH: f64 = 0.03;

/// A sine wave `amp · sin(k · q + phase)`.
#[derive(Debug, Clone)]
struct Wave {
    k: [f64; 3],
    phase: f64,
    amp: [f64; 3],
}

impl Wave {
    fn random(rng: &mut impl Rng, freq: (f64, f64), amp: f64) -> Self {
        let dir = unit_vector(rng);
        let f = rng.random_range(freq.0..freq.1);
        Wave {
            k: dir.map(|d| d * f),
            phase: rng.random_range(0.0..std::f64::consts::TAU),
            amp: std::array::from_fn(|_| amp * rng.sample::<f64, _>(StandardNormal)),
        }
    }

    fn arg(&self, q: [f64; 3]) -> f64 {
        self.k[0] * q[0] + self.k[1] * q[1] + self.k[2] * q[2] + self.phase
    }
}

fn unit_vector(rng: &mut impl Rng) -> [f64; 3] {
    loop {
        let v: [f64; 3] = std::array::from_fn(|_| rng.sample(StandardNormal));
        let n = norm(v);
        if n > 1e-6 {
            return v.map(|x| x / n);
        }
    }
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Sum of scalar waves (first amplitude component), normalised to unit variance.
fn field(waves: &[Wave], q: [f64; 3]) -> f64 {
    let sum: f64 = waves.iter().map(|w| w.arg(q).sin()).sum();
    sum / (waves.len() as f64 / 2.0).sqrt()
}

/// The tumour of a subject, in head coordinates.
#[derive(Debug, Clone)]
pub struct Tumour {
    centre: [f64; 3],
    radius: f64,
    necrotic: bool,
    oedema_extent: f64,
    lumps: Vec<Wave>,
    fingers: Vec<Wave>,
}

/// One subject's anatomy.
#[derive(Debug, Clone)]
pub struct Anatomy {
    centre_mm: [f64; 3],
    semi_mm: [f64; 3],
    /// World-to-head rotation (rows are the head's axes in world coordinates).
    rotation: [[f64; 3]; 3],
    warp: Vec<Wave>,
    folds: Vec<Wave>,
    ventricle_scale: f64,
    tumour: Option<Tumour>,
    cortex_mm: f64,
}

impl Anatomy {
    /// Draws an anatomy for a field of view of `fov_mm`, with a tumour if asked.
    pub fn random(rng: &mut impl Rng, fov_mm: [f64; 3], with_tumour: bool) -> Self {
        // Head proportions left-right : anterior-posterior : superior-inferior.
        let ratio = [0.78, 1.0, 0.9];
        let base = (0..3)
            .map(|a| fov_mm[a] / ratio[a])
            .fold(f64::INFINITY, f64::min)
            * 0.42;
        let semi_mm: [f64; 3] =
            std::array::from_fn(|a| base * ratio[a] * rng.random_range(0.92..1.05));
        let centre_mm: [f64; 3] =
            std::array::from_fn(|a| base * ratio[a] * rng.random_range(-0.04..0.04));
        let yaw = rng.random_range(-6f64..6.0).to_radians();
        let pitch = rng.random_range(-8f64..8.0).to_radians();
        let (sy, cy) = yaw.sin_cos();
        let (sp, cp) = pitch.sin_cos();
        // Rz(yaw) · Rx(pitch), transposed (world to head).
        let rz = [[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
        let mut r = [[0.0; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| rz[i][k] * rx[k][j]).sum();
            }
        }
        let rotation = std::array::from_fn(|i| std::array::from_fn(|j| r[j][i]));
        let warp = (0..4)
            .map(|_| Wave::random(rng, (1.0, 2.5), 0.035))
            .collect();
        let folds = (0..12)
            .map(|_| Wave::random(rng, (14.0, 20.0), 1.0))
            .collect();
        let ventricle_scale = rng.random_range(0.8..1.35);
        let mean_semi = (semi_mm[0] + semi_mm[1] + semi_mm[2]) / 3.0;
        let mut anatomy = Anatomy {
            centre_mm,
            semi_mm,
            rotation,
            warp,
            folds,
            ventricle_scale,
            tumour: None,
            cortex_mm: CORTEX_FRACTION * mean_semi,
        };
        if with_tumour {
            anatomy.tumour = Some(anatomy.random_tumour(rng));
        }
        anatomy
    }

    fn random_tumour(&self, rng: &mut impl Rng) -> Tumour {
        let radius = rng.random_range(0.1..0.16);
        let mut centre = [0.3, 0.1, 0.2];
        for _ in 0..200 {
            let c: [f64; 3] = std::array::from_fn(|_| rng.random_range(-0.6..0.6));
            let clear_of_midline = c[0].abs() > 0.12 + radius * 0.5;
            let inside = norm(c) + radius < 0.72;
            let clear_of_ventricles = !self.in_ventricle(c, 1.8) && !self.in_deep_gm(c);
            if clear_of_midline && inside && clear_of_ventricles {
                centre = c;
                break;
            }
        }
        Tumour {
            centre,
            radius,
            necrotic: rng.random_bool(0.8),
            oedema_extent: rng.random_range(1.4..2.0),
            lumps: (0..4).map(|_| Wave::random(rng, (2.5, 4.5), 1.0)).collect(),
            fingers: (0..6).map(|_| Wave::random(rng, (4.0, 7.0), 1.0)).collect(),
        }
    }

    /// Warped head coordinates of a world point.
    fn head_coords(&self, p: [f64; 3]) -> [f64; 3] {
        let d: [f64; 3] = std::array::from_fn(|a| p[a] - self.centre_mm[a]);
        let mut q: [f64; 3] = std::array::from_fn(|i| {
            (0..3).map(|j| self.rotation[i][j] * d[j]).sum::<f64>() / self.semi_mm[i]
        });
        let base = q;
        for w in &self.warp {
            let s = w.arg(base).sin();
            for (qa, amp) in q.iter_mut().zip(w.amp) {
                *qa += amp * s;
            }
        }
        q
    }

    /// Where the undisturbed anatomy seen at `q` came from, with the tumour's mass effect.
    fn displaced(&self, q: [f64; 3]) -> [f64; 3] {
        let Some(t) = &self.tumour else { return q };
        let v: [f64; 3] = std::array::from_fn(|a| q[a] - t.centre[a]);
        let d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
        // f(d) = d (1 - k exp(-d²/2r²)) is monotonic for k < 1, so the push is a fold-free warp.
        let shrink = 1.0 - 0.55 * (-d2 / (2.0 * t.radius * t.radius)).exp();
        std::array::from_fn(|a| t.centre[a] + v[a] * shrink)
    }

    fn in_ventricle(&self, q: [f64; 3], grow: f64) -> bool {
        let s = self.ventricle_scale * grow;
        let [x, y, z] = q;
        // Third ventricle: a thin midline slab.
        if x.abs() < 0.012 * s && (-0.13..0.07).contains(&y) && (-0.13..0.04).contains(&z) {
            return true;
        }
        // Lateral ventricles: C-shaped tubes curving down at both ends.
        let t = (y + 0.04) / 0.42;
        if t.abs() >= 1.0 {
            return false;
        }
        let taper = (1.0 - t * t).sqrt();
        let xc = 0.1 + 0.06 * t * t;
        let zc = 0.12 - 0.16 * t * t;
        let rx = 0.075 * s * (0.4 + 0.6 * taper);
        let rz = 0.09 * s * taper;
        let dx = (x.abs() - xc) / rx;
        let dz = (z - zc) / rz;
        dx * dx + dz * dz <= 1.0
    }

    fn in_deep_gm(&self, q: [f64; 3]) -> bool {
        let [x, y, z] = q;
        let ell = |c: [f64; 3], r: [f64; 3]| {
            let d = [
                (x.abs() - c[0]) / r[0],
                (y - c[1]) / r[1],
                (z - c[2]) / r[2],
            ];
            d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= 1.0
        };
        // Thalamus and the lentiform nucleus, one pair each side.
        ell([0.08, -0.10, -0.04], [0.055, 0.09, 0.06])
            || ell([0.21, 0.07, 0.0], [0.045, 0.11, 0.07])
    }

    /// How deep the white-matter surface lies below the brain hull at `q` (0 on gyral crowns).
    fn fold_depth(&self, q: [f64; 3], rho: f64) -> f64 {
        let dir = q.map(|v| v / rho.max(1e-9));
        let n = field(&self.folds, dir);
        let sulcus = (-(n / SULCUS_WIDTH).powi(2)).exp();
        // The fissure splits the hemispheres above the corpus callosum and fully at the poles.
        let fissure = if q[2] > -0.05 || q[1].abs() > 0.5 {
            (-(q[0] / FISSURE_WIDTH).powi(2)).exp()
        } else {
            0.0
        };
        (SULCUS_DEPTH * sulcus).max(FISSURE_DEPTH * fissure)
    }

    /// Labels every voxel of a grid. Voxels are indexed `[i, j, k]`.
    pub fn tissues(&self, shape: [usize; 3], affine: &Affine) -> Array3<u8> {
        let mean_semi = (self.semi_mm[0] + self.semi_mm[1] + self.semi_mm[2]) / 3.0;
        let cortex_n = self.cortex_mm / mean_semi;
        // Pass 1: per voxel the coarse layer, and F = ρ - W, whose zero set is the
        // white-matter surface W = R_PIAL - cortex - fold depth.
        let mut coarse = Array3::<u8>::zeros(shape);
        let mut f = Array3::<f64>::zeros(shape);
        Zip::indexed(&mut coarse)
            .and(&mut f)
            .par_for_each(|(i, j, k), c, fv| {
                let p = affine.apply([i as f64, j as f64, k as f64]);
                let q_seen = self.head_coords(p);
                let q = self.displaced(q_seen);
                let rho = norm(q);
                *fv = rho - (R_PIAL - cortex_n - self.fold_depth(q, rho));
                *c = if rho > R_SCALP {
                    Tissue::Background
                } else if rho > R_SKULL {
                    Tissue::Scalp
                } else if rho > R_CSF {
                    Tissue::Skull
                } else if self.in_ventricle(q, 1.0) {
                    Tissue::Ventricle
                } else if self.in_deep_gm(q) {
                    Tissue::Gm
                } else {
                    Tissue::Wm // refined by the cortex pass below
                } as u8;
            });
        // Pass 2: signed distance to the white-matter surface, d = F / |∇F| in mm.
        let spacing = affine.spacing();
        let mut out = coarse.clone();
        let [nx, ny, nz] = shape;
        out.axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut plane)| {
                for j in 0..ny {
                    for k in 0..nz {
                        let label = coarse[[i, j, k]];
                        let is_cerebrum = label == Tissue::Wm as u8;
                        let is_deep = label == Tissue::Ventricle as u8 || label == Tissue::Gm as u8;
                        if !is_cerebrum && !is_deep {
                            continue;
                        }
                        let fv = f[[i, j, k]];
                        let g = |axis: usize| {
                            let (lo, hi) = match axis {
                                0 => ([i.saturating_sub(1), j, k], [(i + 1).min(nx - 1), j, k]),
                                1 => ([i, j.saturating_sub(1), k], [i, (j + 1).min(ny - 1), k]),
                                _ => ([i, j, k.saturating_sub(1)], [i, j, (k + 1).min(nz - 1)]),
                            };
                            let steps = (hi[axis] - lo[axis]).max(1) as f64;
                            (f[hi] - f[lo]) / (steps * spacing[axis])
                        };
                        let grad = norm([g(0), g(1), g(2)]).max(1e-9);
                        let d_mm = fv / grad;
                        let tissue = if d_mm >= self.cortex_mm {
                            Some(Tissue::Csf)
                        } else if d_mm >= 0.0 {
                            Some(Tissue::Gm)
                        } else {
                            None // keep white matter or the deep structure
                        };
                        if let Some(t) = tissue {
                            plane[[j, k]] = t as u8;
                        }
                    }
                }
            });
        // Pass 3: the tumour replaces brain tissue; oedema spreads through white matter.
        if let Some(t) = &self.tumour {
            Zip::indexed(&mut out).par_for_each(|(i, j, k), label| {
                let brain = [Tissue::Gm, Tissue::Wm, Tissue::Ventricle, Tissue::Csf]
                    .iter()
                    .any(|x| *x as u8 == *label);
                if !brain {
                    return;
                }
                let p = affine.apply([i as f64, j as f64, k as f64]);
                let q = self.head_coords(p);
                let v: [f64; 3] = std::array::from_fn(|a| q[a] - t.centre[a]);
                let d = norm(v);
                let dir = v.map(|x| x / d.max(1e-9));
                let r = t.radius * (1.0 + 0.18 * field(&t.lumps, dir));
                let u = d / r;
                let core = if t.necrotic && u < 0.45 {
                    Some(Tissue::Necrosis)
                } else if u < 0.8 {
                    Some(Tissue::Enhancing)
                } else {
                    None
                };
                if let Some(c) = core {
                    // The solid tumour replaces anything inside the skull except outer CSF.
                    if norm(self.displaced(q)) < R_PIAL {
                        *label = c as u8;
                    }
                    return;
                }
                let reach = t.oedema_extent * (1.0 + 0.25 * field(&t.fingers, q));
                if u < reach
                    && (*label == Tissue::Wm as u8 || (*label == Tissue::Gm as u8 && u < 1.1))
                {
                    *label = Tissue::Oedema as u8;
                }
            });
        }
        out
    }

    /// A smooth proton-density texture around 1 (±3 %), fixed per subject.
    pub fn texture(&self, p: [f64; 3]) -> f64 {
        let q = self.head_coords(p);
        1.0 + 0.03 * field(&self.warp, q.map(|v| v * 3.0))
    }
}
