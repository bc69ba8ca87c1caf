//! The voxel-to-world affine (RAS+ millimetres) and what can be read off it.

use serde::{Deserialize, Serialize};

/// A 4 x 4 voxel-to-world affine in RAS+ millimetres, row-major: `world = A · (i, j, k, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine(pub [[f64; 4]; 4]);

impl Affine {
    /// An axis-aligned RAS grid of `shape` voxels of `spacing_mm`, centred on the world origin.
    pub fn centred(shape: [usize; 3], spacing_mm: [f64; 3]) -> Self {
        let mut m = [[0.0; 4]; 4];
        for axis in 0..3 {
            m[axis][axis] = spacing_mm[axis];
            m[axis][3] = -(shape[axis] as f64 - 1.0) / 2.0 * spacing_mm[axis];
        }
        m[3][3] = 1.0;
        Affine(m)
    }

    /// World coordinates (mm) of voxel `ijk` (fractional indices allowed).
    pub fn apply(&self, ijk: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        std::array::from_fn(|r| m[r][0] * ijk[0] + m[r][1] * ijk[1] + m[r][2] * ijk[2] + m[r][3])
    }

    /// Determinant of the 3 x 3 linear part (0 when the axes are not independent).
    pub fn determinant(&self) -> f64 {
        let m = &self.0;
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// The world-to-voxel affine, or `None` when this one is singular or not finite.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let det = self.determinant();
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let inv = [
            [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
            [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
            [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
        ]
        .map(|row| row.map(|v| v / det));
        let mut out = [[0.0; 4]; 4];
        for r in 0..3 {
            out[r][..3].copy_from_slice(&inv[r]);
            out[r][3] = -(0..3).map(|k| inv[r][k] * m[k][3]).sum::<f64>();
        }
        out[3][3] = 1.0;
        Some(Affine(out))
    }

    /// The product `self · other`.
    pub fn then(&self, other: &Affine) -> Affine {
        Affine(std::array::from_fn(|r| {
            std::array::from_fn(|c| (0..4).map(|k| self.0[r][k] * other.0[k][c]).sum())
        }))
    }

    /// Voxel sizes: the lengths of the first three columns.
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|c| (0..3).map(|r| self.0[r][c].powi(2)).sum::<f64>().sqrt())
    }

    /// The NIfTI quaternion parameters `(b, c, d, qoffset, qfac)` of this affine, following the
    /// reference `nifti_mat44_to_quatern` (nifti1_io.c): columns are normalised, a negative
    /// determinant is absorbed into `qfac = -1` by flipping the third column, and the
    /// quaternion is taken from the resulting proper rotation.
    pub fn to_quatern(&self) -> ([f64; 3], [f64; 3], f64) {
        let m = &self.0;
        let offset = [m[0][3], m[1][3], m[2][3]];
        let spacing = self.spacing();
        let mut r = [[0.0; 3]; 3];
        for c in 0..3 {
            let s = if spacing[c] > 0.0 { spacing[c] } else { 1.0 };
            for (row, rr) in r.iter_mut().enumerate() {
                rr[c] = m[row][c] / s;
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        let qfac = if det < 0.0 {
            for rr in r.iter_mut() {
                rr[2] = -rr[2];
            }
            -1.0
        } else {
            1.0
        };
        let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
        let (a, b, c, d);
        if trace > 0.5 {
            let aa = 0.5 * trace.sqrt();
            a = aa;
            b = 0.25 * (r[2][1] - r[1][2]) / aa;
            c = 0.25 * (r[0][2] - r[2][0]) / aa;
            d = 0.25 * (r[1][0] - r[0][1]) / aa;
        } else {
            let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
            let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
            let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
            if xd > 1.0 {
                let bb = 0.5 * xd.sqrt();
                b = bb;
                c = 0.25 * (r[0][1] + r[1][0]) / bb;
                d = 0.25 * (r[0][2] + r[2][0]) / bb;
                a = 0.25 * (r[2][1] - r[1][2]) / bb;
            } else if yd > 1.0 {
                let cc = 0.5 * yd.sqrt();
                c = cc;
                b = 0.25 * (r[0][1] + r[1][0]) / cc;
                d = 0.25 * (r[1][2] + r[2][1]) / cc;
                a = 0.25 * (r[0][2] - r[2][0]) / cc;
            } else {
                let dd = 0.5 * zd.sqrt();
                d = dd;
                b = 0.25 * (r[0][2] + r[2][0]) / dd;
                c = 0.25 * (r[1][2] + r[2][1]) / dd;
                a = 0.25 * (r[1][0] - r[0][1]) / dd;
            }
        }
        // NIfTI stores only b, c, d and requires a >= 0.
        let sign = if a < 0.0 { -1.0 } else { 1.0 };
        ([sign * b, sign * c, sign * d], offset, qfac)
    }
}

/// The world axis (0 R/L, 1 A/P, 2 S/I) an orientation letter names, and whether it points
/// the positive RAS way.
pub fn orientation_axis(c: char) -> Option<(usize, bool)> {
    match c {
        'R' => Some((0, true)),
        'L' => Some((0, false)),
        'A' => Some((1, true)),
        'P' => Some((1, false)),
        'S' => Some((2, true)),
        'I' => Some((2, false)),
        _ => None,
    }
}

/// Parses an orientation code such as `RAS` or `LPI`: three letters naming each world axis
/// once. Returns each letter's axis and direction.
pub fn parse_orientation(code: &str) -> Option<[(usize, bool); 3]> {
    let chars: Vec<char> = code.chars().collect();
    let letters: [char; 3] = chars.try_into().ok()?;
    let axes = letters.map(orientation_axis);
    let mut seen = [false; 3];
    for a in &axes {
        let (axis, _) = (*a)?;
        if std::mem::replace(&mut seen[axis], true) {
            return None;
        }
    }
    Some(axes.map(|a| a.unwrap_or((0, true))))
}

/// The orientation code of an affine: for each voxel axis, the world direction (R/L, A/P, S/I)
/// it points to most, as nibabel's `aff2axcodes` reports it (e.g. `RAS`, `LPS`, `LPI`).
pub fn orientation_code(affine: &Affine) -> String {
    let m = &affine.0;
    let letters = [('R', 'L'), ('A', 'P'), ('S', 'I')];
    let columns: [[f64; 3]; 3] = std::array::from_fn(|c| std::array::from_fn(|r| m[r][c]));
    let mut used = [false; 3];
    let mut out = String::new();
    for col in columns {
        // The world axis this voxel axis follows most closely, among those not yet taken.
        let best = (0..3)
            .filter(|&row| !used[row])
            .max_by(|&a, &b| col[a].abs().total_cmp(&col[b].abs()));
        match best {
            Some(row) => {
                used[row] = true;
                let (pos, neg) = letters[row];
                out.push(if col[row] >= 0.0 { pos } else { neg });
            }
            None => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_grid_is_symmetric_about_origin() {
        let a = Affine::centred([4, 5, 6], [2.0, 1.0, 3.0]);
        let first = a.apply([0.0, 0.0, 0.0]);
        let last = a.apply([3.0, 4.0, 5.0]);
        for axis in 0..3 {
            assert!((first[axis] + last[axis]).abs() < 1e-12);
        }
        assert_eq!(a.spacing(), [2.0, 1.0, 3.0]);
        assert_eq!(orientation_code(&a), "RAS");
    }

    #[test]
    fn inverse_undoes_an_oblique_affine() {
        let (s, c) = (0.4f64.sin(), 0.4f64.cos());
        let a = Affine([
            [c * 2.0, -s, 0.0, 5.0],
            [s * 2.0, c, 0.0, -3.0],
            [0.0, 0.0, 3.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let id = a.inverse().unwrap().then(&a);
        for r in 0..4 {
            for col in 0..4 {
                assert!((id.0[r][col] - if r == col { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(
            Affine([
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0]
            ])
            .inverse()
            .is_none()
        );
    }

    #[test]
    fn lps_flip_gives_qfac_and_code() {
        // An LPI grid (DICOM-like axial stack read inferior to superior flipped).
        let a = Affine([
            [-1.0, 0.0, 0.0, 10.0],
            [0.0, -1.0, 0.0, 20.0],
            [0.0, 0.0, -2.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        assert_eq!(orientation_code(&a), "LPI");
        let (bcd, offset, qfac) = a.to_quatern();
        // det < 0: third column flipped to +2 gives diag(-1, -1, 1), a 180° turn about z.
        assert_eq!(qfac, -1.0);
        assert!(
            (bcd[0]).abs() < 1e-12 && (bcd[1]).abs() < 1e-12 && (bcd[2].abs() - 1.0).abs() < 1e-12
        );
        assert_eq!(offset, [10.0, 20.0, 30.0]);
    }
}
