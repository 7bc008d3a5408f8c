//! Criteria as SQL: each [`Criterion`] of a search becomes a condition over the `search_*`
//! index tables, with the value semantics listed in the parent module's documentation.

use fhir::search::{
    Criterion, DateSearch, Derived, Match, Modifier, ParamType, Prefix, ReferenceSearch,
    SearchRegistry, SearchRequest, SearchValue, SortKey, SystemFilter, TokenSearch,
};
use sea_query::{Alias, Cond, Condition, Expr, LikeExpr, Query, SelectStatement, SimpleExpr};
use time::OffsetDateTime;

use super::{kind_of, KeyKind, SortExpr};
use crate::store::schema::Resources as R;
use crate::store::{micros, StoreError, StoreResult};

/// The table of a parameter type's index rows.
fn table(kind: ParamType) -> Alias {
    Alias::new(match kind {
        ParamType::String => "search_string",
        ParamType::Token => "search_token",
        ParamType::Reference => "search_reference",
        ParamType::Date => "search_date",
        ParamType::Number => "search_number",
        ParamType::Quantity => "search_quantity",
        // Composite and special parameters have no rows of their own; callers handle them.
        ParamType::Uri | ParamType::Composite | ParamType::Special => "search_uri",
    })
}

/// The index param name of component `i` of composite `code`.
fn component_param(code: &str, i: usize) -> String {
    format!("{code}${i}")
}

/// `LIKE` pattern text with `%`, `_` and the escape character escaped.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn like(col: Expr, pattern: String) -> SimpleExpr {
    col.like(LikeExpr::new(pattern).escape('\\'))
}

/// References of index table alias `s` that point into this server: relative ones (no URL)
/// and absolute ones under the base URL.
pub(super) fn local_reference(s: &Alias, base_url: Option<&str>) -> Condition {
    let url = Expr::col((s.clone(), Alias::new("url")));
    let mut cond = Cond::any().add(url.clone().is_null());
    if let Some(base) = base_url {
        cond = cond.add(like(
            url,
            format!("{}/%", escape_like(base.trim_end_matches('/'))),
        ));
    }
    cond
}

/// The rows of index table alias `s` that hold parameter `code`'s values for resources of
/// `types` (of every type when empty). For a type where the parameter is
/// [derived](fhir::search::Derived), those are its sources' rows that point to its target.
/// Its own code stays in the condition: a database indexed before the parameter was derived
/// keeps such rows until `reindex` (or the resource's next write), and they say the same.
pub(super) fn param_rows(
    registry: &SearchRegistry,
    s: &Alias,
    types: &[&str],
    code: &str,
) -> Condition {
    let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
    let every: Vec<&str>;
    let types = if types.is_empty() {
        every = registry.resource_types().collect();
        &every
    } else {
        types
    };
    let mut derived: Vec<(&Derived, Vec<&str>)> = Vec::new();
    let mut plain = false;
    for &t in types {
        let Some(p) = registry.param(t, code) else {
            continue;
        };
        match &p.derived {
            None => plain = true,
            Some(d) => match derived.iter_mut().find(|(known, _)| *known == d) {
                Some((_, ts)) => ts.push(t),
                None => derived.push((d, vec![t])),
            },
        }
    }
    let sources = |d: &Derived| -> Vec<String> {
        std::iter::once(code.to_owned())
            .chain(d.sources.iter().cloned())
            .collect()
    };
    match derived.as_slice() {
        [] => Cond::all().add(col("param").eq(code)),
        [(d, _)] if !plain => Cond::all()
            .add(col("param").is_in(sources(d)))
            .add(col("target_type").eq(d.target.as_str())),
        groups => groups
            .iter()
            .fold(Cond::any().add(col("param").eq(code)), |any, (d, ts)| {
                any.add(
                    Cond::all()
                        .add(col("resource_type").is_in(ts.iter().copied()))
                        .add(col("param").is_in(sources(d)))
                        .add(col("target_type").eq(d.target.as_str())),
                )
            }),
    }
}

