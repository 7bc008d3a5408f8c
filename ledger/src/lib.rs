//! FHIR Notary's ledger core: canonical hashing, Merkle blocks, signatures, proofs and
//! their verification, with no IO so that a verifier needs nothing but bytes and a key.
//!
//! # Layout
//! - [`canonical`]: RFC 8785 canonical JSON and the content hash of a resource version.
//! - [`entry`]: one ledger entry per write and its leaf hash.
//! - [`merkle`]: RFC 6962 Merkle trees (root, audit path, verification).
//! - [`block`]: block headers, the node key, signing and sealing.
//! - [`proof`]: the self-contained proof file and its offline verification.
//! - [`audit`]: pure checks the server's full audit runs over stored blocks.
//! - [`encoding`]: the lowercase-hex encoding every hash, key and signature uses in JSON.
//!
//! `docs/ledger.md` in the repository specifies every byte these modules produce.
#![warn(missing_docs)]

pub mod audit;
pub mod block;
pub mod canonical;
pub mod encoding;
pub mod entry;
mod error;
pub mod merkle;
pub mod proof;

pub use error::Error;

/// A SHA-256 digest. Encoded as 64 lowercase hex characters in all JSON.
pub type Hash = [u8; 32];

/// Integers in hashed JSON are canonicalized as IEEE doubles (RFC 8785), so only integers up
/// to 2^53 − 1 have a canonical form that is one-to-one; verification rejects larger ones so
/// that two different headers can never share signed bytes.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
