//! Lowercase hex for hashes, keys and signatures in JSON, as serde helpers.
//!
//! Decoding is strict (exact length, lowercase only) so that each value has exactly one
//! textual form: a proof whose hex was altered in any character fails to parse or to verify.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

use crate::Error;

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Parses exactly `2 * N` lowercase hex characters.
pub fn from_hex<const N: usize>(text: &str) -> Result<[u8; N], Error> {
    let lowercase_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != 2 * N || !text.bytes().all(lowercase_hex) {
        return Err(Error::InvalidHex {
            expected_len: 2 * N,
            found: text.chars().take(80).collect(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| Error::InvalidHex {
        expected_len: 2 * N,
        found: text.chars().take(80).collect(),
    })?;
    Ok(out)
}

/// `#[serde(with = "ledger::encoding::hex_bytes")]` for `[u8; N]` fields.
pub mod hex_bytes {
    use super::*;

    /// Writes the bytes as a lowercase hex string.
    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(bytes))
    }

    /// Reads exactly `2 * N` lowercase hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        from_hex(&text).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "ledger::encoding::hex_list")]` for `Vec<[u8; 32]>` fields.
pub mod hex_list {
    use super::*;

    /// Writes an array of lowercase hex strings.
    pub fn serialize<S: Serializer>(list: &[[u8; 32]], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(|b| to_hex(b)))
    }

    /// Reads an array of 64-character lowercase hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u8; 32]>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|t| from_hex(t).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_spellings() {
        let bytes = [0x00, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "00abff");
        assert_eq!(from_hex::<3>("00abff").unwrap(), bytes);
        assert!(
            from_hex::<3>("00ABff").is_err(),
            "uppercase is a second spelling"
        );
        assert!(from_hex::<3>("00abf").is_err());
        assert!(from_hex::<3>("00abff00").is_err());
        assert!(from_hex::<3>("00abgg").is_err());
        assert!(from_hex::<3>("+0abff").is_err());
    }
}