/// How a criterion on one resource type finds its resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// `r.id IN (SELECT s.id …)`: the matching ids listed once, from the value index.
    Ids,
    /// A correlated `EXISTS`, probed per candidate through the `(resource_type, id)` index:
    /// for a range beside an equality criterion. On the Synthea set, a LOINC code and a
    /// date range: 10 ms this way, 70 ms listing the date's ids too (most Observations).
    PerCandidate,
}

/// Builds the conditions of one search, handing out table aliases.
pub(super) struct SqlBuilder<'a> {
    registry: &'static SearchRegistry,
    base_url: Option<&'a str>,
    aliases: usize,
}

impl<'a> SqlBuilder<'a> {
    pub(super) fn new(base_url: Option<&'a str>) -> Self {
        SqlBuilder {
            registry: fhir::search::r4_search(),
            base_url,
            aliases: 0,
        }
    }

    pub(super) fn alias(&mut self, prefix: &str) -> Alias {
        self.aliases += 1;
        Alias::new(format!("{prefix}{}", self.aliases))
    }

    /// The resources `r` a search may return: current, not deleted, of the types searched,
    /// meeting every criterion.
    pub(super) fn candidates(&mut self, r: &Alias, req: &SearchRequest) -> StoreResult<Condition> {
        let types: Vec<&str> = req.resource_types.iter().map(String::as_str).collect();
        let mut cond = Cond::all().add(Expr::col((r.clone(), R::Deleted)).eq(0));
        match types.as_slice() {
            [] => {}
            [one] => cond = cond.add(Expr::col((r.clone(), R::ResourceType)).eq(*one)),
            many => {
                cond = cond.add(Expr::col((r.clone(), R::ResourceType)).is_in(many.iter().copied()))
            }
        }
        // A range (date, number, quantity) matches much of its type; when an equality
        // criterion finds the candidates, probing the range per candidate beats listing
        // every resource in it (see `Lookup`).
        let equality = req.criteria.iter().any(|c| {
            matches!(c, Criterion::Match(m)
                if !m.param.kind.is_ordered()
                    && m.param.kind != ParamType::Composite
                    && m.modifier != Some(Modifier::Not)
                    && !is_resource_column(&m.param.code))
        });
        for c in &req.criteria {
            let lookup = match c {
                Criterion::Match(m) if equality && m.param.kind.is_ordered() => {
                    Lookup::PerCandidate
                }
                _ => Lookup::Ids,
            };
            cond = cond.add(self.criterion(r, &types, c, lookup)?);
        }
        Ok(cond)
    }

    /// The resources `r` in the compartment of `Patient/<patient>`: that Patient, and those
    /// whose compartment parameters (per the CompartmentDefinition, for `types` or, when
    /// empty, every type) reference it locally.
    pub(super) fn compartment(&mut self, r: &Alias, types: &[String], patient: &str) -> Condition {
        let compartment = fhir::compartment::patient_compartment();
        let s = self.alias("k");
        let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
        let types: Vec<&str> = if types.is_empty() {
            compartment.resource_types().collect()
        } else {
            types.iter().map(String::as_str).collect()
        };
        let mut links = Cond::any();
        let mut any_link = false;
        for t in types {
            let params = compartment.params(t);
            if !params.is_empty() {
                any_link = true;
                // A parameter derived from others that point to a Patient is their rows
                // (the target type is required below).
                let mut codes: Vec<&str> = Vec::new();
                for code in params {
                    codes.push(code);
                    if let Some(d) = self
                        .registry
                        .param(t, code)
                        .and_then(|p| p.derived.as_ref())
                    {
                        if d.target == "Patient" {
                            codes.extend(d.sources.iter().map(String::as_str));
                        }
                    }
                }
                links = links.add(
                    Cond::all()
                        .add(col("resource_type").eq(t))
                        .add(col("param").is_in(codes)),
                );
            }
        }
        let itself = Cond::all()
            .add(Expr::col((r.clone(), R::ResourceType)).eq("Patient"))
            .add(Expr::col((r.clone(), R::Id)).eq(patient));
        if !any_link {
            return Cond::any().add(itself);
        }
        let refs = Query::select()
            .expr(Expr::cust("1"))
            .from_as(Alias::new("search_reference"), s.clone())
            .cond_where(
                Cond::all()
                    .add(
                        Expr::col((s.clone(), R::ResourceType))
                            .equals((r.clone(), R::ResourceType)),
                    )
                    .add(Expr::col((s.clone(), R::Id)).equals((r.clone(), R::Id)))
                    .add(col("target_type").eq("Patient"))
                    .add(col("target_id").eq(patient))
                    .add(local_reference(&s, self.base_url))
                    .add(links),
            )
            .take();
        Cond::any().add(itself).add(Expr::exists(refs))
    }

