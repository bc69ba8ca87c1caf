//! Pictures for the report: slices as grey tiles, error and attention maps in a colour map,
//! tiles laid out in a grid with gaps, and PNG encoding.

use std::path::Path;

use ndarray::ArrayView2;

/// An 8-bit RGB picture, rows top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    /// `height · width · 3` bytes.
    pub rgb: Vec<u8>,
}

impl Picture {
    /// A picture filled with one colour.
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Self {
        Picture {
            width,
            height,
            rgb: colour.repeat(width * height),
        }
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.rgb[i..i + 3].copy_from_slice(&c);
    }

    fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Copies `other` in with its top-left corner at (x, y), clipped to this picture.
    pub fn paste(&mut self, other: &Picture, x: usize, y: usize) {
        for sy in 0..other.height.min(self.height.saturating_sub(y)) {
            for sx in 0..other.width.min(self.width.saturating_sub(x)) {
                self.put(x + sx, y + sy, other.get(sx, sy));
            }
        }
    }

    /// Nearest-neighbour enlargement by an integer factor (pixels stay crisp).
    pub fn enlarged(&self, factor: usize) -> Picture {
        let f = factor.max(1);
        let mut out = Picture::filled(self.width * f, self.height * f, [0, 0, 0]);
        for y in 0..out.height {
            for x in 0..out.width {
                out.put(x, y, self.get(x / f, y / f));
            }
        }
        out
    }

    /// PNG bytes (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(|e| e.to_string())?;
            w.write_image_data(&self.rgb).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Writes the picture as a PNG file, atomically.
    pub fn save(&self, path: &Path) -> Result<Vec<u8>, String> {
        let bytes = self
            .png()
            .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
        crate::volume::AtomicFile::write(path, &bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(bytes)
    }
}

/// A slice `[H, W]` (row 0 first; the store's slices are shown with the first row at the
/// top, which for axial RAS slices puts anterior at the bottom, so rows are flipped to show
/// anterior up) as grey values, `lo` black and `hi` white; non-finite values are black.
pub fn grey(slice: ArrayView2<f32>, lo: f32, hi: f32) -> Picture {
    map(slice, |v| {
        let g = level(v, lo, hi);
        let b = (g * 255.0).round() as u8;
        [b, b, b]
    })
}

/// A slice in the perceptually ordered "magma"-like colour map from `lo` to `hi`.
pub fn heat(slice: ArrayView2<f32>, lo: f32, hi: f32) -> Picture {
    map(slice, |v| colour(level(v, lo, hi)))
}

/// `base` with `overlay` (a map, `lo`..`hi`) blended in with opacity growing with its level.
pub fn overlay(base: &Picture, overlay: ArrayView2<f32>, lo: f32, hi: f32) -> Picture {
    let heat = heat(overlay, lo, hi);
    let levels = map(overlay, |v| {
        let g = (level(v, lo, hi) * 255.0) as u8;
        [g, g, g]
    });
    let mut out = base.clone();
    for y in 0..out.height.min(heat.height) {
        for x in 0..out.width.min(heat.width) {
            let a = 0.15 + 0.6 * f32::from(levels.get(x, y)[0]) / 255.0;
            let (b, h) = (base.get(x, y), heat.get(x, y));
            let mix: [u8; 3] =
                std::array::from_fn(|c| (f32::from(b[c]) * (1.0 - a) + f32::from(h[c]) * a) as u8);
            out.put(x, y, mix);
        }
    }
    out
}

fn level(v: f32, lo: f32, hi: f32) -> f32 {
    if !v.is_finite() || hi <= lo {
        return 0.0;
    }
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

fn map(slice: ArrayView2<f32>, f: impl Fn(f32) -> [u8; 3]) -> Picture {
    let (h, w) = slice.dim();
    let mut out = Picture::filled(w, h, [0, 0, 0]);
    for y in 0..h {
        for x in 0..w {
            out.put(x, h - 1 - y, f(slice[[y, x]]));
        }
    }
    out
}

/// A dark-to-bright colour map (black, purple, orange, pale yellow), piecewise linear.
fn colour(t: f32) -> [u8; 3] {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.25, [80.0, 18.0, 123.0]),
        (0.5, [182.0, 54.0, 121.0]),
        (0.75, [251.0, 136.0, 97.0]),
        (1.0, [252.0, 253.0, 191.0]),
    ];
    for pair in STOPS.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        if t <= t1 {
            let u = (t - t0) / (t1 - t0);
            return std::array::from_fn(|c| (c0[c] + (c1[c] - c0[c]) * u).round() as u8);
        }
    }
    [252, 253, 191]
}

/// Tiles in rows, `gap` pixels apart on a dark background; rows may differ in length.
pub fn grid(rows: &[Vec<Picture>], gap: usize) -> Picture {
    let tile_w = rows.iter().flatten().map(|p| p.width).max().unwrap_or(1);
    let tile_h = rows.iter().flatten().map(|p| p.height).max().unwrap_or(1);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let width = cols * tile_w + (cols + 1) * gap;
    let height = rows.len().max(1) * tile_h + (rows.len() + 1) * gap;
    let mut out = Picture::filled(width, height, [24, 24, 24]);
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            out.paste(tile, gap + c * (tile_w + gap), gap + r * (tile_h + gap));
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), for pictures embedded in HTML.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn grey_maps_the_window_and_flips_rows() {
        let s = ndarray::arr2(&[[0.0f32, 1.0], [0.5, f32::NAN]]);
        let p = grey(s.view(), 0.0, 1.0);
        // Row 0 of the slice is the bottom row of the picture.
        assert_eq!(p.get(0, 1), [0, 0, 0]);
        assert_eq!(p.get(1, 1), [255, 255, 255]);
        assert_eq!(p.get(0, 0), [128, 128, 128]);
        assert_eq!(p.get(1, 0), [0, 0, 0]);
    }
}
