//! transaction and batch: `POST [base]` with a Bundle (http.html#transaction).
//!
//! A **transaction** runs every entry in one database transaction, so its resources and
//! their ledger entries commit together or not at all; the first failing entry fails the
//! whole Bundle with that entry's status and an OperationOutcome located at
//! `Bundle.entry[n]`. A **batch** runs each entry in a transaction of its own and reports
//! each entry's outcome in its response entry.
//!
//! Processing follows the spec: DELETE entries, then POST, then PUT and PATCH, then GET and
//! HEAD (which see the writes). Before any POST or PUT is written, each entry's target is
//! decided (a new id, or the match of `ifNoneExist` or of a conditional URL), and every
//! reference to an entry's `fullUrl` (`urn:uuid:`, `urn:oid:` or a URL) anywhere in the
//! Bundle's resources — extensions and contained resources included — is rewritten to that
//! target. Conditional references (`Patient?identifier=sys|val`) are resolved by search
//! within the transaction: no match or several fail the entry with 412. In a batch,
//! entries do not reference each other (the spec forbids it); conditional references are
//! still resolved.
//!
//! The response Bundle (`transaction-response`/`batch-response`) has one entry per request
//! entry, in request order, with `response.status`, `location`, `etag`, `lastModified`, and
//! the resource when `Prefer: return=representation` (the default) or an OperationOutcome
//! with `return=OperationOutcome`. A GET entry of a transaction runs after the commit: its
//! failure (404, say) is reported in its response entry and does not undo the writes.
//! History reads and operations are not supported inside a Bundle (400).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use fhir::bundle::{BundleKind, Entry, Method, RequestBundle};
use fhir::outcome::{Issue, IssueType, OperationOutcome};
use fhir::validate::ValidationError;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::search::searchset;
use super::{known_type, valid_id, write_context};
use crate::audit_trail::Touched;
use crate::auth::{Interaction, Principal};
use crate::http::bundle;
use crate::http::error::{ApiError, FHIR_JSON};
use crate::http::interactions::{self, Condition, PatchBody, Writer};
use crate::http::negotiate::{self, etag, Params, ReturnPreference};
use crate::http::response::base_url;
use crate::http::AppState;
use crate::store::{NewResource, Store, StoreError, VersionRecord, WriteTx};

/// `POST [base]` with a transaction or batch Bundle.
pub async fn transaction(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate::negotiate(&req, &Params::parse(req.query_string()))?;
    negotiate::require_json_body(&req)?;
    let body = negotiate::read_body(&req, payload, state.max_body_bytes).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let bundle = fhir::bundle::parse_request_bundle(&value)
        .map_err(|issues| ApiError::Invalid(ValidationError { issues }))?;
    drop(value);
    let base = base_url(&req, &state);
    let touched = state.audit.is_some().then(Mutex::default);
    let run = Run {
        store: &state.store,
        reader: Some((&state, &principal)),
        who: Writer::Principal(&principal),
        base: &base,
        prefer: negotiate::return_preference(req.headers()),
        touched: touched.as_ref(),
    };
    let context = write_context(&req);
    let kind = bundle.kind;
    let outcomes = match kind {
        BundleKind::Transaction => run.transaction(bundle, context).await?,
        BundleKind::Batch => run.batch(bundle, context).await,
    };
    // Only now: a failed transaction wrote nothing, so its event names no versions.
    if let Some(touched) = touched {
        let mut touched = touched.into_inner().unwrap_or_else(PoisonError::into_inner);
        touched.interaction(match kind {
            BundleKind::Transaction => "transaction",
            BundleKind::Batch => "batch",
        });
        crate::audit_trail::touch(&req, &state, |t| t.merge(touched));
    }
    let compact = bundle::render(kind.response_type(), None, Vec::new(), outcomes)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(bundle::formatted(compact, format)?))
}

/// Which resource an entry addresses: a logical id, or a condition still to resolve.
#[derive(Debug, Clone)]
enum Target {
    Id(String),
    Condition(Box<Condition>),
}

