//! Search: a validated [`SearchRequest`] turned into one SQL query over the `search_*` index
//! tables (written with each version by the write path), the page of matches it selects,
//! and the resources `_include`/`_revinclude` add (https://hl7.org/fhir/R4/search.html).
//!
//! # The query
//! Candidates are current, non-deleted rows of `resources` (alias `r`) of the searched
//! types. Each criterion is a condition over the index table of its parameter's type: the
//! values of one criterion are OR-ed inside it, criteria are AND-ed. On one resource type
//! a criterion is `r.id IN (SELECT s.id …)`, the matching ids found once through the value
//! index; a date, number or quantity criterion beside an equality one, `:not`,
//! `:missing` and searches over several types are an `EXISTS` correlated on
//! `(resource_type, id)`, probed per candidate (`:not` and `:missing=true` as
//! `NOT EXISTS`). A chain is the same over `search_reference` joined to the target's
//! `resources` row, on which the nested criterion applies; `_has` is an `EXISTS` from the
//! referring side. Composite values match
//! when each component's row matches with the same `grp`. A reference parameter
//! [derived](fhir::search::Derived) from others (`Observation.patient`, the `subject`s that
//! point to a Patient) has no rows of its own: wherever a query names it (criteria, chains,
//! `_has`, `_sort`, includes, the Patient compartment), it reads its sources' rows with that
//! target type.
//!
//! Value semantics, per type (search value `[s, e)`, stored date range `[lo, hi)`):
//! - string: prefix of the normalized form (`LIKE 'x%'`), `:contains` a substring of it,
//!   `:exact` equality with the text as written.
//! - token: `system|code`, `|code` (no system), `system|`, `code`; `:text` a prefix of the
//!   normalized display/text.
//! - reference: `Type/id` and `id` on the target columns, only for references that are
//!   local (no URL, or a URL under the server's base); an absolute URL on `url` (one under
//!   the base counts as local); `:identifier` on the reference's identifier.
//! - date: `eq` `s ≤ lo ∧ hi ≤ e`; `ne` its negation; `gt` `hi > e`; `lt` `lo < s`; `ge`
//!   `gt ∨ eq`; `le` `lt ∨ eq`; `sa` `lo ≥ e`; `eb` `hi ≤ s`; `ap` the ranges overlap once
//!   the search range is widened on both sides by 10 % of its distance from now (at least
//!   one day).
//! - number, quantity: `eq`/`ne` against the search value's precision range `[low, high)`;
//!   `gt lt ge le` (and `sa`/`eb` as `gt`/`lt`) against the value itself; `ap` within
//!   `[low − 10 %, high + 10 %]`. Quantity units: `system|code` on `system` and `code`,
//!   `||code` on `code` or `unit`.
//! - uri: equality; `:below` the URI itself or anything under it after a `/`; `:above` the
//!   URI or any `/`-prefix of it.
//!
//! # Order and paging
//! `_sort` keys sort on the smallest (ascending) or largest (descending) value a resource
//! has for the parameter (dates: `lo` ascending, `hi` descending), resources without a
//! value last; without `_sort`, newest `last_updated` first. `(resource_type, id)` breaks
//! ties, so the order is total. Pages are cut by keyset, not offset: a [`Cursor`] holds the
//! sort key of the entry a page ends (or starts) at, and the next page is what sorts after
//! it when that page is asked for. So resources written while a client pages never shift
//! others between pages: nothing present and unchanged through the paging is skipped or
//! repeated. (A resource *updated* meanwhile so that its sort key moves across the cursor
//! may be seen twice or not at all: it changed.)
//!
//! # Totals
//! `_total=accurate` and `estimate` count with the same criteria (an exact count serves as
//! the estimate). Without `_total`, the total is given only when known for free: a first
//! page that holds every match. `_total=none` gives none.

use std::collections::{HashMap, HashSet};

use fhir::search::{Include, ParamType, SearchRequest, TotalMode};
use sea_query::{Alias, Cond, Condition, Expr, Order, Query, SimpleExpr, Value};
use sea_query_binder::SqlxBinder;
use serde_json::Value as Json;
use sqlx::any::AnyRow;
use sqlx::Row;

mod criteria;

