//! The same voxels stored in another axis order: voxel axes permuted and reversed, with the
//! affine that keeps every voxel at its world position. No interpolation, exactly invertible.
//!
//! ```
//! use medsynth::volume::{Affine, AxisOrder};
//! let ras = Affine::centred([4, 5, 6], [1.0, 2.0, 3.0]);
//! let to_lps = AxisOrder::towards(&ras, "LPS").unwrap();
//! let lps = to_lps.affine(&ras, [4, 5, 6]);
//! assert_eq!(medsynth::volume::orientation_code(&lps), "LPS");
//! // Voxel 0 of the LPS grid is the last voxel along i and j of the RAS grid.
//! assert_eq!(lps.apply([0.0; 3]), ras.apply([3.0, 4.0, 0.0]));
//! ```

use ndarray::{ArrayBase, ArrayView3, ArrayView4, Axis, Data, Dimension, RawData};
use serde::{Deserialize, Serialize};

use super::{Affine, Geometry, Volume, orientation_axis, orientation_code, parse_orientation};

/// Output voxel axis `t` is input axis `perm[t]`, reversed where `flip[t]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxisOrder {
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

impl AxisOrder {
    /// Changes nothing.
    pub const IDENTITY: AxisOrder = AxisOrder {
        perm: [0, 1, 2],
        flip: [false; 3],
    };

    /// The order that stores a grid with `affine` in the orientation `target` (`RAS`, `LPI`,
    /// ...): each output axis is the input axis whose orientation letter names the same world
    /// axis, reversed when it points the other way. Fails naming the code when `target` is not
    /// an orientation code.
    pub fn towards(affine: &Affine, target: &str) -> Result<Self, String> {
        let wanted = parse_orientation(target).ok_or_else(|| {
            format!("{target:?} is not an orientation code, expected e.g. \"RAS\" or \"LPS\"")
        })?;
        let current: Vec<Option<(usize, bool)>> = orientation_code(affine)
            .chars()
            .map(orientation_axis)
            .collect();
        let mut order = Self::IDENTITY;
        for (t, (world, positive)) in wanted.into_iter().enumerate() {
            let source = current
                .iter()
                .position(|c| c.map(|(w, _)| w) == Some(world))
                .ok_or_else(|| {
                    format!(
                        "the affine has no voxel axis along world axis {world} (orientation {})",
                        orientation_code(affine)
                    )
                })?;
            order.perm[t] = source;
            order.flip[t] = current[source].map(|(_, p)| p) != Some(positive);
        }
        Ok(order)
    }

    /// The order that stores an axis-aligned RAS grid in orientation `code`.
    pub fn from_ras(code: &str) -> Result<Self, String> {
        Self::towards(&Affine::centred([2; 3], [1.0; 3]), code)
    }

    /// Whether `perm` names each axis once (an order read from a file may not).
    pub fn is_permutation(&self) -> bool {
        let mut seen = [false; 3];
        self.perm
            .iter()
            .all(|&p| p < 3 && !std::mem::replace(&mut seen[p], true))
    }

    /// Whether this order changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// The order that undoes this one.
    pub fn inverse(&self) -> Self {
        let mut out = Self::IDENTITY;
        for t in 0..3 {
            out.perm[self.perm[t]] = t;
            out.flip[self.perm[t]] = self.flip[t];
        }
        out
    }

    /// The stored shape of a grid of `shape`.
    pub fn shape(&self, shape: [usize; 3]) -> [usize; 3] {
        self.perm.map(|s| shape[s])
    }

    /// The affine of the stored grid, for a grid of `shape` with `affine`.
    pub fn affine(&self, affine: &Affine, shape: [usize; 3]) -> Affine {
        let old = &affine.0;
        let shape = self.shape(shape);
        let mut m = [[0.0; 4]; 4];
        for r in 0..3 {
            for t in 0..3 {
                m[r][t] = old[r][self.perm[t]];
            }
            m[r][3] = old[r][3];
        }
        m[3][3] = 1.0;
        for t in 0..3 {
            if self.flip[t] {
                for row in m.iter_mut().take(3) {
                    row[3] += row[t] * (shape[t] as f64 - 1.0);
                    row[t] = -row[t];
                }
            }
        }
        Affine(m)
    }

