//! The search parameters of every resource type, built from the vendored R4 SearchParameter
//! Bundle: each parameter with its type, the part of its FHIRPath expression that applies to
//! the type (parsed and statically typed), reference targets, composite components and the
//! modifiers and comparators it allows.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::LazyLock;

use serde::Deserialize;

use super::extract::indexable;
use crate::definitions::{self, Definitions};
use crate::fhirpath::{self, BinOp, Expr, Function, TypeOp};

static R4_SEARCH: LazyLock<SearchRegistry> = LazyLock::new(|| {
    // Part of the build, like the type model: the tests check it decodes.
    SearchRegistry::from_bundle_gz(definitions::R4_SEARCH_PARAMETERS_GZ, definitions::r4())
        .expect("the embedded R4 search parameters decode")
});

/// The R4 search parameters, decoded on first use.
pub fn r4_search() -> &'static SearchRegistry {
    &R4_SEARCH
}

/// A search parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// `number`
    Number,
    /// `date`
    Date,
    /// `string`
    String,
    /// `token`
    Token,
    /// `reference`
    Reference,
    /// `composite`
    Composite,
    /// `quantity`
    Quantity,
    /// `uri`
    Uri,
    /// `special` (`Location.near`): no generic extraction.
    Special,
}

impl ParamType {
    /// The name used in SearchParameter and CapabilityStatement (`token`).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }

    /// The modifiers search.html (R4) defines for the type. For references, `[type]` stands
    /// for `:Patient` and the like.
    pub fn modifiers(self) -> &'static [&'static str] {
        match self {
            ParamType::String => &["missing", "exact", "contains"],
            ParamType::Token => &[
                "missing", "text", "not", "above", "below", "in", "not-in", "of-type",
            ],
            ParamType::Reference => &["missing", "[type]", "identifier", "above", "below"],
            ParamType::Uri => &["missing", "above", "below"],
            ParamType::Number
            | ParamType::Date
            | ParamType::Quantity
            | ParamType::Composite
            | ParamType::Special => &["missing"],
        }
    }

    /// Whether values are compared with prefixes (`ge`, `lt`, …).
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            ParamType::Number | ParamType::Date | ParamType::Quantity
        )
    }
}

/// One search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    /// The code used in URLs (`family`, `_id`).
    pub code: String,
    /// The canonical URL of the SearchParameter.
    pub url: String,
    /// The parameter type.
    pub kind: ParamType,
    /// The definition's description.
    pub description: String,
    /// The expression for this resource type: the alternatives of a multi-base expression
    /// that start at this type (`Condition.code` out of `AllergyIntolerance.code |
    /// Condition.code | …`). None when the definition has none (`_text`, `_content`).
    pub expression: Option<Expr>,
    /// Resource types a reference may point to; for expressions made only of
    /// `where(resolve() is T)` alternatives, just those `T`.
    pub targets: Vec<String>,
    /// The components of a composite parameter.
    pub components: Vec<Component>,
    /// The modifiers allowed (from the definition, else those of the type).
    pub modifiers: Vec<String>,
    /// The comparators allowed (from the definition, else all for ordered types).
    pub comparators: Vec<String>,
    /// Why values are not extracted for this parameter, or None when they are.
    pub unsupported: Option<String>,
    /// The FHIR types the expression yields (from the model), for coverage and diagnostics.
    pub value_types: BTreeSet<String>,
    /// Of those (and of the components'), the types that give no index values: free-text
    /// `string` for a date (`CarePlan.activity.detail.scheduled`), `Age` and `Range` for a
    /// date, an Attachment where a reference is expected…
    pub ignored_types: BTreeSet<String>,
    /// For a reference parameter whose values are those of other parameters of the same
    /// type that point to one resource type, which ones (see [`Derived`]).
    pub derived: Option<Derived>,
}

impl SearchParam {
    /// Whether values are extracted for this parameter.
    pub fn is_indexed(&self) -> bool {
        self.unsupported.is_none()
    }

    /// Whether a store needs rows of its own for this parameter: it is indexed and not
    /// [`Derived`] from others.
    pub fn is_stored(&self) -> bool {
        self.is_indexed() && self.derived.is_none()
    }
}