    /// Rows `s` of resource `r` (of one of `types`) holding parameter `code`'s values (see
    /// [`param_rows`]).
    fn owned(&self, s: &Alias, r: &Alias, types: &[&str], code: &str) -> Condition {
        Cond::all()
            .add(Expr::col((s.clone(), R::ResourceType)).equals((r.clone(), R::ResourceType)))
            .add(Expr::col((s.clone(), R::Id)).equals((r.clone(), R::Id)))
            .add(param_rows(self.registry, s, types, code))
    }

    /// `s.resource_type = r.resource_type AND s.id = r.id AND s.param = code`: the rows of
    /// exactly one index `param`, such as a composite's component.
    pub(super) fn owned_by(s: &Alias, r: &Alias, param: &str) -> Condition {
        Cond::all()
            .add(Expr::col((s.clone(), R::ResourceType)).equals((r.clone(), R::ResourceType)))
            .add(Expr::col((s.clone(), R::Id)).equals((r.clone(), R::Id)))
            .add(Expr::col((s.clone(), Alias::new("param"))).eq(param))
    }

    /// The component kinds of composite `code` on one of `types`.
    pub(super) fn components(&self, types: &[&str], code: &str) -> Vec<ParamType> {
        let found = if types.is_empty() {
            self.registry
                .resource_types()
                .find_map(|t| self.registry.param(t, code))
        } else {
            types.iter().find_map(|t| self.registry.param(t, code))
        };
        found
            .map(|p| p.components.iter().map(|c| c.kind).collect())
            .unwrap_or_default()
    }

