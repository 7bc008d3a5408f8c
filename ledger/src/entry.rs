//! A ledger entry: the record of one write, and the leaf it becomes in a block's tree.

use serde::{Deserialize, Serialize};

use crate::{
    canonical::canonical_json, encoding::hex_bytes, merkle, Error, Hash, MAX_SAFE_INTEGER,
};

/// The kind of write an entry records. JSON: `"create"`, `"update"`, `"patch"`, `"delete"`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A new resource (version 1, or a create-as-update).
    Create,
    /// A new version from PUT.
    Update,
    /// A new version from PATCH.
    Patch,
    /// A deleted version; its content hash is [`crate::canonical::tombstone_hash`].
    Delete,
}

/// The record of one write. Its JSON form (camelCase names, `contentHash` in hex) is what
/// [`Entry::to_bytes`] canonicalizes; unknown fields are rejected when parsing so that
/// nothing in a proof goes unhashed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// FHIR resource type, e.g. `Patient`.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version (`meta.versionId` as an integer), 1 for the first.
    pub version: i64,
    /// What the write did.
    pub operation: Operation,
    /// SHA-256 of the RFC 8785 form of the version as served, or the tombstone hash.
    #[serde(with = "hex_bytes")]
    pub content_hash: Hash,
    /// Who wrote it: `anonymous`, or the token's subject / `Practitioner/123`.
    pub actor: String,
    /// FHIR instant of the write, equal to `meta.lastUpdated`.
    pub recorded_at: String,
    /// The request id the server logged for the write.
    pub request_id: String,
}

impl Entry {
    /// The entry's canonical bytes: RFC 8785 of its JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_bytes(self)
    }

    /// The Merkle leaf hash: SHA-256(0x00 ‖ [`Entry::to_bytes`]).
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.to_bytes())
    }

    /// Checks that `version` is in 1..=2^53−1, where its canonical form is exact.
    pub fn check_ranges(&self) -> Result<(), Error> {
        if self.version < 1 || self.version as u64 > MAX_SAFE_INTEGER {
            return Err(Error::IntegerOutOfRange {
                field: "entry.version",
                value: self.version.into(),
            });
        }
        Ok(())
    }
}

/// RFC 8785 bytes of a serializable ledger type (entry or header).
pub(crate) fn canonical_bytes<T: Serialize>(item: &T) -> Vec<u8> {
    // Ledger types have string keys and integer numbers only: conversion and
    // canonicalization cannot fail (every i64/u64 is a finite double).
    let value = serde_json::to_value(item).expect("ledger types convert to JSON");
    canonical_json(&value)
        .expect("ledger types hold only finite numbers")
        .into_bytes()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(version: i64) -> Entry {
        Entry {
            resource_type: "Patient".into(),
            id: "p1".into(),
            version,
            operation: Operation::Update,
            content_hash: [7; 32],
            actor: "anonymous".into(),
            recorded_at: "2026-11-23T13:40:00.123Z".into(),
            request_id: "req-1".into(),
        }
    }

    #[test]
    fn bytes_are_sorted_camel_case_json() {
        let bytes = String::from_utf8(sample(2).to_bytes()).unwrap();
        assert_eq!(
            bytes,
            format!(
                r#"{{"actor":"anonymous","contentHash":"{}","id":"p1","operation":"update","recordedAt":"2026-11-23T13:40:00.123Z","requestId":"req-1","resourceType":"Patient","version":2}}"#,
                "07".repeat(32)
            )
        );
        let mut prefixed = vec![0u8];
        prefixed.extend(bytes.as_bytes());
        assert_eq!(
            sample(2).leaf_hash(),
            <[u8; 32]>::from(sha2::Sha256::digest(&prefixed))
        );
    }

    #[test]
    fn round_trips_through_json_and_rejects_unknown_fields() {
        let json = serde_json::to_string(&sample(3)).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), sample(3));
        let extra = json.replacen('{', r#"{"note":"x","#, 1);
        assert!(serde_json::from_str::<Entry>(&extra).is_err());
    }

    #[test]
    fn versions_outside_the_exact_range_are_rejected() {
        assert!(sample(1).check_ranges().is_ok());
        assert!(sample(0).check_ranges().is_err());
        assert!(sample(1 << 53).check_ranges().is_err());
    }

    use sha2::Digest;
}