/// A reference parameter that says no more than other reference parameters of the same
/// type, restricted to one target type: `Observation.patient`
/// (`Observation.subject.where(resolve() is Patient)`) is `Observation.subject`'s values that
/// point to a Patient; `AuditEvent.patient` is `agent`'s and `entity`'s. A store can answer
/// it from the sources' rows instead of writing the same references twice.
///
/// The one difference: `resolve()` needs a reference it can read the type from, where the
/// sources' rows also carry the type of a Reference that has only `type` and an identifier
/// (or a URL of another server). Answered from the sources, such a Reference to a Patient
/// is found by `patient:identifier`, as a reader of `Reference.type` would expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The codes of the parameters whose rows hold the values, sorted.
    pub sources: Vec<String>,
    /// The resource type the values point to.
    pub target: String,
}

/// One component of a composite parameter.
#[derive(Debug, Clone)]
pub struct Component {
    /// The canonical URL of the parameter that defines this component's type.
    pub definition: String,
    /// Its code on the same resource type (`code`, `value-quantity`), when it has one.
    pub code: Option<String>,
    /// The component's type.
    pub kind: ParamType,
    /// The expression, relative to each item of the composite's own expression.
    pub expression: Expr,
}

/// Search parameters by resource type.
#[derive(Debug)]
pub struct SearchRegistry {
    by_type: HashMap<String, Vec<SearchParam>>,
}

/// Why a SearchParameter Bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The gzip stream is corrupt.
    #[error("cannot decompress the search parameters: {0}")]
    Gzip(#[from] std::io::Error),
    /// The JSON is not a Bundle of SearchParameters.
    #[error("cannot parse the search parameters: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct RawBundle {
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    resource: RawParam,
}

#[derive(Deserialize)]
struct RawParam {
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: ParamType,
    #[serde(default)]
    description: String,
    expression: Option<String>,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    component: Vec<RawComponent>,
    #[serde(default)]
    modifier: Vec<String>,
    #[serde(default)]
    comparator: Vec<String>,
}

#[derive(Deserialize)]
struct RawComponent {
    definition: String,
    expression: String,
}

impl SearchRegistry {
    /// Builds the registry from a gzipped SearchParameter Bundle, typing expressions with
    /// `defs`. Parameters whose expression cannot be parsed, typed or extracted are kept,
    /// with [`SearchParam::unsupported`] saying why.
    pub fn from_bundle_gz(bytes: &[u8], defs: &Definitions) -> Result<Self, RegistryError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut json)?;
        let bundle: RawBundle = serde_json::from_slice(&json)?;
        let raws: Vec<RawParam> = bundle.entry.into_iter().map(|e| e.resource).collect();
        let by_url: HashMap<&str, &RawParam> = raws.iter().map(|p| (p.url.as_str(), p)).collect();

        let mut by_type: HashMap<String, Vec<SearchParam>> = defs
            .resource_types()
            .map(|t| (t.to_owned(), Vec::new()))
            .collect();
        for raw in &raws {
            let parsed = raw.expression.as_deref().map(fhirpath::parse);
            for base in &raw.base {
                let types: Vec<&str> = match base.as_str() {
                    "Resource" | "DomainResource" => defs
                        .resource_types()
                        .filter(|t| fhirpath::is_type(defs, t, base))
                        .collect(),
                    t => vec![t],
                };
                for ty in types {
                    let Some(params) = by_type.get_mut(ty) else {
                        continue;
                    };
                    params.push(build(defs, raw, parsed.as_ref(), ty, &by_url));
                }
            }
        }
        for params in by_type.values_mut() {
            // Codes are unique per type in R4 (a test checks), so lookups can bisect.
            params.sort_by(|a, b| a.code.cmp(&b.code));
        }
        // Component codes: the parameter on the same type whose URL the component names.
        let codes: HashMap<(String, String), String> = by_type
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter()
                    .map(|p| ((t.clone(), p.url.clone()), p.code.clone()))
            })
            .collect();
        for (ty, params) in &mut by_type {
            for p in params {
                for c in &mut p.components {
                    c.code = codes.get(&(ty.clone(), c.definition.clone())).cloned();
                }
            }
        }
        for params in by_type.values_mut() {
            let derived: Vec<Option<Derived>> = params.iter().map(|p| derive(p, params)).collect();
            for (p, d) in params.iter_mut().zip(derived) {
                p.derived = d;
            }
        }
        Ok(SearchRegistry { by_type })
    }

    /// The parameters of a resource type, sorted by code; empty for an unknown type.
    pub fn params_for(&self, resource_type: &str) -> &[SearchParam] {
        self.by_type.get(resource_type).map_or(&[], Vec::as_slice)
    }

    /// The parameter `code` of a resource type.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        let params = self.params_for(resource_type);
        params
            .binary_search_by(|p| p.code.as_str().cmp(code))
            .ok()
            .map(|i| &params[i])
    }

    /// The resource types, in no particular order.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }
}

