//! Pseudonyms: subject ids and UIDs derived from identifying values by a keyed hash
//! (HMAC-SHA-256, RFC 2104), so the same patient gets the same pseudonym in every run under
//! one key and nobody without the key can go back or test a guess. The key itself is never
//! written into a run.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The environment variable holding the key when no key file is given.
pub const KEY_VARIABLE: &str = "MEDSYNTH_PSEUDONYM_KEY";

/// HMAC-SHA-256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Keyed pseudonyms for subjects and UIDs.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { key: <redacted> }")
    }
}

impl Pseudonymizer {
    /// The key from `file` (its bytes, surrounding whitespace trimmed), else from
    /// [`KEY_VARIABLE`]; an error says which was tried. A key shorter than 16 bytes is refused.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let key = match file {
            Some(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read the pseudonym key file {}: {e}", path.display()))?,
            None => std::env::var(KEY_VARIABLE)
                .map_err(|_| {
                    format!(
                        "subjects named from DICOM headers need a pseudonymization key: set input.pseudonym_key_file or the environment variable {KEY_VARIABLE}"
                    )
                })?
                .into_bytes(),
        };
        let key = key.trim_ascii().to_vec();
        if key.len() < 16 {
            return Err(format!(
                "the pseudonymization key has {} bytes, expected at least 16",
                key.len()
            ));
        }
        Ok(Self { key })
    }

    fn mac(&self, role: &str, value: &str) -> [u8; 32] {
        hmac_sha256(&self.key, format!("medsynth-{role}\0{value}").as_bytes())
    }

    /// The subject id for an identifying value: `sub-` and 16 hex digits (64 bits).
    pub fn subject(&self, value: &str) -> String {
        let mac = self.mac("subject", value);
        format!("sub-{}", crate::volume::hex(&mac[..8]))
    }

    /// A UID standing for `uid` (ITU-T X.667 form, `2.25.` and a 127-bit number): the same
    /// source UID always maps to the same one, so mapped series keep their study and frame
    /// of reference together.
    pub fn uid(&self, uid: &str) -> String {
        let mac = self.mac("uid", uid);
        let n = u128::from_be_bytes(mac[..16].try_into().unwrap_or([0; 16]));
        format!("2.25.{}", n >> 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe".
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::volume::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            crate::volume::hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = Pseudonymizer {
            key: b"0123456789abcdef".to_vec(),
        };
        let b = Pseudonymizer {
            key: b"0123456789abcdeg".to_vec(),
        };
        assert_eq!(a.subject("PAT-1"), a.subject("PAT-1"));
        assert_ne!(a.subject("PAT-1"), a.subject("PAT-2"));
        assert_ne!(a.subject("PAT-1"), b.subject("PAT-1"));
        assert!(a.subject("PAT-1").starts_with("sub-") && a.subject("PAT-1").len() == 20);
        let uid = a.uid("1.2.3");
        assert!(uid.starts_with("2.25.") && uid.len() <= 64, "{uid}");
        assert!(!format!("{a:?}").contains("0123"));
    }
}
