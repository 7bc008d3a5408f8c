//! Index values of a resource: every indexed parameter's expression evaluated and its results
//! turned into typed values, ready for the server to store in the write transaction.

use serde_json::Value;
use time::OffsetDateTime;

use super::registry::{ParamType, SearchParam, SearchRegistry};
use super::text::normalize;
use crate::definitions::{self, Definitions};
use crate::fhirpath::{self, EvalError, Item};
use crate::primitives::parse_date_time_range;

/// One value of one parameter of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry<'r> {
    /// The parameter code (`family`, `_id`).
    pub param: &'r str,
    /// The value.
    pub value: IndexValue,
}

/// A typed index value.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A string parameter value.
    String(StringValue),
    /// A token parameter value.
    Token(TokenValue),
    /// A reference parameter value.
    Reference(ReferenceValue),
    /// A date parameter value.
    Date(DateRange),
    /// A number parameter value.
    Number(Decimal),
    /// A quantity parameter value.
    Quantity(QuantityValue),
    /// A uri parameter value, as written.
    Uri(String),
    /// One combination of a composite's component values, in component order.
    Composite(Vec<IndexValue>),
}

/// A string value: as written, and in [`normalize`]d form for the default (prefix, case- and
/// accent-insensitive) and `:contains` searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringValue {
    /// For `:exact`.
    pub exact: String,
    /// For the default match and `:contains`.
    pub normalized: String,
}

impl StringValue {
    /// The value of the string `s`.
    pub fn new(s: &str) -> StringValue {
        StringValue {
            exact: s.to_owned(),
            normalized: normalize(s),
        }
    }
}

/// A token value. A CodeableConcept gives one per coding, plus one with only `text` for its
/// own `text`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenValue {
    /// Coding.system or Identifier.system (none for code, boolean, ContactPoint, …).
    pub system: Option<String>,
    /// Coding.code, Identifier.value, ContactPoint.value, or the primitive's value
    /// (`true`/`false` for booleans).
    pub code: Option<String>,
    /// For `:text`, [`normalize`]d: Coding.display, CodeableConcept.text or
    /// Identifier.type.text.
    pub text: Option<String>,
    /// For `:of-type` on identifiers: the (system, code) of each Identifier.type coding.
    pub identifier_type: Vec<(Option<String>, Option<String>)>,
}

/// A reference value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceValue {
    /// The target's resource type, when known (`Type/id`, an absolute URL ending in one, a
    /// contained resource, `Reference.type`, or a conditional `Type?…`).
    pub target_type: Option<String>,
    /// The target's id, when known.
    pub id: Option<String>,
    /// The version of a versioned reference (`…/_history/2`, or `|2` on a canonical).
    pub version: Option<String>,
    /// The reference when it is not a relative `Type/id`: absolute URLs, canonicals, `urn:`,
    /// without version.
    pub url: Option<String>,
    /// Reference.identifier (system, value), for `:identifier`.
    pub identifier: Option<(Option<String>, Option<String>)>,
    /// Whether this is a reference to a contained resource (`#id`): `id` is the local id and
    /// the server should not treat it as a link to another stored resource.
    pub contained: bool,
}

/// A date value as the half-open range `[start, end)` of instants its precision denotes;
/// `None` is an open end (a Period without start or end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First instant, or unbounded.
    pub start: Option<OffsetDateTime>,
    /// First instant after, or unbounded.
    pub end: Option<OffsetDateTime>,
}

/// A decimal as written (`185.50` keeps its precision) and as an `f64` for comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimal {
    /// The literal.
    pub text: String,
    /// Its value.
    pub value: f64,
}

impl Decimal {
    /// Parses a decimal literal (`1.50`, `-3`, `1e2`).
    pub fn parse(text: &str) -> Option<Decimal> {
        let value: f64 = text.parse().ok()?;
        value.is_finite().then(|| Decimal {
            text: text.to_owned(),
            value,
        })
    }