    /// The stored grid of `g`.
    pub fn geometry(&self, g: &Geometry) -> Geometry {
        Geometry {
            shape: self.shape(g.shape),
            affine: self.affine(&g.affine, g.shape),
        }
    }

    /// A 3-D array `[i, j, k]` seen in this order (a view: no voxel is copied).
    pub fn view3<'a, A>(&self, a: ArrayView3<'a, A>) -> ArrayView3<'a, A> {
        self.reverse(a.permuted_axes(self.perm))
    }

    /// A 4-D array `[i, j, k, frame]` seen in this order (a view: no voxel is copied).
    pub fn view4<'a, A>(&self, a: ArrayView4<'a, A>) -> ArrayView4<'a, A> {
        let [p0, p1, p2] = self.perm;
        self.reverse(a.permuted_axes([p0, p1, p2, 3]))
    }

    fn reverse<S: RawData, D: Dimension>(&self, mut a: ArrayBase<S, D>) -> ArrayBase<S, D> {
        for (t, &flip) in self.flip.iter().enumerate() {
            if flip {
                a.invert_axis(Axis(t));
            }
        }
        a
    }

    /// `v` stored in this order, its data in standard layout.
    pub fn volume(&self, v: &Volume) -> Volume {
        Volume {
            data: standard(self.view4(v.data.view())),
            geometry: self.geometry(&v.geometry),
            source: v.source.clone(),
            meta: v.meta.clone(),
        }
    }
}

/// An owned copy of `a` in standard (C) layout.
pub fn standard<S, D, A>(a: ArrayBase<S, D>) -> ndarray::Array<A, D>
where
    S: Data<Elem = A>,
    D: Dimension,
    A: Clone,
{
    a.as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 48 orientation codes: the stored grid has that code, every voxel keeps
    /// its world position, and the inverse brings the grid back exactly.
    #[test]
    fn every_orientation_keeps_world_positions_and_inverts() {
        let shape = [4, 5, 6];
        let ras = Affine::centred(shape, [1.0, 2.0, 3.0]);
        let data = ndarray::Array3::from_shape_fn(shape, |(i, j, k)| i + 10 * j + 100 * k);
        let mut codes = 0;
        for a in ['R', 'L', 'A', 'P', 'S', 'I'] {
            for b in ['R', 'L', 'A', 'P', 'S', 'I'] {
                for c in ['R', 'L', 'A', 'P', 'S', 'I'] {
                    let code: String = [a, b, c].iter().collect();
                    let Ok(order) = AxisOrder::towards(&ras, &code) else {
                        assert!(parse_orientation(&code).is_none(), "{code}");
                        continue;
                    };
                    codes += 1;
                    let affine = order.affine(&ras, shape);
                    assert_eq!(orientation_code(&affine), code);
                    let stored = order.view3(data.view());
                    for ((i, j, k), &x) in stored.indexed_iter() {
                        let (di, dj, dk) = (x % 10, x / 10 % 10, x / 100);
                        let at = affine.apply([i, j, k].map(|n| n as f64));
                        let was = ras.apply([di, dj, dk].map(|n| n as f64));
                        assert!((0..3).all(|r| (at[r] - was[r]).abs() < 1e-9), "{code}");
                    }
                    let back = order.inverse();
                    assert_eq!(back.view3(stored), data.view(), "{code}");
                    let shape_back = back.shape(order.shape(shape));
                    assert_eq!(shape_back, shape);
                    let affine_back = back.affine(&affine, order.shape(shape));
                    let close = (0..4)
                        .all(|r| (0..4).all(|c| (affine_back.0[r][c] - ras.0[r][c]).abs() < 1e-9));
                    assert!(close, "{code}: {affine_back:?}");
                }
            }
        }
        assert_eq!(codes, 48);
    }
}
