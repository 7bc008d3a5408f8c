//! Block headers, the node's Ed25519 key, and sealing entries into signed blocks.
//!
//! A header commits to its entries through the Merkle root and to the whole history through
//! `prevHash`; the node signs the header's hash, so one signature covers everything before.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::{hex_bytes, hex_list, to_hex};
use crate::entry::{canonical_bytes, Entry};
use crate::{merkle, Error, Hash, MAX_SAFE_INTEGER};

/// What the node signs comes after this prefix, so that a signature made with the node key
/// can never be mistaken for a signature over anything but a block of this format.
pub const SIGNATURE_CONTEXT: &[u8] = b"fhir-notary/block/1\0";

/// A block header. JSON names are camelCase; hashes and keys are lowercase hex; unknown
/// fields are rejected when parsing, since only what is hashed may be believed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockHeader {
    /// 0 for genesis, then +1 per block.
    pub height: u64,
    /// [`BlockHeader::hash`] of the previous block; 32 zero bytes for genesis.
    #[serde(with = "hex_bytes")]
    pub prev_hash: Hash,
    /// RFC 6962 root over the leaf hashes of the block's entries, in ledger order.
    #[serde(with = "hex_bytes")]
    pub merkle_root: Hash,
    /// Entries in the block.
    pub entry_count: u64,
    /// Ledger-wide index of the block's first entry: it covers `[firstIndex, firstIndex + entryCount)`.
    pub first_index: u64,
    /// FHIR instant the block was sealed.
    pub sealed_at: String,
    /// Ed25519 public key of the node that signed the block.
    #[serde(with = "hex_bytes")]
    pub signer: [u8; 32],
    /// Only in genesis: the public keys allowed to sign blocks. Omitted from the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_list")]
    pub members: Vec<[u8; 32]>,
}

impl BlockHeader {
    /// The header's canonical bytes: RFC 8785 of its JSON form.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_bytes(self)
    }

    /// The block hash: SHA-256([`BlockHeader::to_bytes`]). It covers every header field.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.to_bytes()).into()
    }

    /// The exact message Ed25519 signs: [`SIGNATURE_CONTEXT`] ‖ [`BlockHeader::hash`].
    pub fn signing_input(&self) -> Vec<u8> {
        let mut message = SIGNATURE_CONTEXT.to_vec();
        message.extend_from_slice(&self.hash());
        message
    }

    /// Checks that every integer is at most 2^53−1, where its canonical form is exact.
    pub fn check_ranges(&self) -> Result<(), Error> {
        for (field, value) in [
            ("block.height", self.height),
            ("block.entryCount", self.entry_count),
            ("block.firstIndex", self.first_index),
        ] {
            if value > MAX_SAFE_INTEGER {
                return Err(Error::IntegerOutOfRange {
                    field,
                    value: value.into(),
                });
            }
        }
        Ok(())
    }
}

