//! The NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers, parsed into one version-free form,
//! and the choice of affine as nibabel makes it.

use std::path::Path;

use super::NiftiError;
use crate::volume::Affine;

/// Which NIfTI flavour a header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    One,
    Two,
}

/// The header fields medsynth uses, widened to 64 bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: NiftiVersion,
    pub little_endian: bool,
    /// `dim[0]` and `dim[1..=7]`.
    pub ndim: usize,
    pub dim: [i64; 7],
    pub datatype: i32,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub xyzt_units: i32,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    /// Header and data in one file (`n+1`/`n+2`) rather than a `.hdr`/`.img` pair.
    pub single_file: bool,
    pub descrip: String,
}

/// Bytes the header occupies on disk.
pub fn header_size(version: NiftiVersion) -> usize {
    match version {
        NiftiVersion::One => 348,
        NiftiVersion::Two => 540,
    }
}

struct Fields<'a> {
    bytes: &'a [u8],
    le: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[at..at + N]);
        if !self.le {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i64 {
        i16::from_le_bytes(self.arr(at)) as i64
    }
    fn i32(&self, at: usize) -> i64 {
        i32::from_le_bytes(self.arr(at)) as i64
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.arr(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.arr(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.arr(at))
    }
    fn text(&self, at: usize, len: usize) -> String {
        let raw = &self.bytes[at..at + len];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }
}

/// Which version and byte order `bytes` (at least 4 bytes) start with.
pub fn sniff(bytes: &[u8], path: &Path) -> Result<(NiftiVersion, bool), NiftiError> {
    let not = |reason: String| NiftiError::NotNifti {
        path: path.to_owned(),
        reason,
    };
    let first: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            not(format!(
                "{} bytes long, shorter than any header",
                bytes.len()
            ))
        })?;
    let le = i32::from_le_bytes(first);
    let be = i32::from_be_bytes(first);
    match (le, be) {
        (348, _) => Ok((NiftiVersion::One, true)),
        (_, 348) => Ok((NiftiVersion::One, false)),
        (540, _) => Ok((NiftiVersion::Two, true)),
        (_, 540) => Ok((NiftiVersion::Two, false)),
        _ => Err(not(format!(
            "sizeof_hdr is {le}, expected 348 (NIfTI-1) or 540 (NIfTI-2)"
        ))),
    }
}

