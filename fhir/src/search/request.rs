//! Search requests: the query parameters of a FHIR search, parsed and validated against the
//! search parameter registry into a [`SearchRequest`] before any SQL is built
//! (https://hl7.org/fhir/R4/search.html).
//!
//! ```
//! use fhir::search::{parse_search, r4_search, Criterion, SearchValue, TokenSearch, SystemFilter};
//! let params = [("code".to_owned(), "http://loinc.org|8480-6".to_owned())];
//! let req = parse_search(r4_search(), Some("Observation"), &params, true).unwrap();
//! let Criterion::Match(m) = &req.criteria[0] else { panic!() };
//! assert_eq!(
//!     m.values,
//!     [SearchValue::Token(TokenSearch::Code {
//!         system: SystemFilter::Is("http://loinc.org".into()),
//!         code: Some("8480-6".into()),
//!     })]
//! );
//! ```
//!
//! # What the AST means
//! - [`SearchRequest::criteria`] are AND-ed (one per repeated parameter); the
//!   [`Match::values`] of one criterion are OR-ed (the comma-separated values).
//! - Values are already in the form the index holds ([`crate::search::extract`]): strings
//!   [`normalize`]d (except for `:exact`), `:text` normalized, dates as half-open ranges,
//!   numbers with their implicit precision range.
//! - [`Criterion::Chain`] and [`Criterion::Has`] nest: `subject:Patient.organization.name=x`
//!   is a chain whose criterion is a chain whose criterion is a match.
//!
//! # Strict and lenient handling
//! With `Prefer: handling=strict`, an unknown parameter or an unsupported modifier is a
//! [`SearchError`]. In lenient mode (the default) they go to [`SearchRequest::ignored`] and
//! are left out of [`SearchRequest::applied`]. In both modes a value that does not parse for
//! a known parameter is an error: ignoring it would widen the results. Parameters with an
//! empty value (`name=`) are ignored in both modes, as most servers do.
//!
//! # Gaps
//! Token `:above`, `:below`, `:in` and `:not-in` need terminology, and reference `:above` /
//! `:below` need hierarchies: they are unsupported modifiers. `_text`, `_content`, `_query`,
//! `_filter`, `_list`, `_contained` and `near` are unknown parameters.

mod value;

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::extract::Decimal;
use super::registry::{ParamType, SearchParam, SearchRegistry};
use crate::outcome::IssueType;
use crate::summary::SummaryMode;

/// The largest page size: a larger `_count` is lowered to this.
pub const MAX_COUNT: u32 = 1000;

/// A validated search: what to match, what to add, how to sort and page.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SearchRequest {
    /// The types searched: the one of a type-level search, else the `_type` list. Empty for a
    /// system search without `_type`: every type.
    pub resource_types: Vec<String>,
    /// Conditions every match meets (AND).
    pub criteria: Vec<Criterion>,
    /// `_include`s, in the order given.
    pub includes: Vec<Include>,
    /// `_revinclude`s, in the order given.
    pub revincludes: Vec<Include>,
    /// `_sort` keys, most significant first. Empty: the server's order.
    pub sort: Vec<SortKey>,
    /// `_count`, at most [`MAX_COUNT`]; `Some(0)` asks for the total only.
    pub count: Option<u32>,
    /// `_offset`: this server's paging position, matches to skip.
    pub offset: Option<u64>,
    /// `_snapshot`: this server's paging snapshot, from a `next` link, so pages stay stable
    /// while others write.
    pub snapshot: Option<u64>,
    /// `_total`; None when not asked, for the server to choose.
    pub total: Option<TotalMode>,
    /// `_summary`.
    pub summary: Option<Summary>,
    /// `_elements`, as given (top-level element names, maybe prefixed with the type).
    pub elements: Option<Vec<String>>,
    /// Exactly the parameters understood, in order, for the Bundle's `self` link. Values are
    /// as given, except `_count` (capped) and `_sort` (without ignored keys).
    pub applied: Vec<(String, String)>,
    /// Parameters (or `_sort` keys) left out: name, value and why, for an OperationOutcome.
    pub ignored: Vec<(String, String, String)>,
}

