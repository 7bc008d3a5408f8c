//! create: `POST [base]/[type]` (http.html#create).
//!
//! The server assigns the id (any id in the body is ignored) and answers 201 with
//! `Location: [base]/[type]/[id]/_history/1`, `ETag: W/"1"` and `Last-Modified`; the body
//! follows `Prefer: return=…`. Errors: 400 unparseable or structurally invalid, 404 unknown
//! type, 413 too large, 415 not JSON, 422 missing required elements.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, parse_resource, write_context, write_response};
use crate::auth::{Interaction, Principal};
use crate::http::error::ApiError;
use crate::http::negotiate::{self, Params};
use crate::http::AppState;

/// `POST [base]/[type]`.
pub async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    let format = negotiate::negotiate(&req, &Params::parse(req.query_string()))?;
    negotiate::require_json_body(&req)?;
    let body = negotiate::read_body(&req, payload, state.max_body_bytes).await?;
    let resource = parse_resource(&body, resource_type)?;
    principal.authorize(Interaction::Create, Some(resource_type), Some(&resource))?;

    let mut tx = state.store.begin(write_context(&req)).await?;
    let record = tx.create(resource_type, resource).await?;
    tx.commit().await?;

    write_response(&req, &state, StatusCode::CREATED, &record, format)
}
