//! The write interactions of http.html as operations on an open [`WriteTx`]: create
//! (conditional too), update (conditional too), patch, delete (conditional, single or
//! multiple). The REST handlers run one in a transaction of its own; a transaction Bundle
//! runs all of its entries in one; a batch runs each entry in its own. So a conditional
//! create behaves the same whether it arrives as `POST` with `If-None-Exist` or as a Bundle
//! entry with `ifNoneExist`.
//!
//! # Authorization
//! Every interaction checks its [`Writer`] inside the write transaction, against the
//! version it has locked: a patient's "only address and telecom" rule cannot be slipped
//! past by a concurrent write, and a Bundle entry is checked exactly as the same request
//! on its own would be.
//!
//! # Conditions
//! A condition is a search (`identifier=sys|val`) parsed strictly: a parameter this server
//! does not know fails the request (400) instead of being ignored, which would widen the
//! match. It is evaluated inside the write transaction, after taking a lock keyed by the
//! condition ([`WriteTx::lock_key`]): of N clients racing the same conditional create,
//! one creates and the others, waiting for that lock, find what it created.

use actix_web::http::StatusCode;
use fhir::search::SearchRequest;
use serde_json::Value;

use super::error::ApiError;
use crate::auth::{Interaction, Principal};
use crate::store::{DeleteOutcome, VersionRecord, WriteTx};

/// Who writes, as the interactions check it.
#[derive(Debug, Clone, Copy)]
pub enum Writer<'a> {
    /// A request's authenticated principal: the Casbin policy, its scopes and its patient
    /// compartment apply.
    Principal(&'a Principal),
    /// The operator running `fhir-notary import`, whose access to the database is the
    /// authority (and who is recorded as the ledger actor).
    Operator,
}

impl Writer<'_> {
    fn needs_current(self) -> bool {
        match self {
            Writer::Principal(p) => p.needs_current(),
            Writer::Operator => false,
        }
    }

    /// Whether this writer may replace `current` (None: nothing) of `resource_type` with
    /// `new` (None: a delete).
    pub fn check(
        self,
        interaction: Interaction,
        resource_type: &str,
        current: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<(), ApiError> {
        match self {
            Writer::Principal(p) => p.authorize_change(interaction, resource_type, current, new),
            Writer::Operator => Ok(()),
        }
    }

    /// Whether this writer may read `record`.
    pub fn check_read(self, record: &VersionRecord) -> Result<(), ApiError> {
        match self {
            Writer::Principal(p) => p.authorize_record(Interaction::Read, record),
            Writer::Operator => Ok(()),
        }
    }

    /// The current content of `resource_type/id` (locked), when the check needs it.
    async fn current(
        self,
        tx: &mut WriteTx,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Value>, ApiError> {
        if !self.needs_current() {
            return Ok(None);
        }
        tx.current(resource_type, id)
            .await?
            .and_then(|r| r.content)
            .map(|text| parse_stored(resource_type, id, &text))
            .transpose()
    }
}

fn parse_stored(resource_type: &str, id: &str, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::Internal(format!("stored {resource_type}/{id} is not JSON: {e}")))
}

/// How many resources one conditional delete removes at most; a condition matching more
/// is refused (412) rather than running as an unbounded transaction.
pub const MAX_CONDITIONAL_DELETES: u64 = 1_000;

/// A write's result: the status the spec gives it and the version now current.
#[derive(Debug, Clone)]
pub struct Written {
    /// 201 for a new resource, 200 for a new version or a conditional create that matched.
    pub status: StatusCode,
    /// The version written (or, for a matched conditional create, found).
    pub record: VersionRecord,
}

/// A patch document, by its media type.
#[derive(Debug, Clone)]
pub enum PatchBody {
    /// `application/json-patch+json`.
    Json(Value),
    /// A FHIRPath Patch `Parameters` resource.
    FhirPath(Value),
}

/// A condition: the search parameters of a conditional interaction, in the order given.
#[derive(Debug, Clone)]
pub struct Condition {
    resource_type: String,
    request: SearchRequest,
    key: String,
}