impl SearchRequest {
    fn new(resource_types: Vec<String>) -> Self {
        SearchRequest {
            resource_types,
            criteria: Vec::new(),
            includes: Vec::new(),
            revincludes: Vec::new(),
            sort: Vec::new(),
            count: None,
            offset: None,
            snapshot: None,
            total: None,
            summary: None,
            elements: None,
            applied: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// Whether only the number of matches is wanted (`_summary=count` or `_count=0`).
    pub fn count_only(&self) -> bool {
        self.summary == Some(Summary::Count) || self.count == Some(0)
    }
}

/// A search parameter as a criterion names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its code (`subject`, `_lastUpdated`): the key of the index rows.
    pub code: String,
    /// Its type, which says which index holds its values.
    pub kind: ParamType,
}

/// One condition on the resources searched.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Criterion {
    /// `param[:modifier]=v1,v2`: a value of `param` matches one of the values.
    Match(Match),
    /// `param:missing=true|false`: whether the resource has no value for `param`.
    Missing {
        /// The parameter.
        param: Param,
        /// `true`: resources without a value; `false`: resources with one.
        missing: bool,
    },
    /// `param[:Type].rest=…`: `param` (a reference) refers to a resource of `target_type`
    /// that meets `criterion`.
    Chain {
        /// The reference parameter of the resource searched.
        param: Param,
        /// The type referred to: from `:Type`, or the parameter's only target.
        target_type: String,
        /// What the referred resource meets (on `target_type`).
        criterion: Box<Criterion>,
    },
    /// `_has:Type:param:rest=…`: some resource of `source_type` whose `param` refers to the
    /// resource searched meets `criterion`.
    Has {
        /// The type of the referring resources.
        source_type: String,
        /// The reference parameter of `source_type`.
        param: Param,
        /// What the referring resource meets (on `source_type`).
        criterion: Box<Criterion>,
    },
}

/// A parameter compared with values (OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The parameter.
    pub param: Param,
    /// Its modifier. Most are already reflected in the values (`:exact` keeps the text as
    /// written, `:text` gives [`TokenSearch::Text`], `:Type` fills
    /// `ReferenceSearch::Local::target_type`); the SQL must still act on
    /// [`Modifier::Not`] (no value matches any of the values), [`Modifier::Contains`]
    /// (substring instead of prefix) and [`Modifier::Below`] / [`Modifier::Above`] (uri).
    pub modifier: Option<Modifier>,
    /// The values, one of which must match; never empty.
    pub values: Vec<SearchValue>,
}

/// A modifier this server supports (`:missing` is [`Criterion::Missing`], `:iterate` is
/// [`Include::iterate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Modifier {
    /// string `:exact`: the whole value, case- and accent-sensitive.
    Exact,
    /// string `:contains`: a substring of the normalized value.
    Contains,
    /// token `:text`: a prefix of the normalized display or text.
    Text,
    /// token `:not`: the resource has no value matching any of the values (resources without
    /// a value match).
    Not,
    /// token `:of-type`: an Identifier with this type coding and value.
    OfType,
    /// uri `:below`: the value is the given URI or starts with it (followed by `/`).
    Below,
    /// uri `:above`: the given URI is the value or starts with it.
    Above,
    /// reference `:identifier`: Reference.identifier matches.
    Identifier,
    /// reference `:[Type]`: the target is of this type.
    Type(String),
}

impl Modifier {
    /// The modifier as written after the `:`.
    pub fn as_str(&self) -> &str {
        match self {
            Modifier::Exact => "exact",
            Modifier::Contains => "contains",
            Modifier::Text => "text",
            Modifier::Not => "not",
            Modifier::OfType => "of-type",
            Modifier::Below => "below",
            Modifier::Above => "above",
            Modifier::Identifier => "identifier",
            Modifier::Type(t) => t,
        }
    }
}

/// One search value, parsed per the parameter's type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SearchValue {
    /// string: [`normalize`]d for the default prefix match and `:contains`, as written
    /// (unescaped) for `:exact`. Compare with [`StringValue`](super::StringValue)'s
    /// `normalized` or `exact`.
    String(String),
    /// token.
    Token(TokenSearch),
    /// reference.
    Reference(ReferenceSearch),
    /// date, dateTime, instant (and `_lastUpdated`).
    Date(DateSearch),
    /// number.
    Number(NumberSearch),
    /// quantity.
    Quantity(QuantitySearch),
    /// uri, as written (unescaped).
    Uri(String),
    /// composite: one value per component, in component order, each of the component's type.
    Composite(Vec<SearchValue>),
}

