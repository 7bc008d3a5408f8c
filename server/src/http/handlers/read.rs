//! read and vread: `GET [base]/[type]/[id]` and `GET [base]/[type]/[id]/_history/[vid]`
//! (http.html#read, #vread).
//!
//! 200 with the resource, ETag and Last-Modified; 404 for what never existed; 410 Gone for a
//! deleted resource (or a version that is a deletion). Conditional read: `If-None-Match`
//! naming the current version, or `If-Modified-Since` at or after its last update, answer
//! 304 Not Modified. `_summary`, `_elements`, `_format` and `_pretty` shape the body.

use actix_web::http::header::{self, HttpDate};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, valid_id};
use crate::audit_trail::touch;
use crate::auth::{Interaction, Principal};
use crate::http::error::ApiError;
use crate::http::negotiate::{self, Params};
use crate::http::response::{http_date, version_headers, version_response, Projection};
use crate::http::AppState;
use crate::store::VersionRecord;

/// `GET [base]/[type]/[id]`.
pub async fn read(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    principal.authorize(Interaction::Read, Some(resource_type), None)?;
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(&req, &params)?;
    let projection = Projection::parse(&params)?;

    let record = state
        .store
        .read_current(resource_type, id)
        .await?
        .ok_or_else(|| not_found(resource_type, id))?;
    refuse_deleted(&record)?;
    principal.authorize_record(Interaction::Read, &record)?;
    touch(&req, &state, |t| t.version(&record));
    if not_modified(&req, &record) {
        return Ok(version_headers(StatusCode::NOT_MODIFIED, &record).finish());
    }
    version_response(StatusCode::OK, &record, format, &projection)
}

/// `GET [base]/[type]/[id]/_history/[vid]`.
pub async fn vread(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    principal.authorize(Interaction::Vread, Some(resource_type), None)?;
    let version: i64 = path.2.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::NotFound(format!(
            "'{}' is not a version of {resource_type}/{id}",
            path.2
        ))
    })?;
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(&req, &params)?;
    let projection = Projection::parse(&params)?;

    let record = state
        .store
        .read_version(resource_type, id, version)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("{resource_type}/{id} has no version {version}"))
        })?;
    refuse_deleted(&record)?;
    principal.authorize_record(Interaction::Vread, &record)?;
    touch(&req, &state, |t| t.version(&record));
    version_response(StatusCode::OK, &record, format, &projection)
}

fn not_found(resource_type: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{resource_type}/{id} does not exist"))
}

fn refuse_deleted(record: &VersionRecord) -> Result<(), ApiError> {
    if record.is_delete() {
        return Err(ApiError::Gone {
            resource_type: record.resource_type.clone(),
            id: record.id.clone(),
            version: record.version,
        });
    }
    Ok(())
}

/// Conditional read: `If-None-Match` wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(req: &HttpRequest, record: &VersionRecord) -> bool {
    if req.headers().contains_key(header::IF_NONE_MATCH) {
        return negotiate::if_none_match_hits(req.headers(), record.version);
    }
    req.headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<HttpDate>().ok())
        .is_some_and(|since| http_date(record.last_updated) <= since)
}