impl Condition {
    /// Parses the query of a conditional interaction on `resource_type`. Formatting
    /// parameters (`_format`, `_pretty`) are not part of a condition.
    pub fn parse(resource_type: &str, query: &[(String, String)]) -> Result<Self, ApiError> {
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "_format" && k != "_pretty")
            .cloned()
            .collect();
        if params.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "a conditional interaction on {resource_type} needs search parameters"
            )));
        }
        let request = fhir::search::parse_search(
            fhir::search::r4_search(),
            Some(resource_type),
            &params,
            true,
        )
        .map_err(|e| ApiError::BadRequest(format!("invalid condition: {e}")))?;
        if request.criteria.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "the condition on {resource_type} has no search criteria"
            )));
        }
        params.sort();
        let key = format!(
            "{resource_type}?{}",
            params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        Ok(Condition {
            resource_type: resource_type.to_owned(),
            request,
            key,
        })
    }

    /// Parses a query string (`identifier=a%7Cb&name=x`).
    pub fn parse_query(resource_type: &str, query: &str) -> Result<Self, ApiError> {
        Self::parse(resource_type, &fhir::bundle::form_urlencoded_pairs(query))
    }

    /// The ids of what matches, at most `limit`, after taking the condition's lock.
    async fn matches(
        &self,
        tx: &mut WriteTx,
        base: &str,
        limit: u64,
    ) -> Result<Vec<String>, ApiError> {
        tx.lock_key(&self.key).await?;
        Ok(tx.find(&self.request, Some(base), limit).await?)
    }

    /// The one resource that matches, if any (several are 412), without taking the
    /// condition's lock: for conditional references, which only read.
    pub async fn resolve(&self, tx: &mut WriteTx, base: &str) -> Result<Option<String>, ApiError> {
        let mut ids = tx.find(&self.request, Some(base), 2).await?;
        match ids.len() {
            0 | 1 => Ok(ids.pop()),
            _ => Err(ApiError::PreconditionFailed(format!(
                "{} matches more than one {}",
                self.display(),
                self.resource_type
            ))),
        }
    }

    /// The one resource that matches, if any; several are 412.
    pub async fn single_match(
        &self,
        tx: &mut WriteTx,
        base: &str,
    ) -> Result<Option<String>, ApiError> {
        let mut ids = self.matches(tx, base, 2).await?;
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.pop()),
            _ => Err(ApiError::PreconditionFailed(format!(
                "the condition {} matches more than one {}",
                self.display(),
                self.resource_type
            ))),
        }
    }

    /// The condition as written, for messages.
    pub fn display(&self) -> &str {
        &self.key
    }
}

/// Creates `resource`, with `id` when the caller assigned one beforehand (a transaction's
/// entries) or a fresh one.
pub async fn create(
    tx: &mut WriteTx,
    who: Writer<'_>,
    resource_type: &str,
    resource: Value,
    id: Option<&str>,
) -> Result<Written, ApiError> {
    who.check(Interaction::Create, resource_type, None, Some(&resource))?;
    let record = match id {
        Some(id) => tx.create_as(resource_type, id, resource).await?,
        None => tx.create(resource_type, resource).await?,
    };
    Ok(Written {
        status: StatusCode::CREATED,
        record,
    })
}

/// The current version of an existing resource, as a conditional create that matched
/// answers it (200).
pub async fn existing(
    tx: &mut WriteTx,
    who: Writer<'_>,
    resource_type: &str,
    id: &str,
) -> Result<Written, ApiError> {
    let record = tx.current(resource_type, id).await?.ok_or_else(|| {
        ApiError::Conflict(format!("{resource_type}/{id} vanished during the request"))
    })?;
    who.check_read(&record)?;
    Ok(Written {
        status: StatusCode::OK,
        record,
    })
}

/// Conditional create (`If-None-Exist`): the match when there is exactly one, a new
/// resource when there is none, 412 when there are several.
pub async fn create_if_none_exist(
    tx: &mut WriteTx,
    who: Writer<'_>,
    base: &str,
    resource_type: &str,
    resource: Value,
    condition: &Condition,
) -> Result<Written, ApiError> {
    match condition.single_match(tx, base).await? {
        Some(id) => existing(tx, who, resource_type, &id).await,
        None => create(tx, who, resource_type, resource, None).await,
    }
}

/// Update (or create at a client-chosen id): 200 for a new version, 201 for a creation.
pub async fn update(
    tx: &mut WriteTx,
    who: Writer<'_>,
    resource_type: &str,
    id: &str,
    resource: Value,
    if_match: Option<i64>,
) -> Result<Written, ApiError> {
    check_body_id(&resource, Some(id))?;
    let current = who.current(tx, resource_type, id).await?;
    who.check(
        Interaction::Update,
        resource_type,
        current.as_ref(),
        Some(&resource),
    )?;
    let (record, created) = tx.update(resource_type, id, resource, if_match).await?;
    Ok(Written {
        status: if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        record,
    })
}

/// Where a conditional update writes: the one match, else the body's id (update as
/// create), else a new id.
pub async fn conditional_update_target(
    tx: &mut WriteTx,
    base: &str,
    resource: &Value,
    condition: &Condition,
) -> Result<String, ApiError> {
    let body_id = resource.get("id").and_then(Value::as_str);
    Ok(match condition.single_match(tx, base).await? {
        Some(id) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(ApiError::BadRequest(format!(
                    "the body's id '{}' is not the id of the resource the condition matched ({id})",
                    body_id.unwrap_or_default()
                )));
            }
            id
        }
        None => body_id
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    })
}

/// Conditional update (`PUT [type]?condition`).
pub async fn conditional_update(
    tx: &mut WriteTx,
    who: Writer<'_>,
    base: &str,
    resource_type: &str,
    mut resource: Value,
    condition: &Condition,
    if_match: Option<i64>,
) -> Result<Written, ApiError> {
    let id = conditional_update_target(tx, base, &resource, condition).await?;
    set_id(&mut resource, &id);
    update(tx, who, resource_type, &id, resource, if_match).await
}

