//! Writing and reading safetensors files: an 8-byte little-endian header length, a JSON
//! header (`{"tensor": {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}`), then the
//! raw little-endian data. One tensor `slices` per shard, with the channel names in the
//! metadata (`channels`, comma-separated).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ndarray::Array4;

use super::StoreError;
use crate::volume::AtomicFile;

/// Writes `slices` (`[N, C, H, W]`) with `channels` names and extra `metadata`, atomically.
pub fn write_shard(
    path: &Path,
    slices: &Array4<f32>,
    channels: &[String],
    metadata: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    if channels.len() != slices.shape()[1] || channels.iter().any(|c| c.contains(',')) {
        return Err(StoreError::Invalid {
            path: path.to_owned(),
            what: format!(
                "{} channel names for {} channels (names may not contain ',')",
                channels.len(),
                slices.shape()[1]
            ),
        });
    }
    let n_bytes = slices.len() * 4;
    let mut meta = metadata.clone();
    meta.insert("channels".to_owned(), channels.join(","));
    let header = serde_json::json!({
        "slices": { "dtype": "F32", "shape": slices.shape(), "data_offsets": [0, n_bytes] },
        "__metadata__": meta,
    });
    let mut text = serde_json::to_string(&header).map_err(|e| err(Box::new(e)))?;
    // Pad the header with spaces so the data starts 8-byte aligned.
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let file = AtomicFile::new(path).map_err(|e| err(Box::new(e)))?;
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(file.temp()).map_err(|e| err(Box::new(e)))?);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(|e| err(Box::new(e)))?;
    w.write_all(text.as_bytes()).map_err(|e| err(Box::new(e)))?;
    for v in slices.as_standard_layout().iter() {
        w.write_all(&v.to_le_bytes())
            .map_err(|e| err(Box::new(e)))?;
    }
    w.flush().map_err(|e| err(Box::new(e)))?;
    drop(w);
    file.commit().map_err(|e| err(Box::new(e)))
}

/// What a shard's header says: its shape `[N, C, H, W]`, its channel names, and where its
/// data starts.
struct Header {
    shape: [usize; 4],
    channels: Vec<String>,
    data_start: usize,
    /// `__metadata__`, string values only (the format's rule).
    metadata: BTreeMap<String, String>,
}

/// Parses the header at the start of `bytes` (at least its first `8 + header length` bytes).
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, StoreError> {
    let bad = |what: String| StoreError::Invalid {
        path: path.to_owned(),
        what,
    };
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .ok_or_else(|| bad("shorter than the 8-byte header length".into()))?;
    let text = bytes
        .get(8..8usize.saturating_add(len))
        .ok_or_else(|| bad(format!("header of {len} bytes runs past the end")))?;
    let header: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let t = &header["slices"];
    if t["dtype"] != "F32" {
        return Err(bad(format!(
            "tensor \"slices\" has dtype {}, expected F32",
            t["dtype"]
        )));
    }
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|v| v as usize))
                .collect()
        })
        .unwrap_or_default();
    let [n, c, h, w] = shape[..] else {
        return Err(bad(format!("shape {shape:?}, expected [N, C, H, W]")));
    };
    let channels = header["__metadata__"]["channels"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let metadata = header["__metadata__"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Header {
        shape: [n, c, h, w],
        channels,
        data_start: 8 + len,
        metadata,
    })
}

/// Checks that the data after the header holds the whole tensor.
fn check_data(path: &Path, header: &Header, data_bytes: usize) -> Result<(), StoreError> {
    let expected = header.shape.iter().product::<usize>() * 4;
    if data_bytes < expected {
        return Err(StoreError::Invalid {
            path: path.to_owned(),
            what: format!("{data_bytes} data bytes, expected {expected}"),
        });
    }
    Ok(())
}

/// A shard's shape `[N, C, H, W]` and channel names, reading only its header (and the file's
/// size, to know the data is all there): the same checks as [`read_shard`] without reading
/// the slices.
pub fn shard_shape(path: &Path) -> Result<([usize; 4], Vec<String>), StoreError> {
    shard_layout(path).map(|(shape, channels, _)| (shape, channels))
}

/// A shard's shape, channel names and the byte offset of its first slice, from its header.
pub fn shard_layout(path: &Path) -> Result<([usize; 4], Vec<String>, u64), StoreError> {
    read_header(path).map(|h| (h.shape, h.channels, h.data_start as u64))
}

/// A shard's metadata (the header's `__metadata__`, `channels` among it), reading only its
/// header.
pub fn shard_metadata(path: &Path) -> Result<BTreeMap<String, String>, StoreError> {
    read_header(path).map(|h| h.metadata)
}

/// Reads and checks a shard's header (and its size, so the data is known to be all there).
fn read_header(path: &Path) -> Result<Header, StoreError> {
    use std::io::Read;
    let io = |e: std::io::Error| StoreError::Write {
        path: path.to_owned(),
        source: Box::new(e),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len() as usize;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)
        .map_err(|_| StoreError::Invalid {
            path: path.to_owned(),
            what: "shorter than the 8-byte header length".into(),
        })?;
    let len = (u64::from_le_bytes(prefix) as usize).min(size.saturating_sub(8));
    let mut bytes = prefix.to_vec();
    bytes.resize(8 + len, 0);
    file.read_exact(&mut bytes[8..]).map_err(io)?;
    let header = parse_header(path, &bytes)?;
    check_data(path, &header, size.saturating_sub(header.data_start))?;
    Ok(header)
}

/// Reads a shard written by [`write_shard`]: the tensor and its channel names.
pub fn read_shard(path: &Path) -> Result<(Array4<f32>, Vec<String>), StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::Write {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    let header = parse_header(path, &bytes)?;
    let data = &bytes[header.data_start..];
    check_data(path, &header, data.len())?;
    let [n, c, h, w] = header.shape;
    let values: Vec<f32> = data[..n * c * h * w * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let array = Array4::from_shape_vec((n, c, h, w), values).map_err(|e| StoreError::Invalid {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    Ok((array, header.channels))
}