pub(crate) use criteria::is_resource_column;
use criteria::{local_reference, param_rows, SqlBuilder};

use super::schema::{ResourceVersions as V, Resources as R};
use super::{select_versions, version_from_row, Store, StoreResult, VersionRecord};

/// How many rounds `:iterate` includes run at most.
const ITERATE_ROUNDS: usize = 4;
/// Ids per `IN (…)` list.
const CHUNK: usize = 500;

/// A search to run: the request, where the page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    /// The validated request.
    pub request: &'a SearchRequest,
    /// The server's FHIR base URL (`http://host/fhir`): absolute references under it are
    /// local ones.
    pub base_url: Option<&'a str>,
    /// Where the page starts; None for the first page.
    pub cursor: Option<&'a Cursor>,
    /// Page size (the request's `_count`, defaulted by the caller).
    pub count: u64,
    /// Only resources in this Patient's compartment (the caller's patient context).
    pub compartment: Option<&'a str>,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// The matches, in order.
    pub matches: Vec<VersionRecord>,
    /// Resources added by `_include` / `_revinclude`, none of them a match, each once.
    pub included: Vec<VersionRecord>,
    /// The number of matches, when asked for or known for free.
    pub total: Option<u64>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
    /// Where the previous page ends, if this is not the first page.
    pub previous: Option<Cursor>,
}

/// One sort-key value of an entry, as stored in a [`Cursor`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// The resource has no value for the key.
    Null,
    /// An instant (micros) or date bound.
    Int(i64),
    /// A number or quantity value.
    Float(f64),
    /// Text: string, token, reference or uri values.
    Text(String),
}

/// A paging position: the sort key of one entry and which side of it a page lies on.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The page holds what sorts before the entry (a `previous` link), else after it.
    pub backward: bool,
    /// The entry's sort-key values, one per key of the order.
    pub keys: Vec<KeyValue>,
    /// The entry's resource type (the first tie-break).
    pub resource_type: String,
    /// The entry's id (the last tie-break).
    pub id: String,
}

impl Cursor {
    /// The cursor as one URL parameter value (JSON: direction, type, id, then the keys, with
    /// text as `s:…`, floats as `f:` and their bits in hex, so they round-trip exactly).
    pub fn encode(&self) -> String {
        let mut items = vec![
            Json::from(if self.backward { "b" } else { "a" }),
            Json::from(self.resource_type.as_str()),
            Json::from(self.id.as_str()),
        ];
        items.extend(self.keys.iter().map(|k| match k {
            KeyValue::Null => Json::Null,
            KeyValue::Int(i) => Json::from(*i),
            KeyValue::Float(f) => Json::from(format!("f:{:016x}", f.to_bits())),
            KeyValue::Text(s) => Json::from(format!("s:{s}")),
        }));
        Json::Array(items).to_string()
    }

