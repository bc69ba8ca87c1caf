//! DICOM RLE Lossless (PS3.5 Annex G) for sample sizes dicom-pixeldata's decoder does not
//! take (32 bits): each frame is one fragment with a 64-byte header of segment offsets, one
//! PackBits segment per byte of each sample (most significant byte first, sample by sample).

/// Decodes one frame of `pixels` pixels with `samples` samples of `bytes` bytes each into
/// pixel-interleaved little-endian bytes. Errors say what is wrong with the fragment.
pub fn decode_frame(
    fragment: &[u8],
    pixels: usize,
    samples: usize,
    bytes: usize,
) -> Result<Vec<u8>, String> {
    let word = |at: usize| -> Result<usize, String> {
        fragment
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "fragment shorter than the RLE header".to_owned())
    };
    let segments = word(0)?;
    if segments != samples * bytes || segments > 15 {
        return Err(format!(
            "{segments} RLE segments, expected {} ({samples} samples of {bytes} bytes)",
            samples * bytes
        ));
    }
    let offsets: Vec<usize> = (0..segments)
        .map(|s| word(4 + 4 * s))
        .collect::<Result<_, _>>()?;
    let mut out = vec![0u8; pixels * samples * bytes];
    for (s, &start) in offsets.iter().enumerate() {
        let end = offsets.get(s + 1).copied().unwrap_or(fragment.len());
        let data = fragment
            .get(start..end.max(start))
            .ok_or_else(|| format!("RLE segment {s} starts past the fragment's end"))?;
        let plane = unpack(data, pixels)
            .ok_or_else(|| format!("RLE segment {s} holds fewer than {pixels} bytes"))?;
        // Segment s is byte (s % bytes) from the top of sample (s / bytes).
        let (sample, from_top) = (s / bytes, s % bytes);
        let byte = bytes - 1 - from_top;
        for (p, &v) in plane.iter().enumerate() {
            out[(p * samples + sample) * bytes + byte] = v;
        }
    }
    Ok(out)
}

/// PackBits: a header byte n >= 0 copies the next n + 1 bytes, -127..=-1 repeats the next
/// byte 1 - n times, -128 does nothing. `None` when the segment ends before `len` bytes.
fn unpack(data: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len && i < data.len() {
        let n = data[i] as i8;
        i += 1;
        if n >= 0 {
            let count = n as usize + 1;
            out.extend_from_slice(data.get(i..i + count)?);
            i += count;
        } else if n != -128 {
            let v = *data.get(i)?;
            out.extend(std::iter::repeat_n(v, (1 - n as isize) as usize));
            i += 1;
        }
    }
    (out.len() >= len).then(|| {
        out.truncate(len);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_runs_and_literals() {
        // 3 literals, a run of 4, a no-op, a literal.
        let data = [2, 1, 2, 3, (-3i8) as u8, 9, 128, 0, 7];
        assert_eq!(unpack(&data, 8).unwrap(), vec![1, 2, 3, 9, 9, 9, 9, 7]);
        assert!(unpack(&data, 9).is_none());
    }

    #[test]
    fn a_frame_of_32_bit_samples_is_reassembled_most_significant_byte_first() {
        // Two pixels, one 32-bit sample each: 0x01020304 and 0xA0B0C0D0.
        let mut fragment = vec![0u8; 64];
        fragment[0] = 4;
        let segments: [[u8; 2]; 4] = [[1, 0xA0], [2, 0xB0], [3, 0xC0], [4, 0xD0]];
        for (s, seg) in segments.iter().enumerate() {
            let at = fragment.len() as u32;
            fragment[4 + 4 * s..8 + 4 * s].copy_from_slice(&at.to_le_bytes());
            fragment.extend_from_slice(&[1, seg[0], seg[1]]);
        }
        let out = decode_frame(&fragment, 2, 1, 4).unwrap();
        assert_eq!(
            out,
            [0x01020304u32.to_le_bytes(), 0xA0B0C0D0u32.to_le_bytes()].concat()
        );
        assert!(decode_frame(&fragment, 2, 3, 4).is_err());
    }
}
