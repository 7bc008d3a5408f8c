//! patch: `PATCH [base]/[type]/[id]` (http.html#patch) and conditional patch
//! `PATCH [base]/[type]?[search]`.
//!
//! Two body formats: JSON Patch (`Content-Type: application/json-patch+json`, RFC 6902)
//! and FHIRPath Patch (`application/fhir+json`, a `Parameters` resource; fhirpatch.html).
//! The patch applies to the current version, locked for the duration, so concurrent patches
//! never lose each other's changes; `If-Match` pins the version (412 otherwise). The result
//! is validated like an update (400/422) and notarized as a `patch` version. 404 for what
//! does not exist, 410 for what was deleted, 422 for a patch that does not apply (a path
//! matching nothing, a failing `test`, a changed id), 415 for another media type.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, valid_id, write_context, write_response};
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::interactions::{self, Condition, PatchBody, Writer};
use crate::http::negotiate::{self, Params};
use crate::http::response::base_url;
use crate::http::AppState;

async fn body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PatchBody, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "a PATCH needs a Content-Type: application/json-patch+json or application/fhir+json"
                    .into(),
            )
        })?;
    let bytes = negotiate::read_body(req, payload, state.max_body_bytes).await?;
    interactions::patch_body(&content_type, &bytes)
}

/// `PATCH [base]/[type]/[id]`.
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    let format = negotiate::negotiate(&req, &Params::parse(req.query_string()))?;
    let if_match = negotiate::if_match(req.headers())?;
    let patch = body(&req, payload, &state).await?;

    let mut tx = state.store.begin(write_context(&req)).await?;
    let who = Writer::Principal(&principal);
    let written = interactions::patch(&mut tx, who, resource_type, id, &patch, if_match).await?;
    tx.commit().await?;

    write_response(&req, &state, written.status, &written.record, format)
}

/// `PATCH [base]/[type]?[search]`: patches the one match (404 for none, 412 for several).
pub async fn conditional(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(&req, &params)?;
    let condition = Condition::parse(resource_type, &params.0)?;
    let if_match = negotiate::if_match(req.headers())?;
    let patch = body(&req, payload, &state).await?;

    let base = base_url(&req, &state);
    let mut tx = state.store.begin(write_context(&req)).await?;
    let Some(id) = condition.single_match(&mut tx, &base).await? else {
        return Err(ApiError::NotFound(format!(
            "no {resource_type} matches {}",
            condition.display()
        )));
    };
    let who = Writer::Principal(&principal);
    let written = interactions::patch(&mut tx, who, resource_type, &id, &patch, if_match).await?;
    tx.commit().await?;

    write_response(&req, &state, written.status, &written.record, format)
}