/// An entry, checked and ready to run.
#[derive(Debug)]
enum Op {
    Create {
        ty: String,
        resource: Value,
        if_none_exist: Option<Box<Condition>>,
    },
    Put {
        ty: String,
        target: Target,
        resource: Value,
        if_match: Option<i64>,
    },
    Patch {
        ty: String,
        target: Target,
        patch: PatchBody,
        if_match: Option<i64>,
    },
    Delete {
        ty: String,
        target: Target,
        if_match: Option<i64>,
    },
    Read {
        ty: String,
        id: String,
        version: Option<i64>,
    },
    Search {
        ty: Option<String>,
        query: Vec<(String, String)>,
    },
}

/// Where a create writes: a fresh id, or the resource its `ifNoneExist` matched.
#[derive(Debug, Clone)]
enum Assigned {
    New(String),
    Existing(String),
}

/// The response entry of one request entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Box<RawValue>>,
    response: EntryResponse,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResponse {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

fn raw(text: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(text).map_err(|e| ApiError::Store(StoreError::Corrupt(e.to_string())))
}

fn error_entry(error: &ApiError) -> ResponseEntry {
    ResponseEntry {
        full_url: None,
        resource: None,
        response: EntryResponse {
            status: status_text(error.status()),
            location: None,
            etag: None,
            last_modified: None,
            outcome: Some(error.outcome().to_json()),
        },
    }
}

/// Parses an `ifMatch` of a Bundle entry.
fn if_match(entry: &Entry) -> Result<Option<i64>, ApiError> {
    entry
        .if_match
        .as_deref()
        .map(|tag| {
            negotiate::parse_version_tag(tag).ok_or_else(|| {
                ApiError::BadRequest("ifMatch must be a version ETag such as W/\"3\"".into())
            })
        })
        .transpose()
}

/// The entry's resource, which must be of type `ty`, validated.
fn resource_of(entry: &mut Entry, ty: &str) -> Result<Value, ApiError> {
    let resource = entry.resource.take().unwrap_or(Value::Null);
    let actual = resource.get("resourceType").and_then(Value::as_str);
    if actual != Some(ty) {
        return Err(ApiError::BadRequest(format!(
            "the entry's resource is a {}, but its request.url is for {ty}",
            actual.unwrap_or("(no resourceType)")
        )));
    }
    fhir::validate::validate_resource(fhir::definitions::r4(), &resource)?;
    Ok(resource)
}

/// A PATCH entry's body: a FHIRPath Patch `Parameters`, or a `Binary` holding a JSON Patch.
fn patch_of(entry: &mut Entry) -> Result<PatchBody, ApiError> {
    let resource = entry.resource.take().unwrap_or(Value::Null);
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(PatchBody::FhirPath(resource)),
        Some("Binary") => {
            let content_type = resource.get("contentType").and_then(Value::as_str);
            let data = resource.get("data").and_then(Value::as_str).unwrap_or("");
            if content_type != Some("application/json-patch+json") {
                return Err(ApiError::BadRequest(
                    "a Binary PATCH entry must have contentType application/json-patch+json".into(),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| {
                    ApiError::BadRequest("the Binary's data is not valid base64".into())
                })?;
            interactions::patch_body("application/json-patch+json", &bytes)
        }
        _ => Err(ApiError::BadRequest(
            "a PATCH entry's resource is a Parameters (FHIRPath Patch) or a Binary (JSON Patch)"
                .into(),
        )),
    }
}

/// Checks an entry and turns it into what it will do.
fn plan(entry: &mut Entry, base: &str) -> Result<Op, ApiError> {
    let url = fhir::bundle::parse_request_url(&entry.url, base).map_err(ApiError::BadRequest)?;
    let segments: Vec<&str> = url.segments.iter().map(String::as_str).collect();
    let condition = |ty: &str| -> Result<Target, ApiError> {
        if url.query.is_empty() {
            Err(ApiError::BadRequest(format!(
                "{} {ty} needs an id or a condition",
                entry.method.as_str()
            )))
        } else {
            Ok(Target::Condition(Box::new(Condition::parse(
                ty, &url.query,
            )?)))
        }
    };
    let unsupported = || {
        ApiError::BadRequest(format!(
            "{} {} is not supported in a Bundle entry",
            entry.method.as_str(),
            entry.url
        ))
    };
    Ok(match (entry.method, segments.as_slice()) {
        (Method::Post, [ty]) => {
            let ty = known_type(ty)?.to_owned();
            let if_none_exist = entry
                .if_none_exist
                .as_deref()
                .map(|q| Condition::parse_query(&ty, q.trim_start_matches('?')).map(Box::new))
                .transpose()?;
            Op::Create {
                resource: resource_of(entry, &ty)?,
                ty,
                if_none_exist,
            }
        }
        (Method::Put, [ty, rest @ ..]) if rest.len() <= 1 => {
            let ty = known_type(ty)?.to_owned();
            let target = match rest {
                [id] => Target::Id(valid_id(id)?.to_owned()),
                _ => condition(&ty)?,
            };
            Op::Put {
                resource: resource_of(entry, &ty)?,
                target,
                if_match: if_match(entry)?,
                ty,
            }
        }
        (Method::Patch, [ty, rest @ ..]) if rest.len() <= 1 => {
            let ty = known_type(ty)?.to_owned();
            let target = match rest {
                [id] => Target::Id(valid_id(id)?.to_owned()),
                _ => condition(&ty)?,
            };
            Op::Patch {
                patch: patch_of(entry)?,
                target,
                if_match: if_match(entry)?,
                ty,
            }
        }
        (Method::Delete, [ty, rest @ ..]) if rest.len() <= 1 => {
            let ty = known_type(ty)?.to_owned();
            let target = match rest {
                [id] => Target::Id(valid_id(id)?.to_owned()),
                _ => condition(&ty)?,
            };
            Op::Delete {
                target,
                if_match: if_match(entry)?,
                ty,
            }
        }
        (Method::Get | Method::Head, [ty, id]) => Op::Read {
            ty: known_type(ty)?.to_owned(),
            id: valid_id(id)?.to_owned(),
            version: None,
        },
        (Method::Get | Method::Head, [ty, id, "_history", vid]) => {
            Op::Read {
                ty: known_type(ty)?.to_owned(),
                id: valid_id(id)?.to_owned(),
                version: Some(vid.parse().map_err(|_| {
                    ApiError::BadRequest(format!("'{vid}' is not a version number"))
                })?),
            }
        }
        (Method::Get | Method::Head, [ty]) if !ty.starts_with(['_', '$']) => Op::Search {
            ty: Some(known_type(ty)?.to_owned()),
            query: url.query.clone(),
        },
        (Method::Get | Method::Head, []) => Op::Search {
            ty: None,
            query: url.query.clone(),
        },
        _ => return Err(unsupported()),
    })
}

/// One Bundle being processed.
pub(crate) struct Run<'a> {
    /// Where the entries are written.
    pub store: &'a Store,
    /// Who reads, for GET entries (None: reads are not run, as in an import).
    pub reader: Option<(&'a AppState, &'a Principal)>,
    /// Who writes: every write entry is checked as the same request alone would be.
    pub who: Writer<'a>,
    /// The FHIR base URL references are relative to.
    pub base: &'a str,
    /// What response entries carry.
    pub prefer: ReturnPreference,
    /// Collects the versions written and read, for the request's AuditEvent (None: the
    /// trail is off, or there is no request, as in an import).
    pub touched: Option<&'a Mutex<Touched>>,
}

impl Run<'_> {
    /// Adds to what this Bundle touched, when the audit trail is listening.
    fn touch(&self, note: impl FnOnce(&mut Touched)) {
        if let Some(touched) = self.touched {
            note(&mut touched.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// Every entry in one database transaction.
    async fn transaction(
        &self,
        bundle: RequestBundle,
        context: crate::store::WriteContext,
    ) -> Result<Vec<ResponseEntry>, ApiError> {
        let mut tx = self.store.begin(context).await?;
        let (mut results, reads) = self.write_all(&mut tx, bundle).await?;
        tx.commit().await?;
        for (i, op) in reads {
            results[i] = Some(self.read(op).await.unwrap_or_else(|e| error_entry(&e)));
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The writes of a transaction on `tx`, which the caller commits: each entry's response
    /// (None for reads), and the reads, to run once the writes are committed.
    async fn write_all(
        &self,
        tx: &mut WriteTx,
        bundle: RequestBundle,
    ) -> Result<(Vec<Option<ResponseEntry>>, Vec<(usize, Op)>), ApiError> {
        let order = bundle.processing_order();
        let mut entries = bundle.entries;
        let mut ops = Vec::with_capacity(entries.len());
        for entry in &mut entries {
            ops.push(Some(
                plan(entry, self.base).map_err(|e| e.in_entry(entry.index))?,
            ));
        }
        let mut results: Vec<Option<ResponseEntry>> = entries.iter().map(|_| None).collect();
        let mut references: HashMap<String, String> = HashMap::new();

        // DELETE first, so that what follows sees the deletions.
        for &i in order
            .iter()
            .filter(|&&i| entries[i].method == Method::Delete)
        {
            let op = ops[i].take();
            results[i] = Some(
                self.write(tx, op, None, &mut references)
                    .await
                    .map_err(|e| e.in_entry(i))?,
            );
        }
        // Decide every target before writing anything, so references can point forward.
        let mut assigned: Vec<Option<Assigned>> = entries.iter().map(|_| None).collect();
        for &i in &order {
            let Some(op) = ops[i].as_mut() else { continue };
            let target = self.assign(tx, op).await.map_err(|e| e.in_entry(i))?;
            if let (Some(full_url), Some(reference)) =
                (&entries[i].full_url, target_reference(op, target.as_ref()))
            {
                references.insert(full_url.clone(), reference);
            }
            assigned[i] = target;
        }
        // New resources are written together (one statement on PostgreSQL), flushed before
        // anything that could observe them: an update, a patch, or a conditional
        // reference still to be looked up.
        let mut pending: Vec<(usize, NewResource)> = Vec::new();
        for &i in &order {
            if !matches!(
                entries[i].method,
                Method::Post | Method::Put | Method::Patch
            ) {
                continue;
            }
            match (ops[i].take(), assigned[i].take()) {
                (
                    Some(Op::Create {
                        ty, mut resource, ..
                    }),
                    Some(Assigned::New(id)),
                ) => {
                    self.who
                        .check(Interaction::Create, &ty, None, Some(&resource))
                        .map_err(|e| e.in_entry(i))?;
                    if has_unresolved(&resource, &references) {
                        self.flush(tx, &mut pending, &mut results).await?;
                    }
                    self.resolve(tx, &mut resource, &mut references)
                        .await
                        .map_err(|e| e.in_entry(i))?;
                    pending.push((
                        i,
                        NewResource {
                            resource_type: ty,
                            id,
                            resource,
                        },
                    ));
                }
                (op, target) => {
                    self.flush(tx, &mut pending, &mut results).await?;
                    results[i] = Some(
                        self.write(tx, op, target, &mut references)
                            .await
                            .map_err(|e| e.in_entry(i))?,
                    );
                }
            }
        }
        self.flush(tx, &mut pending, &mut results).await?;
        let reads = order
            .into_iter()
            .filter_map(|i| ops[i].take().map(|op| (i, op)))
            .collect();
        Ok((results, reads))
    }

    /// Writes the pending new resources of a transaction and fills in their responses.
    async fn flush(
        &self,
        tx: &mut WriteTx,
        pending: &mut Vec<(usize, NewResource)>,
        results: &mut [Option<ResponseEntry>],
    ) -> Result<(), ApiError> {
        let Some(&(first, _)) = pending.first() else {
            return Ok(());
        };
        let (indexes, mut items): (Vec<usize>, Vec<NewResource>) = pending.drain(..).unzip();
        let records = tx
            .create_many(&mut items)
            .await
            .map_err(|e| ApiError::from(e).in_entry(first))?;
        for (i, record) in indexes.into_iter().zip(records) {
            results[i] = Some(self.version_entry(StatusCode::CREATED, &record)?);
        }
        Ok(())
    }

    /// For `fhir-notary import`: the writes of a transaction Bundle on `tx`, which the
    /// caller commits. Returns (writes, reads skipped): reads mean nothing to an import.
    pub(crate) async fn import_transaction(
        &self,
        tx: &mut WriteTx,
        bundle: RequestBundle,
    ) -> Result<(usize, usize), ApiError> {
        let (results, reads) = self.write_all(tx, bundle).await?;
        Ok((results.iter().flatten().count(), reads.len()))
    }

    /// For `fhir-notary import`: one write entry (of a batch Bundle, or an NDJSON line) on
    /// `tx`, which the caller commits. Returns false for a read, which is skipped.
    pub(crate) async fn import_entry(
        &self,
        tx: &mut WriteTx,
        entry: &mut Entry,
    ) -> Result<bool, ApiError> {
        let mut op = plan(entry, self.base)?;
        if matches!(op, Op::Read { .. } | Op::Search { .. }) {
            return Ok(false);
        }
        let assigned = self.assign(tx, &mut op).await?;
        self.write(tx, Some(op), assigned, &mut HashMap::new())
            .await?;
        Ok(true)
    }

    /// Each entry on its own; a failure is that entry's response.
    async fn batch(
        &self,
        bundle: RequestBundle,
        context: crate::store::WriteContext,
    ) -> Vec<ResponseEntry> {
        let order = bundle.processing_order();
        let mut entries = bundle.entries;
        let mut results: Vec<Option<ResponseEntry>> = entries.iter().map(|_| None).collect();
        for i in order {
            let outcome = match plan(&mut entries[i], self.base) {
                Ok(op @ (Op::Read { .. } | Op::Search { .. })) => self.read(op).await,
                Ok(op) => self.write_alone(op, context.clone()).await,
                Err(e) => Err(e),
            };
            results[i] = Some(outcome.unwrap_or_else(|e| error_entry(&e)));
        }
        results.into_iter().flatten().collect()
    }

    /// A batch entry's write, in its own database transaction.
    async fn write_alone(
        &self,
        mut op: Op,
        context: crate::store::WriteContext,
    ) -> Result<ResponseEntry, ApiError> {
        let mut tx = self.store.begin(context).await?;
        let assigned = self.assign(&mut tx, &mut op).await?;
        let entry = self
            .write(&mut tx, Some(op), assigned, &mut HashMap::new())
            .await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Resolves the target of a create (new id or `ifNoneExist` match), a conditional
    /// update (its match, the body's id, or a new id) or a conditional patch (its match).
    async fn assign(&self, tx: &mut WriteTx, op: &mut Op) -> Result<Option<Assigned>, ApiError> {
        match op {
            Op::Create { if_none_exist, .. } => Ok(Some(match if_none_exist {
                Some(condition) => match condition.single_match(tx, self.base).await? {
                    Some(id) => Assigned::Existing(id),
                    None => Assigned::New(uuid::Uuid::new_v4().to_string()),
                },
                None => Assigned::New(uuid::Uuid::new_v4().to_string()),
            })),
            Op::Put {
                target: target @ Target::Condition(_),
                resource,
                ..
            } => {
                let Target::Condition(condition) = &*target else {
                    unreachable!("matched above")
                };
                let id =
                    interactions::conditional_update_target(tx, self.base, resource, condition)
                        .await?;
                interactions::set_id(resource, &id);
                *target = Target::Id(id);
                Ok(None)
            }
            Op::Patch {
                ty,
                target: target @ Target::Condition(_),
                ..
            } => {
                let Target::Condition(condition) = &*target else {
                    unreachable!("matched above")
                };
                let id = condition
                    .single_match(tx, self.base)
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("no {ty} matches {}", condition.display()))
                    })?;
                *target = Target::Id(id);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Runs a write entry on `tx`, its references rewritten first.
    async fn write(
        &self,
        tx: &mut WriteTx,
        op: Option<Op>,
        assigned: Option<Assigned>,
        references: &mut HashMap<String, String>,
    ) -> Result<ResponseEntry, ApiError> {
        let Some(op) = op else {
            return Err(ApiError::Internal("a Bundle entry ran twice".into()));
        };
        let written = match op {
            Op::Create {
                ty, mut resource, ..
            } => match assigned {
                Some(Assigned::Existing(id)) => {
                    interactions::existing(tx, self.who, &ty, &id).await?
                }
                Some(Assigned::New(id)) => {
                    self.resolve(tx, &mut resource, references).await?;
                    interactions::create(tx, self.who, &ty, resource, Some(&id)).await?
                }
                None => return Err(ApiError::Internal("a create entry without a target".into())),
            },
            Op::Put {
                ty,
                target: Target::Id(id),
                mut resource,
                if_match,
            } => {
                self.resolve(tx, &mut resource, references).await?;
                interactions::update(tx, self.who, &ty, &id, resource, if_match).await?
            }
            Op::Patch {
                ty,
                target: Target::Id(id),
                patch,
                if_match,
            } => {
                let patch = match patch {
                    PatchBody::Json(mut doc) => {
                        self.resolve(tx, &mut doc, references).await?;
                        PatchBody::Json(doc)
                    }
                    PatchBody::FhirPath(mut params) => {
                        self.resolve(tx, &mut params, references).await?;
                        PatchBody::FhirPath(params)
                    }
                };
                interactions::patch(tx, self.who, &ty, &id, &patch, if_match).await?
            }
            Op::Delete {
                ty,
                target,
                if_match,
            } => {
                let deleted = match target {
                    Target::Id(id) => interactions::delete(tx, self.who, &ty, &id, if_match)
                        .await?
                        .into_iter()
                        .collect(),
                    Target::Condition(c) => {
                        interactions::conditional_delete(tx, self.who, self.base, &ty, &c).await?
                    }
                };
                return Ok(ResponseEntry {
                    full_url: None,
                    resource: None,
                    response: EntryResponse {
                        status: status_text(StatusCode::NO_CONTENT),
                        location: None,
                        etag: match deleted.as_slice() {
                            [one] => Some(etag(one.version)),
                            _ => None,
                        },
                        last_modified: None,
                        outcome: None,
                    },
                });
            }
            Op::Put { .. } | Op::Patch { .. } | Op::Read { .. } | Op::Search { .. } => {
                return Err(ApiError::Internal(
                    "a Bundle entry reached the write step unresolved".into(),
                ))
            }
        };
        self.version_entry(written.status, &written.record)
    }

    /// Rewrites `value`'s references to Bundle entries and its conditional references.
    async fn resolve(
        &self,
        tx: &mut WriteTx,
        value: &mut Value,
        references: &mut HashMap<String, String>,
    ) -> Result<(), ApiError> {
        let mut pending = HashSet::new();
        fhir::bundle::for_each_reference(value, &mut |r| {
            if !references.contains_key(r) && fhir::bundle::conditional_reference(r).is_some() {
                pending.insert(r.to_owned());
            }
        });
        for reference in pending {
            let Some((ty, query)) = fhir::bundle::conditional_reference(&reference) else {
                continue;
            };
            let ty = known_type(ty)?;
            let condition = Condition::parse_query(ty, query)?;
            let id = condition
                .resolve(tx, self.base)
                .await
                .map_err(|e| match e {
                    ApiError::PreconditionFailed(m) => ApiError::PreconditionFailed(format!(
                        "the conditional reference '{reference}' is ambiguous: {m}"
                    )),
                    other => other,
                })?;
            let Some(id) = id else {
                return Err(ApiError::PreconditionFailed(format!(
                    "the conditional reference '{reference}' matches no resource"
                )));
            };
            let target = format!("{ty}/{id}");
            references.insert(reference, target);
        }
        fhir::bundle::rewrite_references(value, references);
        Ok(())
    }

    /// The response entry of a written (or matched) version.
    fn version_entry(
        &self,
        status: StatusCode,
        record: &VersionRecord,
    ) -> Result<ResponseEntry, ApiError> {
        self.touch(|t| t.version(record));
        let (resource, outcome) = match self.prefer {
            ReturnPreference::Minimal => (None, None),
            ReturnPreference::Representation => {
                (record.content.clone().map(raw).transpose()?, None)
            }
            ReturnPreference::OperationOutcome => (
                None,
                Some(
                    OperationOutcome::single(Issue::information(
                        IssueType::Informational,
                        format!(
                            "{} {}/{} version {}",
                            status_text(status),
                            record.resource_type,
                            record.id,
                            record.version
                        ),
                    ))
                    .to_json(),
                ),
            ),
        };
        Ok(ResponseEntry {
            full_url: Some(format!(
                "{}/{}/{}",
                self.base, record.resource_type, record.id
            )),
            resource,
            response: EntryResponse {
                status: status_text(status),
                location: Some(format!(
                    "{}/{}/_history/{}",
                    record.resource_type, record.id, record.version
                )),
                etag: Some(etag(record.version)),
                last_modified: Some(fhir::primitives::format_instant(record.last_updated)),
                outcome,
            },
        })
    }

    /// A GET or HEAD entry, as its reader may see it.
    async fn read(&self, op: Op) -> Result<ResponseEntry, ApiError> {
        let Some((state, principal)) = self.reader else {
            return Err(ApiError::BadRequest("read entries are not run here".into()));
        };
        match op {
            Op::Read { ty, id, version } => {
                let interaction = if version.is_some() {
                    Interaction::Vread
                } else {
                    Interaction::Read
                };
                principal.authorize(interaction, Some(&ty), None)?;
                let record = match version {
                    Some(v) => self.store.read_version(&ty, &id, v).await?,
                    None => self.store.read_current(&ty, &id).await?,
                };
                let Some(record) = record else {
                    return Err(ApiError::NotFound(match version {
                        Some(v) => format!("{ty}/{id} has no version {v}"),
                        None => format!("{ty}/{id} does not exist"),
                    }));
                };
                principal.authorize_record(interaction, &record)?;
                if record.is_delete() {
                    return Err(ApiError::Gone {
                        resource_type: ty,
                        id,
                        version: record.version,
                    });
                }
                let mut entry = self.version_entry(StatusCode::OK, &record)?;
                entry.resource = record.content.map(raw).transpose()?;
                entry.response.location = None;
                Ok(entry)
            }
            Op::Search { ty, query } => {
                let found = searchset(
                    state,
                    principal,
                    self.base,
                    ty.as_deref(),
                    None,
                    Params(query),
                    false,
                )
                .await?;
                self.touch(|t| t.merge(found.touched));
                Ok(ResponseEntry {
                    full_url: None,
                    resource: Some(raw(found.body)?),
                    response: EntryResponse {
                        status: status_text(StatusCode::OK),
                        location: None,
                        etag: None,
                        last_modified: None,
                        outcome: None,
                    },
                })
            }
            _ => Err(ApiError::Internal(
                "a write entry reached the read step".into(),
            )),
        }
    }
}

/// Whether `resource` holds a conditional reference not resolved yet (its lookup must see
/// every resource this transaction has created so far).
fn has_unresolved(resource: &Value, references: &HashMap<String, String>) -> bool {
    let mut found = false;
    fhir::bundle::for_each_reference(resource, &mut |r| {
        found |= !references.contains_key(r) && fhir::bundle::conditional_reference(r).is_some();
    });
    found
}

/// `Type/id` of what an entry writes, once its target is known.
fn target_reference(op: &Op, assigned: Option<&Assigned>) -> Option<String> {
    match (op, assigned) {
        (Op::Create { ty, .. }, Some(Assigned::New(id) | Assigned::Existing(id))) => {
            Some(format!("{ty}/{id}"))
        }
        (
            Op::Put {
                ty,
                target: Target::Id(id),
                ..
            }
            | Op::Patch {
                ty,
                target: Target::Id(id),
                ..
            },
            _,
        ) => Some(format!("{ty}/{id}")),
        _ => None,
    }
}