/// Parses a header from the start of `bytes`.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Header, NiftiError> {
    let (version, le) = sniff(bytes, path)?;
    let size = header_size(version);
    if bytes.len() < size {
        return Err(NiftiError::NotNifti {
            path: path.to_owned(),
            reason: format!(
                "{} bytes long, shorter than the {size}-byte header",
                bytes.len()
            ),
        });
    }
    let f = Fields { bytes, le };
    let bad = |field: &'static str, value: String, expected: &str| NiftiError::BadHeader {
        path: path.to_owned(),
        field,
        value,
        expected: expected.to_owned(),
    };
    let h = match version {
        NiftiVersion::One => {
            let magic = &bytes[344..348];
            let single_file = match magic {
                b"n+1\0" => true,
                b"ni1\0" => false,
                _ => {
                    return Err(NiftiError::NotNifti {
                        path: path.to_owned(),
                        reason:
                            "no NIfTI magic (\"n+1\" or \"ni1\"); an Analyze 7.5 header is not read"
                                .to_owned(),
                    });
                }
            };
            Header {
                version,
                little_endian: le,
                ndim: f.i16(40) as usize,
                dim: std::array::from_fn(|d| f.i16(42 + 2 * d)),
                datatype: f.i16(70) as i32,
                pixdim: std::array::from_fn(|d| f.f32(76 + 4 * d)),
                vox_offset: f.f32(108),
                scl_slope: f.f32(112),
                scl_inter: f.f32(116),
                xyzt_units: bytes[123] as i32,
                descrip: f.text(148, 80),
                qform_code: f.i16(252) as i32,
                sform_code: f.i16(254) as i32,
                quatern: std::array::from_fn(|d| f.f32(256 + 4 * d)),
                qoffset: std::array::from_fn(|d| f.f32(268 + 4 * d)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
                single_file,
            }
        }
        NiftiVersion::Two => {
            let magic = &bytes[4..12];
            let single_file = match magic {
                b"n+2\0\r\n\x1a\n" => true,
                b"ni2\0\r\n\x1a\n" => false,
                _ => {
                    return Err(NiftiError::NotNifti {
                        path: path.to_owned(),
                        reason: "sizeof_hdr says NIfTI-2 but the magic is not \"n+2\" or \"ni2\""
                            .to_owned(),
                    });
                }
            };
            Header {
                version,
                little_endian: le,
                ndim: f.i64(16).clamp(-1, 100) as usize,
                dim: std::array::from_fn(|d| f.i64(24 + 8 * d)),
                datatype: f.i16(12) as i32,
                pixdim: std::array::from_fn(|d| f.f64(104 + 8 * d)),
                vox_offset: f.i64(168) as f64,
                scl_slope: f.f64(176),
                scl_inter: f.f64(184),
                descrip: f.text(240, 80),
                qform_code: f.i32(344) as i32,
                sform_code: f.i32(348) as i32,
                quatern: std::array::from_fn(|d| f.f64(352 + 8 * d)),
                qoffset: std::array::from_fn(|d| f.f64(376 + 8 * d)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
                xyzt_units: f.i32(500) as i32,
                single_file,
            }
        }
    };
    if !(1..=7).contains(&h.ndim) {
        return Err(bad("dim[0]", h.ndim.to_string(), "1 to 7 dimensions"));
    }
    for d in 0..h.ndim {
        if h.dim[d] < 1 {
            return Err(bad(
                "dim",
                format!("{:?}", &h.dim[..h.ndim]),
                "every used dimension at least 1",
            ));
        }
    }
    if !(h.vox_offset.is_finite() && h.vox_offset >= 0.0) {
        return Err(bad(
            "vox_offset",
            h.vox_offset.to_string(),
            "a byte offset >= 0",
        ));
    }
    if h.single_file && h.vox_offset < size as f64 {
        return Err(bad(
            "vox_offset",
            h.vox_offset.to_string(),
            &format!("at least {size} in a single-file NIfTI"),
        ));
    }
    Ok(h)
}

/// The NIfTI data type: name and bytes per element, for the supported real types.
pub fn datatype_info(code: i32) -> Result<(&'static str, usize), &'static str> {
    Ok(match code {
        2 => ("uint8", 1),
        4 => ("int16", 2),
        8 => ("int32", 4),
        16 => ("float32", 4),
        64 => ("float64", 8),
        256 => ("int8", 1),
        512 => ("uint16", 2),
        768 => ("uint32", 4),
        1024 => ("int64", 8),
        1280 => ("uint64", 8),
        1 => return Err("binary"),
        32 => return Err("complex64"),
        128 => return Err("rgb24"),
        1536 => return Err("float128"),
        1792 => return Err("complex128"),
        2048 => return Err("complex256"),
        2304 => return Err("rgba32"),
        _ => return Err("unknown"),
    })
}

impl Header {
    /// `dim[1..=3]` padded with 1, and the number of frames (product of `dim[4..=ndim]`).
    pub fn grid(&self) -> ([usize; 3], usize) {
        let d = |i: usize| {
            if i < self.ndim {
                self.dim[i] as usize
            } else {
                1
            }
        };
        let frames = (3..self.ndim)
            .map(|i| self.dim[i] as usize)
            .product::<usize>()
            .max(1);
        ([d(0), d(1), d(2)], frames)
    }

    /// Voxel sizes and qfac as nibabel uses them after its load-time repairs: qfac other than
    /// ±1 becomes 1; zero voxel sizes become 1 and negative ones their absolute value.
    /// Returns the repairs made, for the log.
    pub fn repaired_pixdim(&self) -> ([f64; 3], f64, Vec<String>) {
        let mut notes = Vec::new();
        let qfac = if self.pixdim[0] == -1.0 || self.pixdim[0] == 1.0 {
            self.pixdim[0]
        } else {
            notes.push(format!("qfac (pixdim[0]) is {}, using 1", self.pixdim[0]));
            1.0
        };
        let zooms = std::array::from_fn(|a| {
            let z = self.pixdim[a + 1];
            if z == 0.0 || !z.is_finite() {
                notes.push(format!("pixdim[{}] is {z}, using 1", a + 1));
                1.0
            } else if z < 0.0 {
                notes.push(format!("pixdim[{}] is {z}, using {}", a + 1, -z));
                -z
            } else {
                z
            }
        });
        (zooms, qfac, notes)
    }

    /// The qform affine: rotation from the quaternion (b, c, d) with a ≥ 0, times the voxel
    /// sizes (the third multiplied by qfac), plus the offsets (nibabel `get_qform`).
    pub fn qform(&self) -> Affine {
        let (zooms, qfac, _) = self.repaired_pixdim();
        let [b, c, d] = self.quatern;
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2 > 0.0 { w2.sqrt() } else { 0.0 };
        let r = quat_to_matrix(a, b, c, d);
        let scale = [zooms[0], zooms[1], zooms[2] * qfac];
        let mut m = [[0.0; 4]; 4];
        for (i, row) in m.iter_mut().take(3).enumerate() {
            for (j, v) in row.iter_mut().take(3).enumerate() {
                *v = r[i][j] * scale[j];
            }
            row[3] = self.qoffset[i];
        }
        m[3][3] = 1.0;
        Affine(m)
    }

    /// The sform affine.
    pub fn sform(&self) -> Affine {
        let s = self.srow;
        Affine([s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]])
    }

    /// nibabel's fallback when neither code is set: voxel sizes with x flipped, the grid
    /// centred on the origin (`shape_zoom_affine(shape, zooms, x_flip=True)`).
    pub fn base_affine(&self) -> Affine {
        let (zooms, _, _) = self.repaired_pixdim();
        let (shape, _) = self.grid();
        let z = [-zooms[0], zooms[1], zooms[2]];
        let mut m = [[0.0; 4]; 4];
        for a in 0..3 {
            let origin = (shape[a] as f64 - 1.0) / 2.0;
            m[a][a] = z[a];
            m[a][3] = -origin * z[a];
        }
        m[3][3] = 1.0;
        Affine(m)
    }

    /// The affine nibabel reports as `img.affine`, and which form it came from.
    pub fn best_affine(&self) -> (Affine, &'static str) {
        if self.sform_code != 0 {
            (self.sform(), "sform")
        } else if self.qform_code != 0 {
            (self.qform(), "qform")
        } else {
            (self.base_affine(), "pixdim")
        }
    }

    /// When both the sform and the qform are set and place the voxel grid differently: the
    /// largest distance in mm between where they put a corner voxel of a `shape` grid (a
    /// shear the qform cannot hold counts too). `None` when they agree within what a float32
    /// quaternion can hold: 0.01 mm plus 1e-3 of the corner's distance from the origin (a
    /// 180-degree rotation stored in float32 is off by up to about 5e-4 rad, even as nibabel
    /// writes it), or when one of them is unset.
    pub fn sform_qform_disagreement(&self, shape: [usize; 3]) -> Option<f64> {
        if self.sform_code == 0 || self.qform_code == 0 {
            return None;
        }
        let (s, q) = (self.sform(), self.qform());
        let mut worst = 0.0f64;
        let mut beyond = false;
        for corner in 0..8 {
            let ijk: [f64; 3] = std::array::from_fn(|a| {
                if corner >> a & 1 == 1 {
                    shape[a].saturating_sub(1) as f64
                } else {
                    0.0
                }
            });
            let (a, b) = (s.apply(ijk), q.apply(ijk));
            let norm = |v: [f64; 3]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let d = norm(std::array::from_fn(|r| a[r] - b[r]));
            // NaN (a broken form) counts as disagreeing.
            beyond |= d.is_nan() || d > 0.01 + 1e-3 * norm(a);
            worst = worst.max(d);
        }
        beyond.then_some(worst)
    }

    /// Slope and intercept to apply, as nibabel decides: none when the slope is 0 or not
    /// finite; a non-finite intercept counts as 0.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            return None;
        }
        let inter = if self.scl_inter.is_finite() {
            self.scl_inter
        } else {
            0.0
        };
        if self.scl_slope == 1.0 && inter == 0.0 {
            None
        } else {
            Some((self.scl_slope, inter))
        }
    }
}

/// Rotation matrix of the unit quaternion (a, b, c, d), normalised first (nibabel `quat2mat`).
fn quat_to_matrix(w: f64, x: f64, y: f64, z: f64) -> [[f64; 3]; 3] {
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}
