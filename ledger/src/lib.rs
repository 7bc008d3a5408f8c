//! FHIR Notary's ledger core: canonical hashing, Merkle blocks, signatures, proofs and
//! their verification, with no IO so that a verifier needs nothing but bytes and a key.
#![warn(missing_docs)]