    pub(super) fn criterion(
        &mut self,
        r: &Alias,
        types: &[&str],
        c: &Criterion,
        lookup: Lookup,
    ) -> StoreResult<Condition> {
        Ok(match c {
            Criterion::Match(m) if is_resource_column(&m.param.code) => self.on_resource(r, m),
            Criterion::Missing { param, missing } if is_resource_column(&param.code) => {
                // Every resource has an id and a lastUpdated.
                if *missing {
                    Cond::all().add(Expr::cust("1 = 0"))
                } else {
                    Cond::all()
                }
            }
            Criterion::Match(m) if m.param.kind == ParamType::Composite => {
                let kinds = self.components(types, &m.param.code);
                let mut any = Cond::any();
                for v in &m.values {
                    if let SearchValue::Composite(parts) = v {
                        any = any.add(self.composite(r, &m.param.code, &kinds, parts)?);
                    }
                }
                any
            }
            Criterion::Match(m) => {
                let s = self.alias("s");
                let mut any = Cond::any();
                for v in &m.values {
                    any = any.add(self.value(&s, m.modifier.as_ref(), v)?);
                }
                let param = if m.modifier == Some(Modifier::OfType) {
                    format!("{}{}", m.param.code, super::super::index::OF_TYPE_SUFFIX)
                } else {
                    m.param.code.clone()
                };
                match types {
                    // One type: the ids the index rows name, found once (see `ids_matching`).
                    [one] if m.modifier != Some(Modifier::Not) && lookup == Lookup::Ids => {
                        Cond::all().add(
                            Expr::col((r.clone(), R::Id)).in_subquery(self.ids_matching(
                                &s,
                                one,
                                m.param.kind,
                                &param,
                                any,
                            )),
                        )
                    }
                    _ => {
                        let exists =
                            Expr::exists(self.rows(&s, r, types, m.param.kind, &param, any));
                        if m.modifier == Some(Modifier::Not) {
                            Cond::all().add(exists).not()
                        } else {
                            Cond::all().add(exists)
                        }
                    }
                }
            }
            Criterion::Missing { param, missing } => {
                let (kind, code) = if param.kind == ParamType::Composite {
                    let kinds = self.components(types, &param.code);
                    (
                        kinds.first().copied().unwrap_or(ParamType::Token),
                        component_param(&param.code, 0),
                    )
                } else {
                    (param.kind, param.code.clone())
                };
                let s = self.alias("s");
                let exists = Expr::exists(self.rows(&s, r, types, kind, &code, Cond::all()));
                if *missing {
                    Cond::all().add(exists).not()
                } else {
                    Cond::all().add(exists)
                }
            }
            Criterion::Chain {
                param,
                target_type,
                criterion,
            } => {
                let s = self.alias("s");
                let t = self.alias("t");
                let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
                let inner = self.criterion(&t, &[target_type.as_str()], criterion, Lookup::Ids)?;
                // On one type, not correlated with `r` (as in `ids_matching`): the database
                // finds the targets meeting the inner criterion, then the references to them.
                let one = match types {
                    [one] => Some(*one),
                    _ => None,
                };
                let rows = match one {
                    Some(one) => self.of_type(&s, one, &param.code),
                    None => self.owned(&s, r, types, &param.code),
                };
                let cond = rows
                    .add(col("target_type").eq(target_type.as_str()))
                    .add(local_reference(&s, self.base_url))
                    .add(
                        Expr::col((t.clone(), R::ResourceType))
                            .equals((s.clone(), Alias::new("target_type"))),
                    )
                    .add(Expr::col((t.clone(), R::Id)).equals((s.clone(), Alias::new("target_id"))))
                    .add(Expr::col((t.clone(), R::Deleted)).eq(0))
                    .add(inner);
                let mut select = Query::select();
                select
                    .from_as(Alias::new("search_reference"), s.clone())
                    .from_as(R::Table, t.clone())
                    .cond_where(cond);
                match one {
                    Some(_) => Cond::all().add(
                        Expr::col((r.clone(), R::Id))
                            .in_subquery(select.column((s.clone(), R::Id)).take()),
                    ),
                    None => Cond::all().add(Expr::exists(select.expr(Expr::cust("1")).take())),
                }
            }
            Criterion::Has {
                source_type,
                param,
                criterion,
            } => {
                let s = self.alias("s");
                let t = self.alias("t");
                let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
                let inner = self.criterion(&t, &[source_type.as_str()], criterion, Lookup::Ids)?;
                let cond = Cond::all()
                    .add(col("target_type").equals((r.clone(), R::ResourceType)))
                    .add(col("target_id").equals((r.clone(), R::Id)))
                    .add(param_rows(
                        self.registry,
                        &s,
                        &[source_type.as_str()],
                        &param.code,
                    ))
                    .add(col("resource_type").eq(source_type.as_str()))
                    .add(local_reference(&s, self.base_url))
                    .add(
                        Expr::col((t.clone(), R::ResourceType))
                            .equals((s.clone(), R::ResourceType)),
                    )
                    .add(Expr::col((t.clone(), R::Id)).equals((s.clone(), R::Id)))
                    .add(Expr::col((t.clone(), R::Deleted)).eq(0))
                    .add(inner);
                Cond::all().add(Expr::exists(
                    Query::select()
                        .expr(Expr::cust("1"))
                        .from_as(Alias::new("search_reference"), s.clone())
                        .from_as(R::Table, t.clone())
                        .cond_where(cond)
                        .take(),
                ))
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a search criterion this server cannot run: {other:?}"
                )))
            }
        })
    }

    /// `_id` or `_lastUpdated` (see [`is_resource_column`]) on `r`'s own columns.
    fn on_resource(&self, r: &Alias, m: &Match) -> Condition {
        let mut any = Cond::any();
        for v in &m.values {
            any = any.add(match v {
                // The id is a token without a system: a code, with no system or `|code`.
                SearchValue::Token(TokenSearch::Code {
                    system: SystemFilter::Any | SystemFilter::Absent,
                    code,
                }) => match code {
                    Some(code) => Cond::all().add(Expr::col((r.clone(), R::Id)).eq(code.as_str())),
                    None => Cond::all(),
                },
                SearchValue::Date(d) => {
                    // lastUpdated has millisecond precision: [t, t + 1 ms).
                    let lo = Expr::col((r.clone(), R::LastUpdated));
                    let hi = Expr::expr(Expr::col((r.clone(), R::LastUpdated)).add(1000));
                    date(lo, hi, d)
                }
                _ => Cond::all().add(Expr::cust("1 = 0")),
            });
        }
        if m.modifier == Some(Modifier::Not) {
            any.not()
        } else {
            Cond::all().add(any)
        }
    }

    /// `SELECT 1 FROM <table of kind> s WHERE <s holds r's values of code> AND cond`.
    pub(super) fn rows(
        &self,
        s: &Alias,
        r: &Alias,
        types: &[&str],
        kind: ParamType,
        code: &str,
        cond: Condition,
    ) -> SelectStatement {
        Query::select()
            .expr(Expr::cust("1"))
            .from_as(table(kind), s.clone())
            .cond_where(self.owned(s, r, types, code).add(cond))
            .take()
    }

    /// `SELECT s.id FROM <table of kind> s WHERE s.resource_type = resource_type AND <s
    /// holds code's values> AND cond`: not correlated with the candidate, so the database
    /// runs it once and looks the candidates up by id. SQLite runs a correlated `EXISTS` for
    /// every resource of the type instead, and on its value index the correlation (`id`)
    /// is not part of the key: `Observation?subject=Patient/x` over the Synthea set read
    /// each Observation's row against all of that Patient's rows, 26 s for 50 results;
    /// this form takes milliseconds.
    fn ids_matching(
        &self,
        s: &Alias,
        resource_type: &str,
        kind: ParamType,
        code: &str,
        cond: Condition,
    ) -> SelectStatement {
        Query::select()
            .column((s.clone(), R::Id))
            .from_as(table(kind), s.clone())
            .cond_where(self.of_type(s, resource_type, code).add(cond))
            .take()
    }

    /// Rows `s` of resources of `resource_type` holding parameter `code`'s values, whichever
    /// resource they belong to (see [`param_rows`]).
    fn of_type(&self, s: &Alias, resource_type: &str, code: &str) -> Condition {
        Cond::all()
            .add(Expr::col((s.clone(), R::ResourceType)).eq(resource_type))
            .add(param_rows(self.registry, s, &[resource_type], code))
    }

    /// One composite value: rows for every component, tied by `grp`.
    pub(super) fn composite(
        &mut self,
        r: &Alias,
        code: &str,
        kinds: &[ParamType],
        parts: &[SearchValue],
    ) -> StoreResult<Condition> {
        // Built from the last component outwards: each one's EXISTS nests inside the
        // previous one's, correlated on its `grp`.
        let aliases: Vec<Alias> = parts.iter().map(|_| self.alias("c")).collect();
        let mut nested: Option<SimpleExpr> = None;
        for (i, part) in parts.iter().enumerate().rev() {
            let kind = kinds.get(i).copied().unwrap_or(ParamType::Token);
            let c = &aliases[i];
            let mut cond = if i == 0 {
                Self::owned_by(c, r, &component_param(code, i))
            } else {
                let first = &aliases[0];
                Self::owned_by(c, first, &component_param(code, i)).add(
                    Expr::col((c.clone(), Alias::new("grp")))
                        .equals((first.clone(), Alias::new("grp"))),
                )
            };
            cond = cond.add(self.value(c, None, part)?);
            if let Some(n) = nested.take() {
                cond = cond.add(n);
            }
            nested = Some(Expr::exists(
                Query::select()
                    .expr(Expr::cust("1"))
                    .from_as(table(kind), c.clone())
                    .cond_where(cond)
                    .take(),
            ));
        }
        Ok(Cond::all().add(nested.unwrap_or_else(|| Expr::cust("1 = 0"))))
    }

    /// The condition on index row `s` for one search value.
    pub(super) fn value(
        &mut self,
        s: &Alias,
        modifier: Option<&Modifier>,
        value: &SearchValue,
    ) -> StoreResult<Condition> {
        let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
        let cond = Cond::all();
        Ok(match value {
            SearchValue::String(text) => match modifier {
                Some(Modifier::Exact) => cond.add(col("exact").eq(text.as_str())),
                Some(Modifier::Contains) => {
                    cond.add(like(col("normalized"), format!("%{}%", escape_like(text))))
                }
                _ => cond.add(like(col("normalized"), format!("{}%", escape_like(text)))),
            },
            SearchValue::Token(TokenSearch::Code { system, code }) => {
                let cond = match system {
                    SystemFilter::Any => cond,
                    SystemFilter::Absent => cond.add(col("system").is_null()),
                    SystemFilter::Is(sys) => cond.add(col("system").eq(sys.as_str())),
                };
                match code {
                    Some(code) => cond.add(col("code").eq(code.as_str())),
                    None => cond,
                }
            }
            SearchValue::Token(TokenSearch::Text(text)) => {
                cond.add(like(col("text"), format!("{}%", escape_like(text))))
            }
            SearchValue::Token(TokenSearch::OfType {
                system,
                code,
                value,
            }) => cond
                .add(col("system").eq(system.as_str()))
                .add(col("code").eq(format!("{code}|{value}"))),
            SearchValue::Reference(reference) => self.reference(s, reference),
            SearchValue::Date(d) => date(col("lo"), col("hi"), d),
            SearchValue::Number(n) => number(&col("value"), n),
            SearchValue::Quantity(q) => {
                let mut cond = number(&col("value"), &q.number);
                match (&q.system, &q.code) {
                    (Some(sys), code) => {
                        cond = cond.add(col("system").eq(sys.as_str()));
                        if let Some(code) = code {
                            cond = cond.add(col("code").eq(code.as_str()));
                        }
                    }
                    (None, Some(code)) => {
                        cond = cond.add(
                            Cond::any()
                                .add(col("code").eq(code.as_str()))
                                .add(col("unit").eq(code.as_str())),
                        );
                    }
                    (None, None) => {}
                }
                cond
            }
            SearchValue::Uri(uri) => match modifier {
                Some(Modifier::Below) => Cond::any().add(col("uri").eq(uri.as_str())).add(like(
                    col("uri"),
                    format!("{}/%", escape_like(uri.trim_end_matches('/'))),
                )),
                Some(Modifier::Above) => cond.add(col("uri").is_in(uri_prefixes(uri))),
                _ => cond.add(col("uri").eq(uri.as_str())),
            },
            SearchValue::Composite(_) => {
                return Err(StoreError::Corrupt(
                    "a composite value outside a composite parameter".into(),
                ))
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a search value this server cannot run: {other:?}"
                )))
            }
        })
    }

    pub(super) fn reference(&self, s: &Alias, reference: &ReferenceSearch) -> Condition {
        let col = |n: &str| Expr::col((s.clone(), Alias::new(n)));
        match reference {
            ReferenceSearch::Url { url, version } => {
                if let Some(local) = self.local_url(url) {
                    return self.reference(
                        s,
                        &ReferenceSearch::Local {
                            target_type: Some(local.0),
                            id: local.1,
                            version: version.clone(),
                        },
                    );
                }
                let cond = Cond::all().add(col("url").eq(url.as_str()));
                match version {
                    Some(v) => cond.add(col("target_version").eq(v.as_str())),
                    None => cond,
                }
            }
            ReferenceSearch::Local {
                target_type,
                id,
                version,
            } => {
                let mut cond = Cond::all()
                    .add(col("target_id").eq(id.as_str()))
                    .add(local_reference(s, self.base_url));
                if let Some(t) = target_type {
                    cond = cond.add(col("target_type").eq(t.as_str()));
                }
                if let Some(v) = version {
                    cond = cond.add(col("target_version").eq(v.as_str()));
                }
                cond
            }
            ReferenceSearch::Identifier { system, value } => {
                let cond = match system {
                    SystemFilter::Any => Cond::all(),
                    SystemFilter::Absent => Cond::all().add(col("ident_system").is_null()),
                    SystemFilter::Is(sys) => Cond::all().add(col("ident_system").eq(sys.as_str())),
                };
                match value {
                    Some(v) => cond.add(col("ident_value").eq(v.as_str())),
                    None => cond.add(col("ident_value").is_not_null()),
                }
            }
            // A kind of reference search this version does not know matches nothing.
            _ => Cond::any(),
        }
    }

    /// `Type/id` of an absolute URL under the server's base.
    pub(super) fn local_url(&self, url: &str) -> Option<(String, String)> {
        let base = self.base_url?.trim_end_matches('/');
        let rest = url.strip_prefix(base)?.strip_prefix('/')?;
        let (ty, id) = rest.split_once('/')?;
        (fhir::definitions::r4().is_resource_type(ty) && fhir::validate::is_valid_id(id))
            .then(|| (ty.to_owned(), id.to_owned()))
    }

    /// The keys of the order: `_sort`'s, or newest first.
    pub(super) fn sort_keys(&mut self, r: &Alias, req: &SearchRequest) -> Vec<SortExpr> {
        if req.sort.is_empty() {
            return vec![SortExpr {
                expr: Expr::col((r.clone(), R::LastUpdated)).into(),
                descending: true,
                nullable: false,
                kind: KeyKind::Int,
            }];
        }
        let types: Vec<&str> = req.resource_types.iter().map(String::as_str).collect();
        req.sort
            .iter()
            .map(|k| self.sort_key(r, &types, k))
            .collect()
    }

    /// `(SELECT MIN|MAX(column) FROM <index> s WHERE <s belongs to r>)`.
    pub(super) fn sort_key(&mut self, r: &Alias, types: &[&str], key: &SortKey) -> SortExpr {
        match key.param.code.as_str() {
            "_id" => {
                return SortExpr {
                    expr: Expr::col((r.clone(), R::Id)).into(),
                    descending: key.descending,
                    nullable: false,
                    kind: KeyKind::Text,
                }
            }
            "_lastUpdated" => {
                return SortExpr {
                    expr: Expr::col((r.clone(), R::LastUpdated)).into(),
                    descending: key.descending,
                    nullable: false,
                    kind: KeyKind::Int,
                }
            }
            _ => {}
        }
        let s = self.alias("o");
        let column = match key.param.kind {
            ParamType::String => "normalized",
            ParamType::Token => "code",
            ParamType::Reference => "target_id",
            ParamType::Date if key.descending => "hi",
            ParamType::Date => "lo",
            ParamType::Number | ParamType::Quantity => "value",
            _ => "uri",
        };
        let col = Expr::col((s.clone(), Alias::new(column)));
        let agg = if key.descending { col.max() } else { col.min() };
        let sub = Query::select()
            .expr(agg)
            .from_as(table(key.param.kind), s.clone())
            .cond_where(self.owned(&s, r, types, &key.param.code))
            .take();
        SortExpr {
            expr: SimpleExpr::SubQuery(None, Box::new(sub.into_sub_query_statement())),
            descending: key.descending,
            nullable: true,
            kind: kind_of(key.param.kind),
        }
    }
}