    /// The implicit precision range `[value − ½ulp, value + ½ulp)` of the literal, as
    /// search.html defines for search values: `100` → [99.5, 100.5), `1.50` → [1.495, 1.505).
    pub fn precision_range(&self) -> (f64, f64) {
        let lower = self.text.to_ascii_lowercase();
        let (mantissa, exp) = match lower.split_once('e') {
            Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
            None => (lower.as_str(), 0),
        };
        let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
        let half = 0.5 * 10f64.powi(exp - decimals);
        (self.value - half, self.value + half)
    }
}

/// A quantity value. A Range gives two: its low with comparator `>=` and its high with `<=`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    /// Quantity.value.
    pub value: Decimal,
    /// Quantity.comparator (`<`, `<=`, `>=`, `>`), meaning the true value is beyond `value`.
    pub comparator: Option<String>,
    /// Quantity.system (`http://unitsofmeasure.org`).
    pub system: Option<String>,
    /// Quantity.code (`mg`).
    pub code: Option<String>,
    /// Quantity.unit, as displayed.
    pub unit: Option<String>,
}

/// Why a resource's index values could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ExtractError {
    /// What went wrong.
    pub kind: ExtractErrorKind,
}

/// The kinds of [`ExtractError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractErrorKind {
    /// The JSON has no `resourceType`, or names no R4 resource type.
    #[error("not a known resource type: {0:?}")]
    NotAResource(Option<String>),
    /// A parameter's expression failed on this resource (a repeating element where one was
    /// expected, for instance).
    #[error("search parameter {param}: {error}")]
    Evaluation {
        /// The parameter code.
        param: String,
        /// The FHIRPath error.
        error: EvalError,
    },
}

/// Primitive types that carry a string.
const STRING_PRIMITIVES: &[&str] = &[
    "string",
    "markdown",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
];
const URI_TYPES: &[&str] = &["uri", "url", "canonical", "oid", "uuid"];
const NUMBER_TYPES: &[&str] = &["integer", "decimal", "positiveInt", "unsignedInt"];
const DATE_TYPES: &[&str] = &["date", "dateTime", "instant"];
const QUANTITY_TYPES: &[&str] = &[
    "Quantity",
    "Age",
    "Count",
    "Distance",
    "Duration",
    "MoneyQuantity",
    "SimpleQuantity",
];

/// Whether values of FHIR type `ty` can be indexed as `kind` (what the coverage counts).
/// SampledData is accepted for quantity and deliberately yields nothing: a series of samples
/// has no single value to compare with, and no server indexes it.
pub fn indexable(kind: ParamType, ty: &str) -> bool {
    let defs = definitions::r4();
    match kind {
        ParamType::String => {
            STRING_PRIMITIVES.contains(&ty) || matches!(ty, "HumanName" | "Address")
        }
        ParamType::Token => {
            STRING_PRIMITIVES.contains(&ty)
                || matches!(
                    ty,
                    "boolean" | "Coding" | "CodeableConcept" | "Identifier" | "ContactPoint"
                )
        }
        ParamType::Reference => {
            matches!(ty, "Reference" | "Resource")
                || URI_TYPES.contains(&ty)
                || defs.is_resource_type(ty)
        }
        ParamType::Date => DATE_TYPES.contains(&ty) || matches!(ty, "Period" | "Timing"),
        ParamType::Number => NUMBER_TYPES.contains(&ty) || ty == "Range",
        ParamType::Quantity => {
            QUANTITY_TYPES.contains(&ty) || matches!(ty, "Range" | "SampledData" | "Money")
        }
        ParamType::Uri => URI_TYPES.contains(&ty),
        ParamType::Composite | ParamType::Special => false,
    }
}