/// How a token's system is constrained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemFilter {
    /// `code`: any system, or none.
    Any,
    /// `|code`: no system.
    Absent,
    /// `system|code` or `system|`: this system.
    Is(String),
}

/// A token search value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSearch {
    /// `system|code`, `|code`, `system|` (code None: any code of the system) or `code`.
    Code {
        /// The system constraint.
        system: SystemFilter,
        /// The code (Identifier.value, ContactPoint.value, …); None for `system|`.
        code: Option<String>,
    },
    /// `:text`: the [`normalize`]d text, a prefix of the indexed display/text.
    Text(String),
    /// `:of-type`: `type-system|type-code|value` of an Identifier.
    OfType {
        /// Identifier.type.coding.system.
        system: String,
        /// Identifier.type.coding.code.
        code: String,
        /// Identifier.value.
        value: String,
    },
}

/// A reference search value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceSearch {
    /// `Type/id`, `Type/id/_history/v`, or `id` alone (type from `:Type`, else any type).
    Local {
        /// The target's type, when given.
        target_type: Option<String>,
        /// The target's id.
        id: String,
        /// The version, when given.
        version: Option<String>,
    },
    /// An absolute URL (`http://…`, `urn:…`), without `/_history/v` or a canonical's `|v`.
    /// The server turns one under its own base into a `Local`.
    Url {
        /// The URL.
        url: String,
        /// The version, when given.
        version: Option<String>,
    },
    /// `:identifier`: `system|value` as for tokens, against Reference.identifier.
    Identifier {
        /// The system constraint.
        system: SystemFilter,
        /// Identifier.value; None for `system|`.
        value: Option<String>,
    },
}

/// A comparison prefix of ordered types (https://hl7.org/fhir/R4/search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Prefix {
    /// `eq` (the default): the value's range contains the parameter's.
    #[default]
    Eq,
    /// `ne`: not `eq`.
    Ne,
    /// `gt`: greater than.
    Gt,
    /// `lt`: less than.
    Lt,
    /// `ge`: greater or equal.
    Ge,
    /// `le`: less or equal.
    Le,
    /// `sa`: starts after.
    Sa,
    /// `eb`: ends before.
    Eb,
    /// `ap`: approximately.
    Ap,
}

impl Prefix {
    /// All prefixes.
    pub const ALL: [Prefix; 9] = [
        Prefix::Eq,
        Prefix::Ne,
        Prefix::Gt,
        Prefix::Lt,
        Prefix::Ge,
        Prefix::Le,
        Prefix::Sa,
        Prefix::Eb,
        Prefix::Ap,
    ];

    /// The prefix as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Eq => "eq",
            Prefix::Ne => "ne",
            Prefix::Gt => "gt",
            Prefix::Lt => "lt",
            Prefix::Ge => "ge",
            Prefix::Le => "le",
            Prefix::Sa => "sa",
            Prefix::Eb => "eb",
            Prefix::Ap => "ap",
        }
    }
}

/// A date search value: a prefix and the range `[start, end)` the value denotes at its
/// precision (zone-less values taken as UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateSearch {
    /// The prefix.
    pub prefix: Prefix,
    /// The value as written, without prefix.
    pub text: String,
    /// First instant.
    pub start: OffsetDateTime,
    /// First instant after.
    pub end: OffsetDateTime,
}

/// A number search value: a prefix, the literal and its implicit precision range.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberSearch {
    /// The prefix.
    pub prefix: Prefix,
    /// The literal (without prefix) and its value.
    pub value: Decimal,
    /// `[low, high)`, the range of the literal's precision ([`Decimal::precision_range`]):
    /// `100` is [99.5, 100.5). `eq`, `ne` and `ap` use it; the others compare with `value`.
    pub low: f64,
    /// See `low`.
    pub high: f64,
}

