//! A compact FHIRPath evaluator for the subset the R4 search parameters use, over
//! `serde_json::Value`.
//!
//! # Why our own
//! The 1,375 R4 SearchParameter expressions (and their composite components) use a small
//! part of FHIRPath: paths with choice elements, `|`, `where(…)` with `=`/`!=` on strings and
//! `resolve() is T`, `ofType(T)`/`as T`/`is T`, `exists()`, `and`, an indexer (`entry[0]`) and
//! `%resource` (`search::tests` parses and types every one of them). The crates that cover
//! all of FHIRPath were tried (`/work/shared/DEPENDENCIES.md`): `tlq-fhirpath` needs a type
//! context built from the full `profiles-types.json` + `profiles-resources.json` (37 MB we do
//! not vendor; its default downloads them at run time), `octofhir-fhirpath` needs a model
//! provider and newer versions a newer rustc, and neither can resolve references, which is the
//! one non-trivial thing the search expressions ask for. This evaluator is ~1,000 lines with no
//! dependencies, uses the vendored compact model ([`crate::definitions`]) for element types,
//! and runs in microseconds per resource. Anything outside the subset is rejected by the
//! parser ([`ParseErrorKind::Unsupported`]), never evaluated wrongly.
//!
//! # Semantics worth knowing
//! - `resolve()` reads no other resource: it yields only the *type* of the target, from a
//!   `Type/id` reference, an absolute URL ending in `Type/id[/_history/v]`, or the contained
//!   resource of a `#id` reference, or a conditional `Type?…`. So
//!   `subject.where(resolve() is Patient)` keeps Patient references and drops `urn:uuid:`
//!   ones (which a transaction rewrites before storage).
//! - `x as T` on a collection filters like `ofType(T)` (that is what R4 expressions mean).
//! - A leading capital in a type name is ignored (`ofType(DateTime)` is `dateTime`), and
//!   profiles of Quantity (`Age`, `Duration`, …) and of string/uri/integer are subtypes.
//! - An upper-case identifier at the start of a path is a type test on the focus
//!   (`Patient.name`, `Resource.id`); element names are always lower case in FHIR.
//!
//! # Layout
//! - [`parser`]: text → [`Expr`], and [`Expr`]'s `Display` (normalised FHIRPath).
//! - [`eval`]: [`evaluate`] / [`evaluate_on`] over JSON, yielding typed [`Item`]s.
//! - [`types`]: [`result_types`], the static result types of an expression.

pub mod eval;
pub mod parser;
pub mod types;

pub use eval::{evaluate, evaluate_on, is_type, reference_type, resource_item, EvalError, Item};
pub use parser::{parse, BinOp, Expr, Function, Literal, ParseError, ParseErrorKind, TypeOp};
pub use types::{result_types, TypeError};