/// The index values of `resource` for every indexed parameter of its type, in parameter
/// order. Values that do not parse as their type (an invalid date) are skipped: resources
/// are validated before they are stored, so there are none in stored data.
pub fn extract<'r>(
    registry: &'r SearchRegistry,
    resource: &Value,
) -> Result<Vec<IndexEntry<'r>>, ExtractError> {
    let defs = definitions::r4();
    let ty = resource.get("resourceType").and_then(Value::as_str);
    let Some(ty) = ty.filter(|t| defs.is_resource_type(t)) else {
        return Err(ExtractError {
            kind: ExtractErrorKind::NotAResource(ty.map(str::to_owned)),
        });
    };
    let mut entries = Vec::new();
    let mut values = Vec::new();
    for param in registry.params_for(ty) {
        values.clear();
        extract_param_into(param, resource, &mut values)?;
        entries.extend(values.drain(..).map(|value| IndexEntry {
            param: param.code.as_str(),
            value,
        }));
    }
    Ok(entries)
}

/// The values of one parameter of `resource` (empty for parameters that are not indexed).
pub fn extract_param(
    param: &SearchParam,
    resource: &Value,
) -> Result<Vec<IndexValue>, ExtractError> {
    let mut out = Vec::new();
    extract_param_into(param, resource, &mut out)?;
    Ok(out)
}

fn extract_param_into(
    param: &SearchParam,
    resource: &Value,
    out: &mut Vec<IndexValue>,
) -> Result<(), ExtractError> {
    let (Some(expr), true) = (&param.expression, param.is_indexed()) else {
        return Ok(());
    };
    let failed = |error| ExtractError {
        kind: ExtractErrorKind::Evaluation {
            param: param.code.clone(),
            error,
        },
    };
    let cx = Cx {
        defs: definitions::r4(),
        resource,
    };
    let items = fhirpath::evaluate(expr, resource).map_err(failed)?;
    if param.kind != ParamType::Composite {
        for item in &items {
            cx.values(param.kind, item, out);
        }
        return Ok(());
    }
    let root = fhirpath::resource_item(resource);
    for item in items {
        let mut combos: Vec<Vec<IndexValue>> = vec![Vec::new()];
        for c in &param.components {
            let mut vals = Vec::new();
            for v in fhirpath::evaluate_on(&c.expression, item, root).map_err(failed)? {
                cx.values(c.kind, &v, &mut vals);
            }
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    vals.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .collect();
        }
        out.extend(combos.into_iter().map(IndexValue::Composite));
    }
    Ok(())
}

