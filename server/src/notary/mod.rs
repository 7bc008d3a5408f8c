//! Notarization at the server's edge: the node's signing key on disk, the sealer that turns
//! committed ledger entries into signed blocks, the full audit of a database, and offline
//! proof verification. The hashing, Merkle trees and signatures are the `ledger` crate's.

pub mod audit;
pub mod key;
pub mod sealer;
pub mod verify;