/// The parameter `raw` as it applies to `ty`.
fn build(
    defs: &Definitions,
    raw: &RawParam,
    parsed: Option<&Result<Expr, fhirpath::ParseError>>,
    ty: &str,
    by_url: &HashMap<&str, &RawParam>,
) -> SearchParam {
    let mut param = SearchParam {
        code: raw.code.clone(),
        url: raw.url.clone(),
        kind: raw.kind,
        description: raw.description.clone(),
        expression: None,
        targets: raw.target.clone(),
        components: Vec::new(),
        modifiers: if raw.modifier.is_empty() {
            raw.kind.modifiers().iter().map(|m| m.to_string()).collect()
        } else {
            raw.modifier.clone()
        },
        comparators: if raw.comparator.is_empty() && raw.kind.is_ordered() {
            ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
                .map(String::from)
                .to_vec()
        } else {
            raw.comparator.clone()
        },
        unsupported: None,
        value_types: BTreeSet::new(),
        ignored_types: BTreeSet::new(),
        derived: None,
    };
    let expr = match parsed {
        None => {
            param.unsupported = Some("the definition has no expression".into());
            return param;
        }
        Some(Err(e)) => {
            param.unsupported = Some(e.to_string());
            return param;
        }
        Some(Ok(e)) => e,
    };
    let Some(expr) = for_type(defs, expr, ty) else {
        param.unsupported = Some(format!("no alternative of the expression applies to {ty}"));
        return param;
    };
    if let Some(targets) = resolve_targets(&expr) {
        param.targets = targets;
    }
    param.unsupported = check(defs, raw, &expr, ty, by_url, &mut param);
    param.expression = Some(expr);
    param
}

/// Types the expression (and components) and checks every value type can be extracted;
/// fills `value_types` and `components`. Returns why not, if not.
fn check(
    defs: &Definitions,
    raw: &RawParam,
    expr: &Expr,
    ty: &str,
    by_url: &HashMap<&str, &RawParam>,
    param: &mut SearchParam,
) -> Option<String> {
    if raw.kind == ParamType::Special {
        return Some("special parameters need their own extraction".into());
    }
    let types = match fhirpath::result_types(defs, expr, ty, ty) {
        Ok(t) => t,
        Err(e) => return Some(e.to_string()),
    };
    param.value_types = types.clone();
    if raw.kind != ParamType::Composite {
        return partition(raw.kind, &types, &mut param.ignored_types);
    }
    if raw.component.is_empty() {
        return Some("a composite without components".into());
    }
    let mut defs_of: Vec<&RawParam> = Vec::new();
    for c in &raw.component {
        let Some(def) = by_url.get(c.definition.as_str()) else {
            return Some(format!("component {} is not defined", c.definition));
        };
        defs_of.push(def);
    }
    uncross(&raw.component, &mut defs_of);
    for (c, def) in raw.component.iter().zip(defs_of) {
        let cexpr = match fhirpath::parse(&c.expression) {
            Ok(e) => e,
            Err(e) => return Some(format!("component {}: {e}", c.expression)),
        };
        let mut ctypes = BTreeSet::new();
        for focus in &types {
            match fhirpath::result_types(defs, &cexpr, focus, ty) {
                Ok(ts) => ctypes.extend(ts),
                Err(e) => return Some(format!("component {}: {e}", c.expression)),
            }
        }
        if let Some(why) = partition(def.kind, &ctypes, &mut param.ignored_types) {
            return Some(format!("component {}: {why}", c.expression));
        }
        param.components.push(Component {
            definition: def.url.clone(),
            code: None,
            kind: def.kind,
            expression: cexpr,
        });
    }
    None
}

/// Adds the types that cannot be indexed as `kind` to `ignored`; an error when none can.
fn partition(
    kind: ParamType,
    types: &BTreeSet<String>,
    ignored: &mut BTreeSet<String>,
) -> Option<String> {
    let bad: Vec<&String> = types.iter().filter(|t| !indexable(kind, t)).collect();
    if bad.len() == types.len() {
        let names: Vec<&str> = bad.iter().map(|t| t.as_str()).collect();
        return Some(format!(
            "cannot index {} as {}",
            names.join(", "),
            kind.as_str()
        ));
    }
    ignored.extend(bad.into_iter().cloned());
    None
}