/// Delete: the delete version written, or None when there was nothing to delete.
pub async fn delete(
    tx: &mut WriteTx,
    who: Writer<'_>,
    resource_type: &str,
    id: &str,
    if_match: Option<i64>,
) -> Result<Option<VersionRecord>, ApiError> {
    let current = who.current(tx, resource_type, id).await?;
    who.check(Interaction::Delete, resource_type, current.as_ref(), None)?;
    Ok(match tx.delete(resource_type, id, if_match).await? {
        DeleteOutcome::Deleted(record) => Some(record),
        DeleteOutcome::AlreadyDeleted | DeleteOutcome::NotFound => None,
    })
}

/// Conditional delete: every match (up to [`MAX_CONDITIONAL_DELETES`]) is deleted.
pub async fn conditional_delete(
    tx: &mut WriteTx,
    who: Writer<'_>,
    base: &str,
    resource_type: &str,
    condition: &Condition,
) -> Result<Vec<VersionRecord>, ApiError> {
    let ids = condition
        .matches(tx, base, MAX_CONDITIONAL_DELETES + 1)
        .await?;
    if ids.len() as u64 > MAX_CONDITIONAL_DELETES {
        return Err(ApiError::PreconditionFailed(format!(
            "the condition {} matches more than {MAX_CONDITIONAL_DELETES} resources; narrow it",
            condition.display()
        )));
    }
    let mut deleted = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(record) = delete(tx, who, resource_type, &id, None).await? {
            deleted.push(record);
        }
    }
    Ok(deleted)
}

/// Patch: applies `patch` to the current version (locked until commit, so concurrent
/// patches serialize), validates the result like any write and stores it.
pub async fn patch(
    tx: &mut WriteTx,
    who: Writer<'_>,
    resource_type: &str,
    id: &str,
    patch: &PatchBody,
    if_match: Option<i64>,
) -> Result<Written, ApiError> {
    let current = tx.current(resource_type, id).await?;
    let Some(current) = current else {
        return Err(ApiError::NotFound(format!(
            "{resource_type}/{id} does not exist"
        )));
    };
    let Some(content) = current.content.as_deref() else {
        return Err(ApiError::Gone {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version: current.version,
        });
    };
    if let Some(expected) = if_match {
        if expected != current.version {
            return Err(ApiError::PreconditionFailed(format!(
                "If-Match named version {expected}, but the current version is {}",
                current.version
            )));
        }
    }
    let mut resource = parse_stored(resource_type, id, content)?;
    let before = who.needs_current().then(|| resource.clone());
    let applied = match patch {
        PatchBody::Json(doc) => fhir::patch::apply_json_patch(&mut resource, doc),
        PatchBody::FhirPath(params) => fhir::patch::apply_fhirpath_patch(&mut resource, params),
    };
    applied.map_err(|e| match e {
        fhir::patch::PatchError::Invalid(m) => ApiError::BadRequest(format!("invalid patch: {m}")),
        fhir::patch::PatchError::NotApplicable(m) => {
            ApiError::Unprocessable(format!("the patch does not apply: {m}"))
        }
    })?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type)
        || resource.get("id").and_then(Value::as_str) != Some(id)
    {
        return Err(ApiError::Unprocessable(
            "a patch cannot change a resource's type or id".into(),
        ));
    }
    fhir::validate::validate_resource(fhir::definitions::r4(), &resource)?;
    who.check(
        Interaction::Update,
        resource_type,
        before.as_ref(),
        Some(&resource),
    )?;
    let record = tx
        .patch(resource_type, id, resource, Some(current.version))
        .await?;
    Ok(Written {
        status: StatusCode::OK,
        record,
    })
}

/// An update's body must name the resource it updates.
fn check_body_id(resource: &Value, id: Option<&str>) -> Result<(), ApiError> {
    match (resource.get("id").and_then(Value::as_str), id) {
        (Some(body_id), Some(id)) if body_id != id => Err(ApiError::BadRequest(format!(
            "the body's id '{body_id}' does not match the id '{id}' in the URL"
        ))),
        (None, Some(_)) => Err(ApiError::BadRequest(
            "an update must carry the resource's id in the body".into(),
        )),
        _ => Ok(()),
    }
}

/// Sets `id` on a resource body (the server decides it in conditional updates).
pub fn set_id(resource: &mut Value, id: &str) {
    if let Value::Object(map) = resource {
        map.insert("id".into(), Value::String(id.to_owned()));
    }
}

/// Parses a patch body by its media type (the essence of `Content-Type`).
pub fn patch_body(content_type: &str, body: &[u8]) -> Result<PatchBody, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
    match content_type {
        "application/json-patch+json" => Ok(PatchBody::Json(value)),
        "application/fhir+json" | "application/json" => {
            if value.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
                Ok(PatchBody::FhirPath(value))
            } else {
                Err(ApiError::BadRequest(
                    "a PATCH with a FHIR JSON body must be a FHIRPath Patch (Parameters); send \
                     JSON Patch as application/json-patch+json"
                        .into(),
                ))
            }
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "PATCH accepts application/json-patch+json or application/fhir+json, not '{other}'"
        ))),
    }
}