    /// Reads what [`Cursor::encode`] wrote; None for anything else.
    pub fn decode(raw: &str) -> Option<Cursor> {
        let Json::Array(items) = serde_json::from_str::<Json>(raw).ok()? else {
            return None;
        };
        let mut items = items.into_iter();
        let backward = match items.next()?.as_str()? {
            "a" => false,
            "b" => true,
            _ => return None,
        };
        let resource_type = items.next()?.as_str()?.to_owned();
        let id = items.next()?.as_str()?.to_owned();
        let keys = items
            .map(|k| match k {
                Json::Null => Some(KeyValue::Null),
                Json::Number(n) => n.as_i64().map(KeyValue::Int),
                Json::String(s) => {
                    if let Some(text) = s.strip_prefix("s:") {
                        Some(KeyValue::Text(text.to_owned()))
                    } else {
                        let bits = u64::from_str_radix(s.strip_prefix("f:")?, 16).ok()?;
                        Some(KeyValue::Float(f64::from_bits(bits)))
                    }
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Cursor {
            backward,
            keys,
            resource_type,
            id,
        })
    }

    /// Whether this cursor was made for the order of `request` (same number and kinds of
    /// keys); a cursor from another search is refused rather than misread.
    pub fn fits(&self, request: &SearchRequest) -> bool {
        let kinds = key_kinds(request);
        self.keys.len() == kinds.len()
            && self.keys.iter().zip(kinds).all(|(v, k)| {
                matches!(
                    (v, k),
                    (KeyValue::Null, _)
                        | (KeyValue::Int(_), KeyKind::Int)
                        | (KeyValue::Float(_), KeyKind::Float)
                        | (KeyValue::Text(_), KeyKind::Text)
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Int,
    Float,
    Text,
}

fn kind_of(param: ParamType) -> KeyKind {
    match param {
        ParamType::Date => KeyKind::Int,
        ParamType::Number | ParamType::Quantity => KeyKind::Float,
        _ => KeyKind::Text,
    }
}

/// The kinds of the keys of the order `request` asks for.
fn key_kinds(request: &SearchRequest) -> Vec<KeyKind> {
    if request.sort.is_empty() {
        vec![KeyKind::Int]
    } else {
        request.sort.iter().map(|k| kind_of(k.param.kind)).collect()
    }
}

/// The ids of the current resources matching `request`'s criteria, at most `limit`, read
/// on `conn` (a write transaction's connection, which sees its own writes).
pub(super) async fn matching_ids(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    request: &SearchRequest,
    base_url: Option<&str>,
    limit: u64,
) -> StoreResult<Vec<String>> {
    let r = Alias::new("r");
    let filter = SqlBuilder::new(base_url).candidates(&r, request)?;
    let (text, values) = Query::select()
        .column((r.clone(), R::Id))
        .from_as(R::Table, r.clone())
        .cond_where(filter)
        .order_by((r.clone(), R::Id), Order::Asc)
        .limit(limit)
        .build_any_sqlx(super::query_builder(backend));
    let rows = sqlx::query_with(&text, values).fetch_all(conn).await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}

/// The rows of `table` (which has `resource_type` and `id` columns) that belong to resources
/// in the compartment of `Patient/<patient>` as their current versions are indexed: what a
/// patient-context token may list in history, with the same criterion search uses.
pub(crate) fn in_compartment(table: &Alias, base_url: Option<&str>, patient: &str) -> Condition {
    SqlBuilder::new(base_url).compartment(table, &[], patient)
}

impl Store {
    /// Runs a search: one page of matches, what its includes add, and the total if asked.
    #[tracing::instrument(name = "db.search", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn search(&self, query: &SearchQuery<'_>) -> StoreResult<SearchPage> {
        let req = query.request;
        let mut sql = SqlBuilder::new(query.base_url);
        let r = Alias::new("r");
        let mut filter = sql.candidates(&r, req)?;
        if let Some(patient) = query.compartment {
            filter = filter.add(sql.compartment(&r, &req.resource_types, patient));
        }

        let wants_total = matches!(req.total, Some(TotalMode::Accurate | TotalMode::Estimate))
            || req.count_only();
        let mut total = None;
        if wants_total {
            let (text, values) = Query::select()
                .expr_as(Expr::col((r.clone(), R::Id)).count(), Alias::new("n"))
                .from_as(R::Table, r.clone())
                .cond_where(filter.clone())
                .build_any_sqlx(self.builder());
            let row = sqlx::query_with(&text, values)
                .fetch_one(&self.read)
                .await?;
            total = Some(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0));
        }
        if req.count_only() {
            return Ok(SearchPage {
                total,
                ..SearchPage::default()
            });
        }

        // The inner query: candidates with their sort keys; the outer one: the page.
        let keys = sql.sort_keys(&r, req);
        let mut inner = Query::select();
        inner
            .column((r.clone(), R::ResourceType))
            .column((r.clone(), R::Id))
            .expr_as(Expr::col((r.clone(), R::Seq)), Alias::new("match_seq"))
            .from_as(R::Table, r.clone())
            .cond_where(filter);
        for (i, key) in keys.iter().enumerate() {
            inner.expr_as(key.expr.clone(), key_alias(i));
        }
        let m = Alias::new("m");
        let mut outer = select_versions();
        outer
            .from_clear()
            .from_subquery(inner, m.clone())
            .inner_join(
                V::Table,
                Expr::col((V::Table, V::Seq)).equals((m.clone(), Alias::new("match_seq"))),
            );
        for i in 0..keys.len() {
            outer.expr_as(Expr::col((m.clone(), key_alias(i))), key_alias(i));
        }
        let backward = query.cursor.is_some_and(|c| c.backward);
        if let Some(cursor) = query.cursor {
            outer.cond_where(after_cursor(&m, &keys, cursor));
        }
        for (i, key) in keys.iter().enumerate() {
            let col = Expr::col((m.clone(), key_alias(i)));
            if key.nullable {
                // Nulls last in the forward order.
                let nulls = if backward { Order::Desc } else { Order::Asc };
                outer.order_by_expr(col.clone().is_null(), nulls);
            }
            outer.order_by_expr(col.into(), direction(key.descending != backward));
        }
        let tie = direction(backward);
        outer
            .order_by((m.clone(), R::ResourceType), tie.clone())
            .order_by((m.clone(), R::Id), tie)
            .limit(query.count + 1);
        if let (Some(offset), None) = (req.offset, query.cursor) {
            outer.offset(super::bindable(offset));
        }
        let (text, values) = outer.build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&text, values)
            .fetch_all(&self.read)
            .await?;
        let mut page = rows
            .iter()
            .map(|row| Ok((version_from_row(row)?, read_keys(row, &keys)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let more = page.len() as u64 > query.count;
        page.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
        if backward {
            page.reverse();
        }
        let cursor_at = |(v, k): &(VersionRecord, Vec<KeyValue>), backward| Cursor {
            backward,
            keys: k.clone(),
            resource_type: v.resource_type.clone(),
            id: v.id.clone(),
        };
        let (next, previous) = if backward {
            (
                page.last().map(|e| cursor_at(e, false)),
                more.then(|| page.first().map(|e| cursor_at(e, true)))
                    .flatten(),
            )
        } else {
            (
                more.then(|| page.last().map(|e| cursor_at(e, false)))
                    .flatten(),
                query
                    .cursor
                    .and_then(|_| page.first().map(|e| cursor_at(e, true))),
            )
        };
        let matches: Vec<VersionRecord> = page.into_iter().map(|(v, _)| v).collect();
        if total.is_none()
            && req.total.is_none()
            && query.cursor.is_none()
            && req.offset.unwrap_or(0) == 0
            && !more
        {
            total = Some(matches.len() as u64);
        }
        let included = self.includes(req, query.base_url, &matches).await?;
        Ok(SearchPage {
            matches,
            included,
            total,
            next,
            previous,
        })
    }

    /// What `_include` and `_revinclude` add to `matches`: non-iterating ones once, on the
    /// matches; `:iterate` ones also on what was added, for a few rounds.
    async fn includes(
        &self,
        req: &SearchRequest,
        base_url: Option<&str>,
        matches: &[VersionRecord],
    ) -> StoreResult<Vec<VersionRecord>> {
        if req.includes.is_empty() && req.revincludes.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen: HashSet<(String, String)> = matches
            .iter()
            .map(|v| (v.resource_type.clone(), v.id.clone()))
            .collect();
        let mut added = Vec::new();
        let mut frontier: Vec<(String, String)> = seen.iter().cloned().collect();
        for round in 0..ITERATE_ROUNDS {
            if frontier.is_empty() {
                break;
            }
            let mut found: Vec<(String, String)> = Vec::new();
            for inc in req.includes.iter().filter(|i| round == 0 || i.iterate) {
                found.extend(self.linked(inc, false, base_url, &frontier).await?);
            }
            for inc in req.revincludes.iter().filter(|i| round == 0 || i.iterate) {
                found.extend(self.linked(inc, true, base_url, &frontier).await?);
            }
            let fresh: Vec<(String, String)> = found
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            let versions = self.current_versions(&fresh).await?;
            frontier = versions
                .iter()
                .map(|v| (v.resource_type.clone(), v.id.clone()))
                .collect();
            added.extend(versions);
        }
        added.sort_by(|a, b| (&a.resource_type, &a.id).cmp(&(&b.resource_type, &b.id)));
        Ok(added)
    }

    /// The resources one include links `from` to: targets of their references (`_include`)
    /// or resources referring to them (`_revinclude`).
    async fn linked(
        &self,
        inc: &Include,
        reverse: bool,
        base_url: Option<&str>,
        from: &[(String, String)],
    ) -> StoreResult<Vec<(String, String)>> {
        let s = Alias::new("s");
        let c = |name: &str| Expr::col((s.clone(), Alias::new(name)));
        let (near_type, near_id, far_type, far_id) = if reverse {
            ("target_type", "target_id", "resource_type", "id")
        } else {
            ("resource_type", "id", "target_type", "target_id")
        };
        let chunks = group_by_type(from, CHUNK);
        let registry = fhir::search::r4_search();
        let mut out = Vec::new();
        for (source, params) in scopes(inc, reverse) {
            for chunk in &chunks {
                let mut cond = Cond::all()
                    .add(c(near_type).eq(chunk.0.as_str()))
                    .add(c(near_id).is_in(chunk.1.iter().map(String::as_str)))
                    .add(c("target_type").is_not_null())
                    .add(c("target_id").is_not_null())
                    .add(local_reference(&s, base_url));
                if let Some(source) = source {
                    cond = cond.add(c("resource_type").eq(source));
                }
                match params.as_slice() {
                    [] => {}
                    // A named parameter may be derived from others (`Observation:patient`).
                    [code] if inc.param.is_some() => {
                        cond = cond.add(param_rows(registry, &s, source.as_slice(), code));
                    }
                    // A wildcard's list holds the sources of any derived parameter in it.
                    many => cond = cond.add(c("param").is_in(many.iter().copied())),
                }
                if let Some(target) = &inc.target_type {
                    cond = cond.add(c("target_type").eq(target.as_str()));
                }
                let (text, values) = Query::select()
                    .distinct()
                    .expr_as(c(far_type), Alias::new("far_type"))
                    .expr_as(c(far_id), Alias::new("far_id"))
                    .from_as(Alias::new("search_reference"), s.clone())
                    .cond_where(cond)
                    .build_any_sqlx(self.builder());
                for row in sqlx::query_with(&text, values)
                    .fetch_all(&self.read)
                    .await?
                {
                    out.push((row.try_get("far_type")?, row.try_get("far_id")?));
                }
            }
        }
        Ok(out)
    }

    /// The current versions of `keys` that exist and are not deleted.
    async fn current_versions(&self, keys: &[(String, String)]) -> StoreResult<Vec<VersionRecord>> {
        let mut out = Vec::new();
        for (ty, ids) in group_by_type(keys, CHUNK) {
            let (text, values) = select_versions()
                .inner_join(
                    R::Table,
                    Expr::col((R::Table, R::Seq)).equals((V::Table, V::Seq)),
                )
                .and_where(Expr::col((R::Table, R::Deleted)).eq(0))
                .and_where(Expr::col((R::Table, R::ResourceType)).eq(ty.as_str()))
                .and_where(Expr::col((R::Table, R::Id)).is_in(ids.iter().map(String::as_str)))
                .build_any_sqlx(self.builder());
            for row in sqlx::query_with(&text, values)
                .fetch_all(&self.read)
                .await?
            {
                out.push(version_from_row(&row)?);
            }
        }
        Ok(out)
    }
}

/// Where one include looks, as (source type, parameters) pairs, each one statement; no
/// source type or no parameters means any. A forward include starts from the resources'
/// own rows, so it takes what it names. A reverse one (`_revinclude`) names its source
/// types and parameters even for `*` and `Type:*`, every indexed reference parameter of
/// each type, so that the value index (resource_type, param, target_id, …) serves it: there
/// is no index on reference targets alone, which would cost each reference row of every
/// write one more B-tree insert, at a random place, for the sake of these wildcards.
fn scopes(inc: &Include, reverse: bool) -> Vec<(Option<&str>, Vec<&str>)> {
    let named: Vec<&str> = inc.param.as_deref().into_iter().collect();
    if !reverse {
        return vec![(inc.source_type.as_deref(), named)];
    }
    let registry = fhir::search::r4_search();
    let types: Vec<&str> = match &inc.source_type {
        Some(t) => vec![t.as_str()],
        None => registry.resource_types().collect(),
    };
    types
        .into_iter()
        .filter_map(|t| {
            let params: Vec<&str> = if named.is_empty() {
                registry
                    .params_for(t)
                    .iter()
                    .filter(|p| p.kind == ParamType::Reference && p.is_indexed())
                    .map(|p| p.code.as_str())
                    .collect()
            } else {
                named.clone()
            };
            (!params.is_empty()).then_some((Some(t), params))
        })
        .collect()
}

/// `keys` grouped by type, in chunks of at most `chunk` ids.
fn group_by_type(keys: &[(String, String)], chunk: usize) -> Vec<(String, Vec<String>)> {
    let mut by_type: HashMap<&str, Vec<String>> = HashMap::new();
    for (t, id) in keys {
        by_type.entry(t.as_str()).or_default().push(id.clone());
    }
    let mut out = Vec::new();
    for (t, ids) in by_type {
        for part in ids.chunks(chunk) {
            out.push((t.to_owned(), part.to_vec()));
        }
    }
    out
}

fn key_alias(i: usize) -> Alias {
    Alias::new(format!("k{i}"))
}

fn direction(descending: bool) -> Order {
    if descending {
        Order::Desc
    } else {
        Order::Asc
    }
}

/// One key of the order.
struct SortExpr {
    expr: SimpleExpr,
    descending: bool,
    nullable: bool,
    kind: KeyKind,
}

fn read_keys(row: &AnyRow, keys: &[SortExpr]) -> StoreResult<Vec<KeyValue>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let name = format!("k{i}");
            Ok(match k.kind {
                KeyKind::Int => row
                    .try_get::<Option<i64>, _>(name.as_str())?
                    .map_or(KeyValue::Null, KeyValue::Int),
                KeyKind::Float => row
                    .try_get::<Option<f64>, _>(name.as_str())?
                    .map_or(KeyValue::Null, KeyValue::Float),
                KeyKind::Text => row
                    .try_get::<Option<String>, _>(name.as_str())?
                    .map_or(KeyValue::Null, KeyValue::Text),
            })
        })
        .collect()
}

fn key_value(v: &KeyValue) -> Value {
    match v {
        KeyValue::Null => Value::String(None),
        KeyValue::Int(i) => (*i).into(),
        KeyValue::Float(f) => (*f).into(),
        KeyValue::Text(s) => s.clone().into(),
    }
}

/// The rows of `m` that sort strictly after the cursor's entry (before it, for a backward
/// cursor), in the lexicographic order of the keys and then `(resource_type, id)`.
fn after_cursor(m: &Alias, keys: &[SortExpr], cursor: &Cursor) -> Condition {
    let back = cursor.backward;
    // Innermost: the tie-break on (resource_type, id), both ascending and never null.
    let rt = Expr::col((m.clone(), R::ResourceType));
    let id = Expr::col((m.clone(), R::Id));
    let (t, i) = (cursor.resource_type.as_str(), cursor.id.as_str());
    let mut cond = if back {
        Cond::any()
            .add(rt.clone().lt(t))
            .add(Cond::all().add(rt.eq(t)).add(id.lt(i)))
    } else {
        Cond::any()
            .add(rt.clone().gt(t))
            .add(Cond::all().add(rt.eq(t)).add(id.gt(i)))
    };
    for (n, key) in keys.iter().enumerate().rev() {
        let k = Expr::col((m.clone(), key_alias(n)));
        let value = cursor.keys.get(n).unwrap_or(&KeyValue::Null);
        let descending = key.descending != back;
        let (strictly, equal) = match value {
            // Nulls sort last going forward, first going backward.
            KeyValue::Null => (
                if back {
                    Cond::all().add(k.clone().is_not_null())
                } else {
                    Cond::any()
                },
                Cond::all().add(k.is_null()),
            ),
            v => {
                let v = key_value(v);
                let beyond = if descending {
                    k.clone().lt(v.clone())
                } else {
                    k.clone().gt(v.clone())
                };
                let strictly = if back {
                    Cond::all().add(beyond)
                } else {
                    Cond::any().add(beyond).add(k.clone().is_null())
                };
                (strictly, Cond::all().add(k.eq(v)))
            }
        };
        cond = Cond::any().add(strictly).add(equal.add(cond));
    }
    cond
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            backward: true,
            keys: vec![
                KeyValue::Null,
                KeyValue::Int(-5),
                KeyValue::Float(0.1),
                KeyValue::Text("a\"b,c".into()),
            ],
            resource_type: "Patient".into(),
            id: "p-1".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("[\"x\"]"), None);
        assert_eq!(Cursor::decode("nonsense"), None);
    }
}