/// Search parameters answered from `resources` itself rather than from index rows: every
/// resource has exactly one id and one lastUpdated, so rows for them would only repeat the
/// table (two rows per resource, written on every write).
pub(crate) fn is_resource_column(code: &str) -> bool {
    matches!(code, "_id" | "_lastUpdated")
}

/// A date comparison of the range `[lo, hi)` with `d` (see the module doc).
fn date(lo: Expr, hi: Expr, d: &DateSearch) -> Condition {
    let (s0, e0) = (micros(d.start), micros(d.end));
    let cond = Cond::all();
    let eq = || Cond::all().add(lo.clone().gte(s0)).add(hi.clone().lte(e0));
    match d.prefix {
        Prefix::Eq => eq(),
        Prefix::Ne => eq().not(),
        Prefix::Gt => cond.add(hi.gt(e0)),
        Prefix::Lt => cond.add(lo.lt(s0)),
        Prefix::Ge => Cond::any().add(hi.clone().gt(e0)).add(eq()),
        Prefix::Le => Cond::any().add(lo.clone().lt(s0)).add(eq()),
        Prefix::Sa => cond.add(lo.gte(e0)),
        Prefix::Eb => cond.add(hi.lte(s0)),
        Prefix::Ap => {
            let now = micros(OffsetDateTime::now_utc());
            let distance = (now.saturating_sub(s0))
                .unsigned_abs()
                .max(now.saturating_sub(e0).unsigned_abs());
            let gap = i64::try_from(distance / 10)
                .unwrap_or(i64::MAX)
                .max(86_400_000_000);
            cond.add(lo.lt(e0.saturating_add(gap)))
                .add(hi.gt(s0.saturating_sub(gap)))
        }
    }
}