/// A quantity search value: `[prefix]number|system|code`, `number||code` or `number`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantitySearch {
    /// The number.
    pub number: NumberSearch,
    /// The unit system; None: any.
    pub system: Option<String>,
    /// The unit code (matching Quantity.code, or Quantity.unit when no system is given);
    /// None: any.
    pub code: Option<String>,
}

/// An `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The type holding the reference: `Observation` in `Observation:subject`. None for
    /// `*`.
    pub source_type: Option<String>,
    /// The reference parameter of `source_type`; None for `*` and `Type:*` (every reference
    /// parameter).
    pub param: Option<String>,
    /// Only targets of this type (`Observation:subject:Patient`).
    pub target_type: Option<String>,
    /// `:iterate` (or R3's `:recurse`): apply to included resources too, repeatedly.
    pub iterate: bool,
}

/// A `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The parameter sorted on.
    pub param: Param,
    /// `-param`.
    pub descending: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// `none`: no total.
    None,
    /// `estimate`: a cheap estimate will do.
    Estimate,
    /// `accurate`: the exact count.
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// `true`: the summary elements.
    True,
    /// `text`: text, id, meta and mandatory elements.
    Text,
    /// `data`: all but text.
    Data,
    /// `count`: only the total.
    Count,
    /// `false`: whole resources.
    False,
}

impl Summary {
    /// The projection of each resource, None for `count` (no resources).
    pub fn projection(self) -> Option<SummaryMode> {
        match self {
            Summary::True => Some(SummaryMode::True),
            Summary::Text => Some(SummaryMode::Text),
            Summary::Data => Some(SummaryMode::Data),
            Summary::False => Some(SummaryMode::False),
            Summary::Count => None,
        }
    }
}

/// Why a search cannot be run; the server answers 400 with an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter `{param}`: {kind}")]
pub struct SearchError {
    /// The parameter name as given (with modifiers and chain).
    pub param: String,
    /// What is wrong.
    pub kind: SearchErrorKind,
}

impl SearchError {
    /// The OperationOutcome issue type: `not-supported` for unknown parameters and
    /// modifiers, `invalid` for bad values.
    pub fn issue_type(&self) -> IssueType {
        match self.kind {
            SearchErrorKind::UnknownParameter(_) | SearchErrorKind::UnsupportedModifier(_) => {
                IssueType::NotSupported
            }
            SearchErrorKind::InvalidValue(_) => IssueType::Invalid,
        }
    }

    /// Whether lenient handling may ignore the parameter instead.
    fn ignorable(&self) -> bool {
        matches!(
            self.kind,
            SearchErrorKind::UnknownParameter(_) | SearchErrorKind::UnsupportedModifier(_)
        )
    }
}

/// The kinds of [`SearchError`]; each carries a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchErrorKind {
    /// Not a parameter of the type(s) searched, or one this server does not index.
    #[error("{0}")]
    UnknownParameter(String),
    /// A modifier the parameter's type does not have, or this server does not support.
    #[error("{0}")]
    UnsupportedModifier(String),
    /// A value (or parameter name form) that does not parse; never ignored.
    #[error("{0}")]
    InvalidValue(String),
}

type Kind = SearchErrorKind;

fn invalid(why: impl Into<String>) -> Kind {
    Kind::InvalidValue(why.into())
}

