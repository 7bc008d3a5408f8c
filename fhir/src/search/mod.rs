//! Search indexing, pure: the R4 search parameters per resource type and the typed index
//! values of a resource, which the server stores in the same transaction as each write.
//!
//! ```
//! let registry = fhir::search::r4_search();
//! let patient = serde_json::json!({"resourceType": "Patient", "name": [{"family": "Núñez"}]});
//! let entries = fhir::search::extract(registry, &patient).unwrap();
//! let family = entries.iter().find(|e| e.param == "family").unwrap();
//! assert!(matches!(&family.value, fhir::search::IndexValue::String(s) if s.normalized == "nunez"));
//! ```
//!
//! # Coverage (R4 4.0.1)
//! Of the 1,378 SearchParameter definitions, **1,373 are indexed** on every resource type
//! they apply to. By type (indexed/total definitions): string 131/133, token 537/539,
//! reference 472/472, date 109/109, number 6/6, quantity 27/27, uri 45/45, composite 46/46,
//! special 0/1. Not indexed: `_text`, `_content`, `_query` (no expression in R4),
//! `DeviceDefinition-classification` (its expression names an element R4 does not have) and
//! `Location-near` (special). Per resource type, 2,574 of 3,011 (type, parameter) pairs are
//! indexed; the rest are those five. Five parameters are indexed with some value types giving
//! nothing ([`SearchParam::ignored_types`]): free-text `string` (`CarePlan.activity-date`,
//! `Immunization.date`, `Procedure.date`), `Age`/`Range` for `Procedure.date`, `Attachment`
//! for `Consent.source-reference`, and `Quantity`/`Range`/`Reference` values of
//! `Group.characteristic-value`. [`coverage`] computes the numbers; the test
//! `search::tests::coverage_report` prints them, per resource type, with the reasons.
//!
//! # Derived parameters
//! 48 reference parameters say no more than other reference parameters of their type
//! restricted to one target type (`Observation.patient` is `Observation.subject` where it
//! points to a Patient; `AuditEvent.patient` is `agent` or `entity` where they do). The
//! registry marks them ([`SearchParam::derived`]) so that a store can answer them from
//! the sources' values instead of storing each such reference twice; [`extract()`] still
//! gives their values.
//!
//! # Speed
//! Over the Synthea fixture (release build, one core of the 2-core dev machine): 15.7 µs per
//! resource on average (Observation 17 µs, Patient 8 µs, Encounter 7 µs), ~64,000
//! resources/s; building the registry takes ~45 ms once per process. Measured by
//! `cargo test -p notary-fhir --release --test search_extract -- --ignored --nocapture`.
//!
//! # Value semantics
//! - string: HumanName and Address expand to their parts; values are kept as written and
//!   [`normalize`]d (lower case, accents folded via Unicode NFD).
//! - token: `(system, code)` per Coding / Identifier, the value for ContactPoint and
//!   primitives (`true`/`false` for booleans), normalised display/text for `:text`, identifier
//!   type codings for `:of-type`. Codes get no implicit system from their binding.
//! - reference: type, id, version, URL and identifier; `#id` references are marked
//!   `contained`; canonicals split at `|` into URL and version.
//! - date: the half-open range its precision denotes ([`crate::primitives::parse_date_time_range`],
//!   zone-less values as UTC), Periods with open ends, Timing events and bounds.
//! - number, quantity: the literal as written plus `f64`; a Range gives its two bounds
//!   (quantities with comparators `>=`/`<=`); SampledData gives nothing.
//! - composite: every combination of the components' values, per item of the base
//!   expression (`Observation | Observation.component`).
//!
//! # Layout
//! - [`registry`]: [`SearchRegistry`], [`SearchParam`] and [`r4_search`].
//! - [`extract`](mod@extract): [`extract()`] and the value types.
//! - [`text`](mod@text): [`normalize`], the normal form of text.

pub mod extract;
pub mod registry;
pub mod request;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

pub use extract::{
    extract, extract_param, indexable, literal_reference, DateRange, Decimal, ExtractError,
    ExtractErrorKind, IndexEntry, IndexValue, QuantityValue, ReferenceValue, StringValue,
    TokenValue,
};
pub use registry::{
    r4_search, Component, Derived, ParamType, RegistryError, SearchParam, SearchRegistry,
};
pub use request::{
    parse_search, Criterion, DateSearch, Include, Match, Modifier, NumberSearch, Param, Prefix,
    QuantitySearch, ReferenceSearch, SearchError, SearchErrorKind, SearchRequest, SearchValue,
    SortKey, Summary, SystemFilter, TokenSearch, TotalMode,
};
pub use text::normalize;

/// Supported of total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// How many are indexed.
    pub supported: usize,
    /// How many there are.
    pub total: usize,
}

impl Count {
    fn add(&mut self, supported: bool) {
        self.total += 1;
        self.supported += usize::from(supported);
    }
}

/// How much of a registry is indexed.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// SearchParameter definitions (by URL) indexed on every type they apply to.
    pub definitions: Count,
    /// Definitions by parameter type.
    pub by_param_type: BTreeMap<ParamType, Count>,
    /// (type, parameter) pairs by resource type.
    pub by_resource: BTreeMap<String, Count>,
    /// All (type, parameter) pairs.
    pub pairs: Count,
    /// The pairs not indexed: (resource type, code, reason).
    pub unsupported: Vec<(String, String, String)>,
}

/// The coverage of the R4 search parameters.
pub fn coverage() -> Coverage {
    coverage_of(r4_search())
}

/// The coverage of a registry.
pub fn coverage_of(registry: &SearchRegistry) -> Coverage {
    let mut c = Coverage::default();
    let mut defs: BTreeMap<&str, (ParamType, bool)> = BTreeMap::new();
    let types: BTreeSet<&str> = registry.resource_types().collect();
    for ty in types {
        let count = c.by_resource.entry(ty.to_owned()).or_default();
        for p in registry.params_for(ty) {
            count.add(p.is_indexed());
            c.pairs.add(p.is_indexed());
            let d = defs.entry(p.url.as_str()).or_insert((p.kind, true));
            d.1 &= p.is_indexed();
            if let Some(why) = &p.unsupported {
                c.unsupported
                    .push((ty.to_owned(), p.code.clone(), why.clone()));
            }
        }
    }
    for (kind, ok) in defs.values() {
        c.definitions.add(*ok);
        c.by_param_type.entry(*kind).or_default().add(*ok);
    }
    c
}

#[cfg(test)]
mod tests;
