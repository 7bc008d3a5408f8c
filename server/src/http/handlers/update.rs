//! update: `PUT [base]/[type]/[id]` (http.html#update), including update-as-create, and
//! conditional update `PUT [base]/[type]?[search]` (http.html#cond-update).
//!
//! The body's id must equal the URL's. `If-Match: W/"n"` makes the update version-aware
//! (412 unless n is current). Answers 200 for an update, 201 when the resource did not exist
//! (or was deleted), with Location, ETag and Last-Modified; the body follows `Prefer`.
//! A conditional update updates its one match, creates when nothing matches (at the body's
//! id if it has one) and answers 412 when several match.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, parse_resource, valid_id, write_context, write_response};
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::interactions::{self, Condition, Writer};
use crate::http::negotiate::{self, Params};
use crate::http::response::base_url;
use crate::http::AppState;

/// `PUT [base]/[type]/[id]`.
pub async fn update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    let format = negotiate::negotiate(&req, &Params::parse(req.query_string()))?;
    let if_match = negotiate::if_match(req.headers())?;
    negotiate::require_json_body(&req)?;
    let body = negotiate::read_body(&req, payload, state.max_body_bytes).await?;
    let resource = parse_resource(&body, resource_type)?;

    let mut tx = state.store.begin(write_context(&req)).await?;
    let who = Writer::Principal(&principal);
    let written = interactions::update(&mut tx, who, resource_type, id, resource, if_match).await?;
    tx.commit().await?;

    write_response(&req, &state, written.status, &written.record, format)
}

/// `PUT [base]/[type]?[search]`.
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
    negotiate::require_json_body(&req)?;
    let body = negotiate::read_body(&req, payload, state.max_body_bytes).await?;
    let resource = parse_resource(&body, resource_type)?;

    let base = base_url(&req, &state);
    let mut tx = state.store.begin(write_context(&req)).await?;
    let written = interactions::conditional_update(
        &mut tx,
        Writer::Principal(&principal),
        &base,
        resource_type,
        resource,
        &condition,
        if_match,
    )
    .await?;
    tx.commit().await?;

    write_response(&req, &state, written.status, &written.record, format)
}
