//! `multipart/related` bodies (RFC 2387), as WADO-RS answers with and STOW-RS sends: parts
//! separated by `--boundary` lines, each with its own headers, the last followed by
//! `--boundary--`.

/// The `boundary` parameter of a Content-Type such as
/// `multipart/related; type="application/dicom"; boundary=abc`.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// The parts' bodies (headers dropped). An error when the body does not close with
/// `--boundary--`: a connection that ended mid-answer.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Vec<u8>>, String> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut at = find(body, d, 0).ok_or("no multipart boundary in the answer")?;
    let mut parts = Vec::new();
    loop {
        let after = at + d.len();
        if body[after..].starts_with(b"--") {
            return Ok(parts);
        }
        let headers_end = find(body, b"\r\n\r\n", after).ok_or_else(|| {
            format!(
                "the answer ends inside the headers of part {}: the transfer was cut short",
                parts.len() + 1
            )
        })?;
        let start = headers_end + 4;
        let next = find(body, &[b"\r\n", d].concat(), start).ok_or_else(|| {
            format!(
                "the answer ends inside part {} (no closing boundary): the transfer was cut short",
                parts.len() + 1
            )
        })?;
        parts.push(body[start..next].to_vec());
        at = next + 2;
    }
}

/// A `multipart/related; type="application/dicom"` body of `parts` and its Content-Type.
pub fn build(parts: &[Vec<u8>], boundary: &str) -> (Vec<u8>, String) {
    let mut body =
        Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 128 * parts.len());
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        body,
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let parts = vec![
            b"first\r\nwith a line".to_vec(),
            vec![0u8, 1, 2, b'-', b'-'],
            Vec::new(),
        ];
        let (body, ct) = build(&parts, "b0undary");
        assert_eq!(boundary(&ct).as_deref(), Some("b0undary"));
        assert_eq!(parse(&body, "b0undary").unwrap(), parts);
        let cut = &body[..body.len() - 20];
        assert!(parse(cut, "b0undary").unwrap_err().contains("cut short"));
        assert_eq!(
            boundary("multipart/related; type=\"application/dicom\"; boundary=\"x y\"").as_deref(),
            Some("x y")
        );
    }
}