struct Cx<'a> {
    defs: &'static Definitions,
    resource: &'a Value,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Cx<'_> {
    /// Appends the values of `item` as a `kind` parameter; nothing for types that
    /// [`indexable`] rejects (the registry never evaluates those).
    fn values(&self, kind: ParamType, item: &Item<'_>, out: &mut Vec<IndexValue>) {
        let ty = item.type_name();
        let Some(v) = item.json() else {
            // A computed Boolean (`Patient.deceased.exists() and …`) is a token.
            if let (ParamType::Token, Item::Bool(b)) = (kind, item) {
                out.push(IndexValue::Token(TokenValue {
                    code: Some(b.to_string()),
                    ..TokenValue::default()
                }));
            }
            return;
        };
        match kind {
            ParamType::String => self.strings(ty, v, out),
            ParamType::Token => tokens(ty, v, out),
            ParamType::Reference => {
                if let Some(r) = self.reference(ty, v) {
                    out.push(IndexValue::Reference(r));
                }
            }
            ParamType::Date => dates(ty, v, out),
            ParamType::Number => {
                if ty == "Range" {
                    for bound in ["low", "high"] {
                        if let Some(d) = v.get(bound).and_then(|q| q.get("value")).and_then(decimal)
                        {
                            out.push(IndexValue::Number(d));
                        }
                    }
                } else if let Some(d) = decimal(v) {
                    out.push(IndexValue::Number(d));
                }
            }
            ParamType::Quantity => {
                if ty == "Range" {
                    for (bound, cmp) in [("low", ">="), ("high", "<=")] {
                        if let Some(mut q) = v.get(bound).and_then(quantity) {
                            q.comparator = Some(cmp.to_owned());
                            out.push(IndexValue::Quantity(q));
                        }
                    }
                } else if ty == "Money" {
                    // As search.html says for Money: the currency is an ISO 4217 code.
                    if let Some(value) = v.get("value").and_then(decimal) {
                        out.push(IndexValue::Quantity(QuantityValue {
                            value,
                            comparator: None,
                            system: Some("urn:iso:std:iso:4217".into()),
                            code: text(v, "currency"),
                            unit: None,
                        }));
                    }
                } else if QUANTITY_TYPES.contains(&ty) {
                    out.extend(quantity(v).map(IndexValue::Quantity));
                }
            }
            ParamType::Uri => {
                if let Some(s) = v.as_str() {
                    out.push(IndexValue::Uri(s.to_owned()));
                }
            }
            ParamType::Composite | ParamType::Special => {}
        }
    }

    fn strings(&self, ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
        let parts: &[&str] = match ty {
            "HumanName" => &["text", "family", "given", "prefix", "suffix"],
            "Address" => &[
                "text",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ],
            _ => {
                if let Some(s) = v.as_str() {
                    out.push(IndexValue::String(StringValue::new(s)));
                }
                return;
            }
        };
        for part in parts {
            match v.get(*part) {
                Some(Value::String(s)) => out.push(IndexValue::String(StringValue::new(s))),
                Some(Value::Array(items)) => out.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| IndexValue::String(StringValue::new(s))),
                ),
                _ => {}
            }
        }
    }

    fn reference(&self, ty: &str, v: &Value) -> Option<ReferenceValue> {
        if self.defs.is_resource_type(ty) {
            // A resource in place of a reference (`Bundle.entry[0].resource`).
            return Some(ReferenceValue {
                target_type: Some(ty.to_owned()),
                id: text(v, "id"),
                ..ReferenceValue::default()
            });
        }
        if let Some(s) = v.as_str() {
            // canonical or uri: `url|version`.
            let (url, version) = match s.split_once('|') {
                Some((u, ver)) => (u, Some(ver.to_owned())),
                None => (s, None),
            };
            let mut r = self.literal_reference(url);
            r.version = version.or(r.version);
            r.url = Some(url.to_owned());
            return Some(r);
        }
        let mut r = match v.get("reference").and_then(Value::as_str) {
            Some(s) => self.literal_reference(s),
            None => ReferenceValue::default(),
        };
        if r.target_type.is_none() {
            r.target_type = text(v, "type");
        }
        if let Some(ident) = v.get("identifier") {
            r.identifier = Some((text(ident, "system"), text(ident, "value")));
        }
        (r != ReferenceValue::default()).then_some(r)
    }

    /// The parts of a literal reference string; the type of a contained resource (`#id`)
    /// is looked up among the resource's contained resources.
    fn literal_reference(&self, s: &str) -> ReferenceValue {
        let mut r = literal_reference(s);
        if r.contained {
            r.target_type = self
                .resource
                .get("contained")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("id").and_then(Value::as_str) == r.id.as_deref())
                })
                .and_then(|c| text(c, "resourceType"));
        }
        r
    }
}