/// Parses the query `params` (decoded, in order) of a search of `resource_type` (None: a
/// system search, whose types come from `_type`), with `strict` for `Prefer:
/// handling=strict`.
pub fn parse_search(
    registry: &SearchRegistry,
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchRequest, SearchError> {
    let fail = |param: &str, kind| SearchError {
        param: param.to_owned(),
        kind,
    };
    let types = match resource_type {
        Some(t) if registry.params_for(t).is_empty() => {
            return Err(fail(t, invalid(format!("`{t}` is not a resource type"))));
        }
        Some(t) => vec![t.to_owned()],
        None => {
            let mut types = Vec::new();
            for (name, value) in params.iter().filter(|(n, v)| n == "_type" && !v.is_empty()) {
                if !types.is_empty() {
                    return Err(fail(name, invalid("given more than once")));
                }
                types = parse_types(registry, value).map_err(|k| fail(name, k))?;
            }
            types
        }
    };
    let scope: Vec<&str> = if types.is_empty() {
        let mut all: Vec<&str> = registry.resource_types().collect();
        all.sort_unstable();
        all
    } else {
        types
            .iter()
            .filter_map(|t| registry_type(registry, t))
            .collect()
    };
    let mut parser = Parser {
        registry,
        strict,
        system: resource_type.is_none(),
        scope,
        req: SearchRequest::new(types.clone()),
        seen: BTreeSet::new(),
    };
    for (name, value) in params {
        if value.is_empty() {
            parser
                .req
                .ignored
                .push((name.clone(), value.clone(), "empty value".into()));
            continue;
        }
        match parser.param(name, value) {
            Ok(Some(applied)) => parser.req.applied.push((name.clone(), applied)),
            Ok(None) => {}
            Err(kind) => {
                let e = fail(name, kind);
                if strict || !e.ignorable() {
                    return Err(e);
                }
                parser
                    .req
                    .ignored
                    .push((name.clone(), value.clone(), e.kind.to_string()));
            }
        }
    }
    Ok(parser.req)
}

/// A `_type` list.
fn parse_types(registry: &SearchRegistry, value: &str) -> Result<Vec<String>, Kind> {
    let mut types = Vec::new();
    for t in value.split(',') {
        if registry.params_for(t).is_empty() {
            return Err(invalid(format!("`{t}` is not a resource type")));
        }
        if !types.iter().any(|x| x == t) {
            types.push(t.to_owned());
        }
    }
    Ok(types)
}

struct Parser<'a> {
    registry: &'a SearchRegistry,
    strict: bool,
    /// A system search (`_type` allowed).
    system: bool,
    /// The types parameters are resolved against: those searched, or all.
    scope: Vec<&'a str>,
    req: SearchRequest,
    /// Result parameters seen, which may not repeat.
    seen: BTreeSet<String>,
}

