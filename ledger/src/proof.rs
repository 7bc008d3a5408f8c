//! The self-contained proof that one entry is in a signed block, and its offline check.
//!
//! A proof carries the entry itself, its position and audit path, the block header, the
//! signature and the signer's key; verifying it needs only those bytes and the key the
//! verifier trusts.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::block::{verify_signature, BlockHeader};
use crate::canonical::content_hash;
use crate::encoding::{hex_bytes, hex_list, to_hex};
use crate::entry::Entry;
use crate::{merkle, Error, Hash};

/// The `format` of proofs this crate writes and verifies.
pub const FORMAT: &str = "fhir-notary-proof/1";

/// A proof file. JSON names are camelCase, binary values lowercase hex; unknown fields are
/// rejected.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proof {
    /// Always [`FORMAT`].
    pub format: String,
    /// The entry being proven.
    pub entry: Entry,
    /// The entry's position inside the block (0-based).
    pub leaf_index: u64,
    /// RFC 6962 audit path from the entry's leaf to the block's Merkle root.
    #[serde(with = "hex_list")]
    pub audit_path: Vec<Hash>,
    /// The header of the block holding the entry.
    pub block: BlockHeader,
    /// Ed25519 signature over the block (see [`BlockHeader::signing_input`]).
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
    /// The signer's public key; must equal both `block.signer` and the trusted key.
    #[serde(with = "hex_bytes")]
    pub public_key: [u8; 32],
}

impl Proof {
    /// Parses a proof file.
    pub fn from_json(bytes: &[u8]) -> Result<Proof, Error> {
        serde_json::from_slice(bytes).map_err(Error::MalformedProof)
    }
}

/// The proof for the entry at `leaf_index` of a block whose leaf hashes are `block_leaves`.
///
/// # Panics
/// If `leaf_index` is outside `block_leaves`.
pub fn build(
    entry: Entry,
    leaf_index: usize,
    block_leaves: &[Hash],
    block: BlockHeader,
    signature: [u8; 64],
    public_key: [u8; 32],
) -> Proof {
    debug_assert_eq!(
        block_leaves[leaf_index],
        entry.leaf_hash(),
        "entry is not that leaf"
    );
    Proof {
        format: FORMAT.to_owned(),
        audit_path: merkle::audit_path(block_leaves, leaf_index),
        entry,
        leaf_index: leaf_index as u64,
        block,
        signature,
        public_key,
    }
}

/// What a verified proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The entry, now known to be in the block.
    pub entry: Entry,
    /// The leaf hash of the entry.
    pub leaf_hash: Hash,
    /// Height of the block holding it.
    pub block_height: u64,
    /// Hash of that block's header.
    pub block_hash: Hash,
    /// The entry's ledger-wide index: `block.firstIndex + leafIndex`.
    pub ledger_index: u64,
    /// When the block was sealed.
    pub sealed_at: String,
    /// The key that signed the block (the trusted key).
    pub signer: [u8; 32],
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.entry;
        write!(
            f,
            "{}/{}/_history/{} ({:?} by {} at {}, content hash {}) is ledger entry {} in block {} \
             (hash {}, sealed {}), signed by {}",
            e.resource_type,
            e.id,
            e.version,
            e.operation,
            e.actor,
            e.recorded_at,
            to_hex(&e.content_hash),
            self.ledger_index,
            self.block_height,
            to_hex(&self.block_hash),
            self.sealed_at,
            to_hex(&self.signer)
        )
    }
}

/// Verifies `proof` against the one key the verifier trusts. In order: the format; the
/// proof's key is `trusted_key` and is the header's signer; the signature over the header;
/// integers in their exact range; the leaf hash of the entry; `leafIndex < entryCount`; the
/// audit path leads from the leaf to `merkleRoot`. The first failure is returned.
pub fn verify(proof: &Proof, trusted_key: &[u8; 32]) -> Result<Verified, Error> {
    if proof.format != FORMAT {
        return Err(Error::UnsupportedFormat {
            expected: FORMAT,
            found: proof.format.clone(),
        });
    }
    if proof.public_key != *trusted_key {
        return Err(Error::UntrustedKey {
            trusted: *trusted_key,
            found: proof.public_key,
        });
    }
    let block = &proof.block;
    if block.signer != proof.public_key {
        return Err(Error::SignerMismatch {
            height: block.height,
            signer: block.signer,
            key: proof.public_key,
        });
    }
    verify_signature(block, &proof.signature, &proof.public_key)?;
    block.check_ranges()?;
    proof.entry.check_ranges()?;
    let leaf = proof.entry.leaf_hash();
    if proof.leaf_index >= block.entry_count {
        return Err(Error::LeafIndexOutOfRange {
            leaf_index: proof.leaf_index,
            entry_count: block.entry_count,
        });
    }
    // Both are below 2^53 here, so they fit usize on 64-bit targets; on smaller targets a
    // block that large could not have been built anyway.
    let (index, count) = match (
        usize::try_from(proof.leaf_index),
        usize::try_from(block.entry_count),
    ) {
        (Ok(i), Ok(c)) => (i, c),
        _ => {
            return Err(Error::IntegerOutOfRange {
                field: "block.entryCount",
                value: block.entry_count.into(),
            })
        }
    };
    let computed = merkle::root_from_path(&leaf, index, count, &proof.audit_path).ok_or(
        Error::AuditPathShape {
            leaf_index: proof.leaf_index,
            leaf_count: block.entry_count,
            path_len: proof.audit_path.len(),
        },
    )?;
    if computed != block.merkle_root {
        return Err(Error::MerkleRootMismatch {
            height: block.height,
            computed,
            expected: block.merkle_root,
        });
    }
    Ok(Verified {
        entry: proof.entry.clone(),
        leaf_hash: leaf,
        block_height: block.height,
        block_hash: block.hash(),
        ledger_index: block.first_index + proof.leaf_index,
        sealed_at: block.sealed_at.clone(),
        signer: proof.public_key,
    })
}

