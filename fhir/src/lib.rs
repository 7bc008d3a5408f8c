//! The FHIR R4 domain of FHIR Notary, with no IO: the official definitions (vendored and
//! compacted), validation of resources against them, primitive types, `_summary`/`_elements`
//! projection and OperationOutcome.
//!
//! # Layout
//! - [`outcome`]: OperationOutcome and its issue codes.
#![warn(missing_docs)]

pub mod outcome;
