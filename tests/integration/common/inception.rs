//! The deterministic, untrained FID Inception weights of tests/python/make_inception_golden.py
//! (every key of pytorch-fid's layout, values from an index hash), for tests that need a
//! weights file.

use serde_json::Value;

fn h(name: &str) -> u64 {
    name.bytes().map(u64::from).sum::<u64>() * 31 % 997
}

/// The weights of make_inception_golden.py: a murmur3-finalized index hash in [-1, 1).
fn uniform(n: usize, seed: u64) -> Vec<f64> {
    (0..n as u64)
        .map(|k| {
            let mut x = (k.wrapping_mul(2_654_435_761) + seed * 40503) & 0xFFFF_FFFF;
            x ^= x >> 16;
            x = (x * 0x85EB_CA6B) & 0xFFFF_FFFF;
            x ^= x >> 13;
            x = (x * 0xC2B2_AE35) & 0xFFFF_FFFF;
            x ^= x >> 16;
            x as f64 / 4_294_967_296.0 * 2.0 - 1.0
        })
        .collect()
}

pub fn values(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product::<usize>().max(1);
    let v = uniform(n, h(name));
    let fan_in: usize = shape.iter().skip(1).product();
    v.iter()
        .map(|&v| {
            (if name.starts_with("fc.") {
                0.01 * v
            } else if name.ends_with("conv.weight") {
                v * (6.0 / fan_in as f64).sqrt()
            } else if name.ends_with("bn.weight") {
                1.0 + 0.1 * v
            } else if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") {
                0.05 * v
            } else if name.ends_with("bn.running_var") {
                1.0 + 0.2 * v.abs()
            } else {
                panic!("{name}")
            }) as f32
        })
        .collect()
}

/// A safetensors file (little-endian f32) of the named tensors.
pub fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, v) in tensors {
        let start = data.len();
        data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The FID layout's tensors with their deterministic values, from the golden file's key list.
pub fn tensors(golden: &Value) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    golden["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let name = k[0].as_str().unwrap().to_owned();
            let shape: Vec<usize> = k[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name, shape)
        })
        .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
        .map(|(name, shape)| {
            let v = values(&name, &shape);
            (name, shape, v)
        })
        .collect()
}

/// Writes the weights as a safetensors file medsynth's `evaluate.fid_weights` reads.
pub fn write_weights(path: &std::path::Path) {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(super::repo().join("fixtures/golden/inception.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(path, safetensors(&tensors(&golden))).unwrap();
}
