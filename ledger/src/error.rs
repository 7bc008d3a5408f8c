//! The ledger's one error type: every failure names what was checked and what was found.

use crate::encoding::to_hex;

/// What went wrong while canonicalizing, verifying or auditing.
///
/// Hashes and keys in the messages are lowercase hex, as in the JSON formats, so a message
/// can be matched against a proof file by eye.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSON number that is not finite as an IEEE double (e.g. `1e400`): RFC 8785 has no form for it.
    #[error("number {literal} has no canonical form: it is not a finite IEEE double")]
    NonFiniteNumber {
        /// The number as written.
        literal: String,
    },
    /// A hex string that is not exactly the expected number of lowercase hex digits.
    #[error("expected {expected_len} lowercase hex characters, found {found:?}")]
    InvalidHex {
        /// How many hex characters were expected.
        expected_len: usize,
        /// The offending text (cut to 80 characters).
        found: String,
    },
    /// A proof file that is not valid JSON of the proof format.
    #[error("malformed proof: {0}")]
    MalformedProof(#[source] serde_json::Error),
    /// A proof whose `format` is not one this crate verifies.
    #[error("unsupported proof format {found:?}, expected {expected:?}")]
    UnsupportedFormat {
        /// The format this crate verifies.
        expected: &'static str,
        /// The format the proof names.
        found: String,
    },
    /// The proof is signed by a key other than the one the verifier trusts.
    #[error("proof is signed by {}, not by the trusted key {}", to_hex(.found), to_hex(.trusted))]
    UntrustedKey {
        /// The key the verifier trusts.
        trusted: [u8; 32],
        /// The key the proof carries.
        found: [u8; 32],
    },
    /// The block header names a signer other than the key that signed it.
    #[error("block {height} names signer {}, but the proof's key is {}", to_hex(.signer), to_hex(.key))]
    SignerMismatch {
        /// Height of the block.
        height: u64,
        /// The header's `signer`.
        signer: [u8; 32],
        /// The key the signature was checked with.
        key: [u8; 32],
    },
    /// 32 bytes that are not a valid Ed25519 public key.
    #[error("{} is not a valid Ed25519 public key", to_hex(.0))]
    InvalidPublicKey([u8; 32]),
    /// The Ed25519 signature does not verify over the block header.
    #[error("the signature over block {height} (hash {}) does not verify", to_hex(.block_hash))]
    BadSignature {
        /// Height of the block.
        height: u64,
        /// Hash of the header as received.
        block_hash: [u8; 32],
    },
    /// An integer in hashed JSON outside 0..=2^53−1 (or a version below 1).
    #[error("{field} = {value} is outside the range the canonical form represents exactly")]
    IntegerOutOfRange {
        /// The field, e.g. `entry.version` or `block.height`.
        field: &'static str,
        /// Its value.
        value: i128,
    },
    /// The leaf index is not inside the block.
    #[error("leaf index {leaf_index} is outside the block's {entry_count} entries")]
    LeafIndexOutOfRange {
        /// The proof's leaf index.
        leaf_index: u64,
        /// The block's entry count.
        entry_count: u64,
    },
    /// The audit path has the wrong length for the leaf's position in the tree.
    #[error("audit path of {path_len} hashes does not fit leaf {leaf_index} of a {leaf_count}-leaf tree")]
    AuditPathShape {
        /// The proof's leaf index.
        leaf_index: u64,
        /// Leaves in the tree.
        leaf_count: u64,
        /// Hashes in the path.
        path_len: usize,
    },
    /// A Merkle root recomputed from leaves or an audit path differs from the header's.
    #[error("block {height}: computed Merkle root {} but the header says {}", to_hex(.computed), to_hex(.expected))]
    MerkleRootMismatch {
        /// Height of the block.
        height: u64,
        /// The recomputed root.
        computed: [u8; 32],
        /// The header's `merkleRoot`.
        expected: [u8; 32],
    },
    /// A resource's canonical hash differs from the entry's content hash.
    #[error("{resource_type}/{id}/_history/{version}: content hash is {}, the entry says {}", to_hex(.computed), to_hex(.expected))]
    ContentHashMismatch {
        /// Resource type of the entry.
        resource_type: String,
        /// Logical id of the entry.
        id: String,
        /// Version of the entry.
        version: i64,
        /// Hash of the resource as given.
        computed: [u8; 32],
        /// The entry's `contentHash`.
        expected: [u8; 32],
    },
    /// A block's height does not follow its predecessor's.
    #[error("block after height {prev_height} has height {found}")]
    ChainHeight {
        /// Height of the previous block.
        prev_height: u64,
        /// Height found in the next block.
        found: u64,
    },
    /// A block's `prevHash` is not the hash of the block before it.
    #[error("block {height}: prevHash is {}, but the previous block hashes to {}", to_hex(.found), to_hex(.expected))]
    ChainPrevHash {
        /// Height of the block.
        height: u64,
        /// The hash of the previous header.
        expected: [u8; 32],
        /// The block's `prevHash`.
        found: [u8; 32],
    },
    /// A block's entry range does not start where the previous block's ended.
    #[error("block {height}: firstIndex is {found}, expected {expected} (entries missing or sealed twice)")]
    ChainIndex {
        /// Height of the block.
        height: u64,
        /// The previous block's `firstIndex + entryCount`.
        expected: u64,
        /// The block's `firstIndex`.
        found: u64,
    },
    /// A block's entry count differs from the number of leaves stored for it.
    #[error("block {height}: header counts {expected} entries, found {found}")]
    EntryCount {
        /// Height of the block.
        height: u64,
        /// The header's `entryCount`.
        expected: u64,
        /// Leaves found.
        found: u64,
    },
    /// A header that does not have the genesis block's fixed shape.
    #[error("not a valid genesis block: {reason}")]
    InvalidGenesis {
        /// Which property fails.
        reason: &'static str,
    },
    /// A block signed by a key outside the genesis block's member set.
    #[error("block {height} is signed by {}, which is not a genesis member", to_hex(.signer))]
    SignerNotMember {
        /// Height of the block.
        height: u64,
        /// The block's signer.
        signer: [u8; 32],
    },
}