/// The node's Ed25519 signing key. Its `Debug` shows only the public key, and the secret
/// is zeroed when dropped.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// The key for a 32-byte Ed25519 seed (RFC 8032 private key). The caller supplies the
    /// randomness, so this crate needs no RNG.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    /// The seed, for storing the key. Handle it as a secret.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Ed25519 signature over [`BlockHeader::signing_input`].
    pub fn sign(&self, header: &BlockHeader) -> [u8; 64] {
        self.0.sign(&header.signing_input()).to_bytes()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_key", &to_hex(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Checks an Ed25519 signature over [`BlockHeader::signing_input`], strictly (RFC 8032
/// verification that also rejects small-order keys and non-canonical signatures, so that a
/// signature has one valid encoding).
pub fn verify_signature(
    header: &BlockHeader,
    signature: &[u8; 64],
    public_key: &[u8; 32],
) -> Result<(), Error> {
    let key =
        VerifyingKey::from_bytes(public_key).map_err(|_| Error::InvalidPublicKey(*public_key))?;
    key.verify_strict(&header.signing_input(), &Signature::from_bytes(signature))
        .map_err(|_| Error::BadSignature {
            height: header.height,
            block_hash: header.hash(),
        })
}

/// The genesis block: height 0, zero `prevHash`, no entries (the empty tree's root), and the
/// permissioned signer set. `members` is sorted and deduplicated, and always contains the
/// genesis signer, so the set has one canonical form.
pub fn genesis(
    key: &NodeKey,
    mut members: Vec<[u8; 32]>,
    sealed_at: String,
) -> (BlockHeader, [u8; 64]) {
    members.push(key.public_key());
    members.sort_unstable();
    members.dedup();
    let header = BlockHeader {
        height: 0,
        prev_hash: [0; 32],
        merkle_root: merkle::empty_root(),
        entry_count: 0,
        first_index: 0,
        sealed_at,
        signer: key.public_key(),
        members,
    };
    let signature = key.sign(&header);
    (header, signature)
}

/// The block after `prev` holding `entries` (in ledger order), signed by `key`.
pub fn seal(
    key: &NodeKey,
    prev: &BlockHeader,
    entries: &[Entry],
    sealed_at: String,
) -> (BlockHeader, [u8; 64]) {
    let leaves: Vec<Hash> = entries.iter().map(Entry::leaf_hash).collect();
    seal_leaves(key, prev, &leaves, sealed_at)
}

/// [`seal`] for entries whose leaf hashes ([`Entry::leaf_hash`]) the caller has already
/// computed, in ledger order: a sealer that stores the leaves beside the block hashes each
/// entry once.
pub fn seal_leaves(
    key: &NodeKey,
    prev: &BlockHeader,
    leaves: &[Hash],
    sealed_at: String,
) -> (BlockHeader, [u8; 64]) {
    let header = BlockHeader {
        height: prev.height + 1,
        prev_hash: prev.hash(),
        merkle_root: merkle::root(leaves),
        entry_count: leaves.len() as u64,
        first_index: prev.first_index + prev.entry_count,
        sealed_at,
        signer: key.public_key(),
        members: Vec::new(),
    };
    let signature = key.sign(&header);
    (header, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::sample;

    fn key() -> NodeKey {
        NodeKey::from_seed([1; 32])
    }

    #[test]
    fn rfc8032_test_vector_1_public_key() {
        // RFC 8032 §7.1 TEST 1: the seed maps to this public key.
        let seed = crate::encoding::from_hex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap();
        assert_eq!(
            to_hex(&NodeKey::from_seed(seed).public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let k = key();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&to_hex(&k.seed())));
        assert!(shown.contains(&to_hex(&k.public_key())));
        assert_eq!(NodeKey::from_seed(k.seed()).public_key(), k.public_key());
    }

    #[test]
    fn genesis_and_seal_chain_and_verify() {
        let k = key();
        let (g, g_sig) = genesis(&k, vec![[9; 32], [9; 32]], "2026-11-23T13:00:00Z".into());
        assert_eq!(g.members.len(), 2, "deduplicated, signer added");
        assert!(g.members.contains(&k.public_key()));
        verify_signature(&g, &g_sig, &k.public_key()).unwrap();
        let entries = [sample(1), sample(2), sample(3)];
        let (b1, b1_sig) = seal(&k, &g, &entries, "2026-11-23T13:00:01Z".into());
        assert_eq!((b1.height, b1.first_index, b1.entry_count), (1, 0, 3));
        assert_eq!(b1.prev_hash, g.hash());
        verify_signature(&b1, &b1_sig, &k.public_key()).unwrap();
        let (b2, _) = seal(&k, &b1, &entries[..1], "2026-11-23T13:00:02Z".into());
        assert_eq!((b2.height, b2.first_index), (2, 3));
        let members_json = serde_json::to_value(&b1).unwrap();
        assert!(
            members_json.get("members").is_none(),
            "only genesis lists members"
        );
    }

    #[test]
    fn sealing_precomputed_leaves_is_sealing_the_entries() {
        let k = key();
        let (g, _) = genesis(&k, vec![], "2026-11-23T13:00:00Z".into());
        let entries = [sample(1), sample(2), sample(3)];
        let leaves: Vec<Hash> = entries.iter().map(Entry::leaf_hash).collect();
        let at = "2026-11-23T13:00:01Z";
        assert_eq!(
            seal_leaves(&k, &g, &leaves, at.into()),
            seal(&k, &g, &entries, at.into())
        );
    }

    #[test]
    fn any_header_change_breaks_the_signature() {
        let k = key();
        let (g, _) = genesis(&k, vec![], "2026-11-23T13:00:00Z".into());
        let (b, sig) = seal(&k, &g, &[sample(1)], "2026-11-23T13:00:01Z".into());
        let mut changed = b.clone();
        changed.sealed_at.push('0');
        assert!(matches!(
            verify_signature(&changed, &sig, &k.public_key()),
            Err(Error::BadSignature { .. })
        ));
        let mut changed = b.clone();
        changed.first_index += 1;
        assert!(verify_signature(&changed, &sig, &k.public_key()).is_err());
        let other = NodeKey::from_seed([2; 32]);
        assert!(verify_signature(&b, &sig, &other.public_key()).is_err());
    }
}