impl<'a> Parser<'a> {
    /// Handles one parameter; returns the value to show in the `self` link.
    fn param(&mut self, name: &str, value: &str) -> Result<Option<String>, Kind> {
        let (base, modifier) = match name.split_once(':') {
            Some((b, m)) if b.starts_with('_') && b != "_has" => (b, Some(m)),
            _ => (name, None),
        };
        let result_param = matches!(
            base,
            "_type"
                | "_count"
                | "_offset"
                | "_snapshot"
                | "_total"
                | "_summary"
                | "_elements"
                | "_sort"
                | "_format"
                | "_pretty"
        );
        if result_param {
            if let Some(m) = modifier {
                return Err(Kind::UnsupportedModifier(format!(
                    "`{base}` takes no modifier (`:{m}`)"
                )));
            }
            if !self.seen.insert(base.to_owned()) {
                return Err(invalid("given more than once"));
            }
        }
        let applied = value.to_owned();
        match base {
            "_type" if self.system => {}
            "_type" => {
                return Err(Kind::UnknownParameter(
                    "`_type` applies to system searches only".into(),
                ))
            }
            "_count" => {
                let n = non_negative(value)?;
                let n = u32::try_from(n).unwrap_or(MAX_COUNT).min(MAX_COUNT);
                self.req.count = Some(n);
                return Ok(Some(n.to_string()));
            }
            "_offset" => self.req.offset = Some(non_negative(value)?),
            "_snapshot" => self.req.snapshot = Some(non_negative(value)?),
            "_total" => {
                self.req.total = Some(match value {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    _ => return Err(invalid(one_of(value, "none, estimate, accurate"))),
                })
            }
            "_summary" => {
                self.req.summary = Some(match value {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => return Err(invalid(one_of(value, "true, text, data, count, false"))),
                })
            }
            "_elements" => {
                let names: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
                if names.iter().any(String::is_empty) {
                    return Err(invalid("an empty element name"));
                }
                self.req.elements = Some(names);
            }
            "_sort" => return self.sort(value),
            // The server renders these; they are understood, so they stay in `self`.
            "_format" | "_pretty" => {}
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(m) => {
                        return Err(Kind::UnsupportedModifier(format!(
                            "`{base}` takes only `:iterate` (not `:{m}`)"
                        )))
                    }
                };
                let include = self.include(iterate, value)?;
                if base == "_include" {
                    self.req.includes.push(include);
                } else {
                    self.req.revincludes.push(include);
                }
            }
            _ => {
                let scope = self.scope.clone();
                let c = self.criterion(&scope, name, value)?;
                self.req.criteria.push(c);
            }
        }
        Ok(Some(applied))
    }

    /// The parameter `code` as it applies to every type of `types`.
    fn resolve(&self, types: &[&str], code: &str) -> Result<&'a SearchParam, Kind> {
        let mut found: Option<&'a SearchParam> = None;
        let mut lacking = Vec::new();
        for ty in types {
            match self.registry.param(ty, code).filter(|p| p.is_indexed()) {
                Some(p) => match found {
                    Some(f) if f.kind != p.kind => {
                        return Err(Kind::UnknownParameter(format!(
                            "`{code}` is a {} parameter of some types searched and a {} \
                             parameter of others",
                            f.kind.as_str(),
                            p.kind.as_str()
                        )))
                    }
                    Some(_) => {}
                    None => found = Some(p),
                },
                None => lacking.push(*ty),
            }
        }
        match found {
            Some(p) if lacking.is_empty() => Ok(p),
            _ if types.len() == 1 => Err(Kind::UnknownParameter(
                match self
                    .registry
                    .param(types[0], code)
                    .and_then(|p| p.unsupported.as_ref())
                {
                    Some(why) => format!("`{code}` is not supported on {} ({why})", types[0]),
                    None => format!("`{code}` is not a search parameter of {}", types[0]),
                },
            )),
            None => Err(Kind::UnknownParameter(format!(
                "`{code}` is not a search parameter of the types searched"
            ))),
            Some(_) => Err(Kind::UnknownParameter(format!(
                "`{code}` is not a search parameter of every type searched ({} lack it)",
                abbreviate(&lacking)
            ))),
        }
    }

    /// A criterion on `types` from a parameter name (modifiers, chain, `_has`) and value.
    fn criterion(&self, types: &[&str], name: &str, value: &str) -> Result<Criterion, Kind> {
        if let Some(rest) = name.strip_prefix("_has:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(source), Some(code), Some(inner)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid(
                    "`_has` takes the form `_has:Type:reference:parameter`",
                ));
            };
            if self.registry.params_for(source).is_empty() {
                return Err(invalid(format!("`{source}` is not a resource type")));
            }
            let sp = self.resolve(&[source], code)?;
            if sp.kind != ParamType::Reference {
                return Err(invalid(format!(
                    "`{source}.{code}` is a {} parameter, not a reference",
                    sp.kind.as_str()
                )));
            }
            if !sp.targets.is_empty() && !types.iter().any(|t| sp.targets.iter().any(|x| x == t)) {
                return Err(invalid(format!(
                    "`{source}.{code}` refers to {}, not to the type searched",
                    sp.targets.join(", ")
                )));
            }
            let source = self.static_type(source);
            let criterion = self.criterion(&[source], inner, value)?;
            return Ok(Criterion::Has {
                source_type: source.to_owned(),
                param: param_of(sp),
                criterion: Box::new(criterion),
            });
        }
        let (head, chain) = match name.split_once('.') {
            Some((h, rest)) => (h, Some(rest)),
            None => (name, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (head, None),
        };
        let sp = self.resolve(types, code)?;
        if let Some(rest) = chain {
            if sp.kind != ParamType::Reference {
                return Err(invalid(format!(
                    "`{code}` is a {} parameter, not a reference: it cannot be chained",
                    sp.kind.as_str()
                )));
            }
            let target = match modifier {
                Some(t) => {
                    self.check_target(sp, t)?;
                    self.static_type(t)
                }
                None => match sp.targets.as_slice() {
                    [only] => self.static_type(only),
                    targets => {
                        return Err(invalid(format!(
                            "`{code}` may refer to {}: name one, as in `{code}:{}.{rest}`",
                            abbreviate(targets),
                            targets.first().map_or("Patient", String::as_str)
                        )))
                    }
                },
            };
            let criterion = self.criterion(&[target], rest, value)?;
            return Ok(Criterion::Chain {
                param: param_of(sp),
                target_type: target.to_owned(),
                criterion: Box::new(criterion),
            });
        }
        if modifier == Some("missing") {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(one_of(value, "true, false"))),
            };
            return Ok(Criterion::Missing {
                param: param_of(sp),
                missing,
            });
        }
        let modifier = match modifier {
            Some(m) => Some(self.modifier(sp, m)?),
            None => None,
        };
        let values = value::split(value, b',')
            .into_iter()
            .map(|v| self.value(types[0], sp, modifier.as_ref(), v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Criterion::Match(Match {
            param: param_of(sp),
            modifier,
            values,
        }))
    }

    /// A modifier of `sp`, when both the definition and this server support it.
    fn modifier(&self, sp: &SearchParam, m: &str) -> Result<Modifier, Kind> {
        let allowed = |name: &str| sp.modifiers.iter().any(|x| x == name);
        let parsed = match (sp.kind, m) {
            (ParamType::String, "exact") => Some(Modifier::Exact),
            (ParamType::String, "contains") => Some(Modifier::Contains),
            (ParamType::Token, "text") => Some(Modifier::Text),
            (ParamType::Token, "not") => Some(Modifier::Not),
            (ParamType::Token, "of-type") if sp.value_types.contains("Identifier") => {
                Some(Modifier::OfType)
            }
            (ParamType::Uri, "below") => Some(Modifier::Below),
            (ParamType::Uri, "above") => Some(Modifier::Above),
            (ParamType::Reference, "identifier") => Some(Modifier::Identifier),
            (ParamType::Reference, t) if !self.registry.params_for(t).is_empty() => {
                if allowed("[type]") {
                    self.check_target(sp, t)?;
                    return Ok(Modifier::Type(t.to_owned()));
                }
                None
            }
            _ => None,
        };
        match parsed {
            Some(p) if allowed(m) => Ok(p),
            _ if m == "iterate" => Err(Kind::UnsupportedModifier(
                "`:iterate` applies only to `_include` and `_revinclude`".into(),
            )),
            _ => {
                let ours: Vec<&str> = sp
                    .modifiers
                    .iter()
                    .map(String::as_str)
                    .filter(|x| supported(sp, x))
                    .collect();
                Err(Kind::UnsupportedModifier(format!(
                    "the modifier `:{m}` is not supported on `{}` (supported: {})",
                    sp.code,
                    if ours.is_empty() {
                        "none".into()
                    } else {
                        ours.iter()
                            .map(|x| format!(":{x}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )))
            }
        }
    }

    /// That `ty` is a resource type `sp` may refer to.
    fn check_target(&self, sp: &SearchParam, ty: &str) -> Result<(), Kind> {
        if self.registry.params_for(ty).is_empty() {
            return Err(invalid(format!("`{ty}` is not a resource type")));
        }
        if !sp.targets.is_empty() && !sp.targets.iter().any(|t| t == ty) {
            return Err(invalid(format!(
                "`{}` refers to {}, not to {ty}",
                sp.code,
                abbreviate(&sp.targets)
            )));
        }
        Ok(())
    }

    /// `ty` with the registry's lifetime (it names a type the registry knows).
    fn static_type(&self, ty: &str) -> &'a str {
        registry_type(self.registry, ty).expect("a type checked against the registry")
    }

    fn value(
        &self,
        ty: &str,
        sp: &SearchParam,
        modifier: Option<&Modifier>,
        raw: &str,
    ) -> Result<SearchValue, Kind> {
        if raw.is_empty() {
            return Err(invalid("an empty value in the list"));
        }
        if sp.kind != ParamType::Composite {
            return value::parse(sp, modifier, raw);
        }
        let parts = value::split(raw, b'$');
        if parts.len() != sp.components.len() {
            return Err(invalid(format!(
                "`{raw}` has {} parts; `{}` takes {} joined with `$`",
                parts.len(),
                sp.code,
                sp.components.len()
            )));
        }
        let mut values = Vec::with_capacity(parts.len());
        for (c, part) in sp.components.iter().zip(parts) {
            let Some(csp) = c
                .code
                .as_deref()
                .and_then(|code| self.registry.param(ty, code))
            else {
                return Err(Kind::UnknownParameter(format!(
                    "a component of `{}` has no parameter on {ty}",
                    sp.code
                )));
            };
            values.push(self.value(ty, csp, None, part)?);
        }
        Ok(SearchValue::Composite(values))
    }

    /// `_sort`; in lenient mode unknown keys go to `ignored` and the rest is applied.
    fn sort(&mut self, value: &str) -> Result<Option<String>, Kind> {
        let mut kept = Vec::new();
        for key in value.split(',') {
            let (code, descending) = match key.strip_prefix('-') {
                Some(c) => (c, true),
                None => (key, false),
            };
            if code.is_empty() {
                return Err(invalid("an empty sort key"));
            }
            let scope = self.scope.clone();
            let sp = match self.resolve(&scope, code) {
                Ok(sp) => sp,
                Err(e) if !self.strict => {
                    self.req
                        .ignored
                        .push(("_sort".into(), key.into(), e.to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if matches!(sp.kind, ParamType::Composite | ParamType::Special) {
                return Err(invalid(format!(
                    "cannot sort on `{code}`, a {} parameter",
                    sp.kind.as_str()
                )));
            }
            self.req.sort.push(SortKey {
                param: param_of(sp),
                descending,
            });
            kept.push(key);
        }
        // Nothing understood: `_sort` is left out of `self`; its keys are in `ignored`.
        Ok((!kept.is_empty()).then(|| kept.join(",")))
    }

    fn include(&self, iterate: bool, value: &str) -> Result<Include, Kind> {
        if value == "*" {
            return Ok(Include {
                source_type: None,
                param: None,
                target_type: None,
                iterate,
            });
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (source, code, target) = match parts.as_slice() {
            [s, c] => (*s, *c, None),
            [s, c, t] => (*s, *c, Some(*t)),
            _ => {
                return Err(invalid(format!(
                    "`{value}` is not of the form `Type:parameter[:targetType]` or `*`"
                )))
            }
        };
        if self.registry.params_for(source).is_empty() {
            return Err(invalid(format!("`{source}` is not a resource type")));
        }
        let param = if code == "*" {
            if let Some(t) = target {
                if self.registry.params_for(t).is_empty() {
                    return Err(invalid(format!("`{t}` is not a resource type")));
                }
            }
            None
        } else {
            let sp = self.resolve(&[source], code)?;
            if sp.kind != ParamType::Reference {
                return Err(invalid(format!(
                    "`{source}:{code}` is a {} parameter, not a reference",
                    sp.kind.as_str()
                )));
            }
            if let Some(t) = target {
                self.check_target(sp, t)?;
            }
            Some(code.to_owned())
        };
        // A revinclude's source is any type referring to the matches; an include's source is
        // normally the type searched, but with `:iterate` it may be an included type, so
        // neither is checked against the types searched.
        Ok(Include {
            source_type: Some(source.to_owned()),
            param,
            target_type: target.map(str::to_owned),
            iterate,
        })
    }
}

/// Whether this server supports modifier `m` on `sp` (for error messages).
fn supported(sp: &SearchParam, m: &str) -> bool {
    match sp.kind {
        ParamType::String => matches!(m, "missing" | "exact" | "contains"),
        ParamType::Token => {
            matches!(m, "missing" | "text" | "not")
                || (m == "of-type" && sp.value_types.contains("Identifier"))
        }
        ParamType::Reference => matches!(m, "missing" | "[type]" | "identifier"),
        ParamType::Uri => matches!(m, "missing" | "below" | "above"),
        _ => m == "missing",
    }
}

/// `ty` as the registry holds it, if it is a resource type.
fn registry_type<'a>(registry: &'a SearchRegistry, ty: &str) -> Option<&'a str> {
    registry.resource_types().find(|t| *t == ty)
}

fn param_of(sp: &SearchParam) -> Param {
    Param {
        code: sp.code.clone(),
        kind: sp.kind,
    }
}

fn non_negative(value: &str) -> Result<u64, Kind> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("`{value}` is not a non-negative integer")));
    }
    value
        .parse()
        .map_err(|_| invalid(format!("`{value}` is too large")))
}

fn one_of(value: &str, choices: &str) -> String {
    format!("`{value}` is not one of {choices}")
}

/// A list of names for a message, cut after a few.
fn abbreviate<S: AsRef<str>>(names: &[S]) -> String {
    let mut s: Vec<&str> = names.iter().take(5).map(AsRef::as_ref).collect();
    if names.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}

#[cfg(test)]
mod tests;