/// Repairs composites whose R4 definition pairs each component expression with the other
/// component's parameter (`DocumentReference-relationship` gives `code` the definition of
/// `relatesTo.target` and `target` that of `relatesTo.code`): when the two definitions'
/// expressions end in each other's component expression, they are swapped.
fn uncross(components: &[RawComponent], defs: &mut [&RawParam]) {
    let ends_with = |def: &RawParam, expr: &str| {
        def.expression
            .as_deref()
            .is_some_and(|e| e.ends_with(&format!(".{expr}")))
    };
    if let [a, b] = components {
        if !ends_with(defs[0], &a.expression)
            && !ends_with(defs[1], &b.expression)
            && ends_with(defs[0], &b.expression)
            && ends_with(defs[1], &a.expression)
        {
            defs.swap(0, 1);
        }
    }
}

/// The union of the alternatives of `expr` that start at `ty` (or at a type it is, such as
/// `Resource`), or at an element (`name | alias` in `InsurancePlan-name`: relative to the
/// resource).
fn for_type(defs: &Definitions, expr: &Expr, ty: &str) -> Option<Expr> {
    expr.union_operands()
        .into_iter()
        .filter(|alt| match alt.root_ident() {
            Some(r) if r.starts_with(|c: char| c.is_ascii_uppercase()) => {
                fhirpath::is_type(defs, ty, r)
            }
            _ => true,
        })
        .cloned()
        .reduce(|a, b| Expr::Binary(BinOp::Union, Box::new(a), Box::new(b)))
}

/// `param` as a [`Derived`] of `others` (the parameters of its type), when it is one: an
/// indexed reference parameter whose every alternative is `X.where(resolve() is T)`, one
/// `T` for all, and whose `X`s are exactly the alternatives of other indexed reference
/// parameters that are not themselves filtered.
fn derive(param: &SearchParam, others: &[SearchParam]) -> Option<Derived> {
    if param.kind != ParamType::Reference || !param.is_indexed() {
        return None;
    }
    let mut target: Option<&str> = None;
    let mut receivers: Vec<&Expr> = Vec::new();
    for alt in param.expression.as_ref()?.union_operands() {
        let (receiver, t) = resolve_filter(alt)?;
        if target.is_some_and(|known| known != t) {
            return None;
        }
        target = Some(t);
        receivers.push(receiver);
    }
    let mut covered = vec![false; receivers.len()];
    let mut sources = Vec::new();
    for other in others {
        if other.code == param.code || other.kind != ParamType::Reference || !other.is_indexed() {
            continue;
        }
        let Some(expr) = &other.expression else {
            continue;
        };
        let alts = expr.union_operands();
        if alts.iter().any(|a| resolve_filter(a).is_some()) {
            continue;
        }
        let places: Option<Vec<usize>> = alts
            .iter()
            .map(|a| receivers.iter().position(|r| r == a))
            .collect();
        if let Some(places) = places {
            places.into_iter().for_each(|i| covered[i] = true);
            sources.push(other.code.clone());
        }
    }
    if sources.is_empty() || covered.contains(&false) {
        return None;
    }
    sources.sort();
    Some(Derived {
        sources,
        target: target?.to_owned(),
    })
}

/// `(X, T)` of `X.where(resolve() is T)`.
fn resolve_filter(alt: &Expr) -> Option<(&Expr, &str)> {
    let Expr::Call(Some(receiver), Function::Where, args) = alt else {
        return None;
    };
    let [Expr::Type(TypeOp::Is, inner, t)] = args.as_slice() else {
        return None;
    };
    matches!(**inner, Expr::Call(None, Function::Resolve, _)).then_some((&**receiver, t.as_str()))
}

/// The `T`s when every alternative ends in `.where(resolve() is T)`.
fn resolve_targets(expr: &Expr) -> Option<Vec<String>> {
    let mut targets: Vec<String> = Vec::new();
    for alt in expr.union_operands() {
        let (_, t) = resolve_filter(alt)?;
        if !targets.iter().any(|known| known == t) {
            targets.push(t.to_owned());
        }
    }
    Some(targets)
}