/// The parts of a literal reference (`Reference.reference`): `Type/id`,
/// `Type/id/_history/v`, an absolute URL ending in one, a conditional `Type?…`, any other
/// URL, or `#id`, a contained resource (whose type only the resource can tell).
pub fn literal_reference(s: &str) -> ReferenceValue {
    let defs = definitions::r4();
    if let Some(local) = s.strip_prefix('#') {
        return ReferenceValue {
            id: Some(local.to_owned()),
            contained: true,
            ..ReferenceValue::default()
        };
    }
    if let Some((ty, _query)) = s.split_once('?') {
        // Conditional (`Patient?identifier=…`): only the type is known.
        return ReferenceValue {
            target_type: defs.is_resource_type(ty).then(|| ty.to_owned()),
            url: Some(s.to_owned()),
            ..ReferenceValue::default()
        };
    }
    let mut r = ReferenceValue::default();
    let (path, version) = match s.split_once("/_history/") {
        Some((p, v)) => (p, Some(v.to_owned())),
        None => (s, None),
    };
    if let Some(ty) = fhirpath::reference_type(defs, path) {
        r.target_type = Some(ty.to_owned());
        r.id = path.rsplit('/').next().map(str::to_owned);
        r.version = version;
        let relative = path.len() == ty.len() + 1 + r.id.as_ref().map_or(0, String::len);
        if !relative {
            r.url = Some(path.to_owned());
        }
    } else {
        r.url = Some(s.to_owned());
    }
    r
}

fn tokens(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let coding = |c: &Value| TokenValue {
        system: text(c, "system"),
        code: text(c, "code"),
        text: c.get("display").and_then(Value::as_str).map(normalize),
        identifier_type: Vec::new(),
    };
    let push = |t: TokenValue, out: &mut Vec<IndexValue>| {
        if t != TokenValue::default() {
            out.push(IndexValue::Token(t));
        }
    };
    match ty {
        "Coding" => push(coding(v), out),
        "CodeableConcept" => {
            for c in v
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push(coding(c), out);
            }
            if let Some(t) = v.get("text").and_then(Value::as_str) {
                push(
                    TokenValue {
                        text: Some(normalize(t)),
                        ..TokenValue::default()
                    },
                    out,
                );
            }
        }
        "Identifier" => {
            let id_type = v.get("type");
            push(
                TokenValue {
                    system: text(v, "system"),
                    code: text(v, "value"),
                    text: id_type
                        .and_then(|t| t.get("text"))
                        .and_then(Value::as_str)
                        .map(normalize),
                    identifier_type: id_type
                        .and_then(|t| t.get("coding"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|c| (text(c, "system"), text(c, "code")))
                        .collect(),
                },
                out,
            )
        }
        // search.html: ContactPoint tokens have no system, only the value.
        "ContactPoint" => push(
            TokenValue {
                code: text(v, "value"),
                ..TokenValue::default()
            },
            out,
        ),
        _ => {
            let code = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                _ => return,
            };
            push(
                TokenValue {
                    code: Some(code),
                    ..TokenValue::default()
                },
                out,
            )
        }
    }
}

fn dates(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let range = |s: Option<&Value>| s.and_then(Value::as_str).and_then(parse_date_time_range);
    let period = |p: &Value, out: &mut Vec<IndexValue>| {
        let (start, end) = (range(p.get("start")), range(p.get("end")));
        if start.is_some() || end.is_some() {
            out.push(IndexValue::Date(DateRange {
                start: start.map(|r| r.0),
                end: end.map(|r| r.1),
            }));
        }
    };
    match ty {
        "Period" => period(v, out),
        "Timing" => {
            for e in v
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some((s, e)) = range(Some(e)) {
                    out.push(IndexValue::Date(DateRange {
                        start: Some(s),
                        end: Some(e),
                    }));
                }
            }
            if let Some(bounds) = v.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                period(bounds, out);
            }
        }
        _ => {
            if let Some((s, e)) = range(Some(v)) {
                out.push(IndexValue::Date(DateRange {
                    start: Some(s),
                    end: Some(e),
                }));
            }
        }
    }
}

fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        // With `arbitrary_precision`, a Number's string form is the literal as written.
        Value::Number(n) => Decimal::parse(&n.to_string()),
        _ => None,
    }
}

fn quantity(v: &Value) -> Option<QuantityValue> {
    Some(QuantityValue {
        value: decimal(v.get("value")?)?,
        comparator: text(v, "comparator"),
        system: text(v, "system"),
        code: text(v, "code"),
        unit: text(v, "unit"),
    })
}
