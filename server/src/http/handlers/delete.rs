//! delete: `DELETE [base]/[type]/[id]` (http.html#delete) and conditional delete
//! `DELETE [base]/[type]?[search]` (http.html#cdelete).
//!
//! A delete writes a delete version (history keeps every earlier one; reads answer 410).
//! Deleting what does not exist or is already deleted writes nothing and still answers 204.
//! `If-Match` makes it version-aware (412). A conditional delete removes every match (up to
//! [`interactions::MAX_CONDITIONAL_DELETES`]; more is 412), as the CapabilityStatement's
//! `conditionalDelete: multiple` declares.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, valid_id, write_context};
use crate::audit_trail::touch;
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::interactions::{self, Condition, Writer};
use crate::http::negotiate::{self, etag, Params};
use crate::http::response::base_url;
use crate::http::AppState;

/// `DELETE [base]/[type]/[id]`.
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    let if_match = negotiate::if_match(req.headers())?;

    let mut tx = state.store.begin(write_context(&req)).await?;
    let who = Writer::Principal(&principal);
    let deleted = interactions::delete(&mut tx, who, resource_type, id, if_match).await?;
    tx.commit().await?;

    touch(&req, &state, |t| deleted.iter().for_each(|r| t.version(r)));
    let mut response = HttpResponse::NoContent();
    if let Some(record) = deleted {
        response.insert_header((header::ETAG, etag(record.version)));
    }
    Ok(response.finish())
}

/// `DELETE [base]/[type]?[search]`.
pub async fn conditional(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    let condition = Condition::parse(resource_type, &Params::parse(req.query_string()).0)?;

    let base = base_url(&req, &state);
    let mut tx = state.store.begin(write_context(&req)).await?;
    let who = Writer::Principal(&principal);
    let deleted =
        interactions::conditional_delete(&mut tx, who, &base, resource_type, &condition).await?;
    tx.commit().await?;

    touch(&req, &state, |t| deleted.iter().for_each(|r| t.version(r)));
    let mut response = HttpResponse::NoContent();
    if let [record] = deleted.as_slice() {
        response.insert_header((header::ETAG, etag(record.version)));
    }
    Ok(response.finish())
}