/// Checks that `resource` (the version as served, meta included) hashes to the proof's
/// entry. For a delete, pass [`crate::canonical::tombstone`] of the entry.
pub fn verify_content(proof: &Proof, resource: &Value) -> Result<(), Error> {
    let computed = content_hash(resource)?;
    let e = &proof.entry;
    if computed != e.content_hash {
        return Err(Error::ContentHashMismatch {
            resource_type: e.resource_type.clone(),
            id: e.id.clone(),
            version: e.version,
            computed,
            expected: e.content_hash,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{genesis, seal, NodeKey};
    use crate::entry::tests::sample;

    fn fixture(index: usize) -> (Proof, [u8; 32]) {
        let key = NodeKey::from_seed([1; 32]);
        let (g, _) = genesis(&key, vec![], "2026-11-23T13:00:00Z".into());
        let entries: Vec<Entry> = (1..=5).map(sample).collect();
        let leaves: Vec<Hash> = entries.iter().map(Entry::leaf_hash).collect();
        let (b, sig) = seal(&key, &g, &entries, "2026-11-23T13:00:01Z".into());
        let proof = build(
            entries[index].clone(),
            index,
            &leaves,
            b,
            sig,
            key.public_key(),
        );
        (proof, key.public_key())
    }

    #[test]
    fn every_leaf_of_a_block_verifies() {
        for i in 0..5 {
            let (proof, key) = fixture(i);
            let v = verify(&proof, &key).unwrap();
            assert_eq!((v.block_height, v.ledger_index), (1, i as u64));
            assert!(v
                .to_string()
                .contains(&format!("is ledger entry {i} in block 1")));
        }
    }

    #[test]
    fn each_broken_part_is_named() {
        let (good, key) = fixture(2);
        let mut p = good.clone();
        p.format = "fhir-notary-proof/2".into();
        assert!(matches!(
            verify(&p, &key),
            Err(Error::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            verify(&good, &[3; 32]),
            Err(Error::UntrustedKey { .. })
        ));
        let mut p = good.clone();
        p.signature[0] ^= 1;
        assert!(matches!(verify(&p, &key), Err(Error::BadSignature { .. })));
        let mut p = good.clone();
        p.entry.actor = "mallory".into();
        assert!(matches!(
            verify(&p, &key),
            Err(Error::MerkleRootMismatch { .. })
        ));
        let mut p = good.clone();
        p.leaf_index = 3;
        assert!(matches!(
            verify(&p, &key),
            Err(Error::MerkleRootMismatch { .. })
        ));
        let mut p = good.clone();
        p.leaf_index = 5;
        assert!(matches!(
            verify(&p, &key),
            Err(Error::LeafIndexOutOfRange { .. })
        ));
        let mut p = good.clone();
        p.audit_path.pop();
        assert!(matches!(
            verify(&p, &key),
            Err(Error::AuditPathShape { .. })
        ));
    }

    #[test]
    fn flipping_any_bit_of_the_compact_file_fails() {
        let (good, key) = fixture(2);
        let text = serde_json::to_vec(&good).unwrap();
        assert_eq!(Proof::from_json(&text).unwrap(), good);
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut bad = text.clone();
                bad[i] ^= 1 << bit;
                if let Ok(p) = Proof::from_json(&bad) {
                    assert!(
                        verify(&p, &key).is_err(),
                        "byte {i} bit {bit} still verifies"
                    );
                }
            }
        }
    }

    #[test]
    fn content_matches_or_is_named() {
        let (mut proof, _) = fixture(0);
        let resource: Value =
            serde_json::from_str(r#"{"resourceType":"Patient","id":"p1"}"#).unwrap();
        proof.entry.content_hash = content_hash(&resource).unwrap();
        verify_content(&proof, &resource).unwrap();
        let other: Value = serde_json::from_str(r#"{"resourceType":"Patient","id":"p2"}"#).unwrap();
        assert!(matches!(
            verify_content(&proof, &other),
            Err(Error::ContentHashMismatch { .. })
        ));
    }
}