/// A number comparison on `col` (see the module doc).
fn number(col: &Expr, n: &fhir::search::NumberSearch) -> Condition {
    let v = n.value.value;
    let in_range = || {
        Cond::all()
            .add(col.clone().gte(n.low))
            .add(col.clone().lt(n.high))
    };
    match n.prefix {
        Prefix::Eq => in_range(),
        Prefix::Ne => in_range().not(),
        Prefix::Gt | Prefix::Sa => Cond::all().add(col.clone().gt(v)),
        Prefix::Lt | Prefix::Eb => Cond::all().add(col.clone().lt(v)),
        Prefix::Ge => Cond::all().add(col.clone().gte(v)),
        Prefix::Le => Cond::all().add(col.clone().lte(v)),
        Prefix::Ap => {
            let margin = v.abs() * 0.1;
            Cond::all()
                .add(col.clone().gte(n.low - margin))
                .add(col.clone().lte(n.high + margin))
        }
    }
}

/// `uri` and each prefix of it that ends before a `/` (for `:above`).
fn uri_prefixes(uri: &str) -> Vec<String> {
    let mut out = vec![uri.to_owned()];
    let scheme_end = uri.find("://").map_or(0, |i| i + 3);
    let mut rest = uri.trim_end_matches('/');
    while let Some(i) = rest.rfind('/') {
        if i < scheme_end {
            break;
        }
        rest = &rest[..i];
        out.push(rest.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn above_lists_the_prefixes() {
        assert_eq!(
            uri_prefixes("http://a.org/fhir/vs/x"),
            [
                "http://a.org/fhir/vs/x",
                "http://a.org/fhir/vs",
                "http://a.org/fhir",
                "http://a.org"
            ]
        );
        assert_eq!(escape_like("50%_\\"), "50\\%\\_\\\\");
    }
}
