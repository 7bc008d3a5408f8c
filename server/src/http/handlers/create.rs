//! create: `POST [base]/[type]` (http.html#create), and conditional create with
//! `If-None-Exist: [search]` (http.html#ccreate).
//!
//! The server assigns the id (any id in the body is ignored) and answers 201 with
//! `Location: [base]/[type]/[id]/_history/1`, `ETag: W/"1"` and `Last-Modified`; the body
//! follows `Prefer: return=…`. With `If-None-Exist`, one match answers 200 with that
//! resource and creates nothing, several answer 412. Errors: 400 unparseable or
//! structurally invalid (or an unknown parameter in the condition), 404 unknown type, 413
//! too large, 415 not JSON, 422 missing required elements.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, parse_resource, write_context, write_response};
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::interactions::{self, Condition, Writer};
use crate::http::negotiate::{self, Params};
use crate::http::response::base_url;
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
    let condition = req
        .headers()
        .get("if-none-exist")
        .map(|v| {
            let text = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("If-None-Exist is not valid text".into()))?;
            Condition::parse_query(resource_type, text.trim_start_matches('?'))
        })
        .transpose()?;
    let body = negotiate::read_body(&req, payload, state.max_body_bytes).await?;
    let resource = parse_resource(&body, resource_type)?;

    let who = Writer::Principal(&principal);
    let mut tx = state.store.begin(write_context(&req)).await?;
    let written = match &condition {
        Some(condition) => {
            let base = base_url(&req, &state);
            interactions::create_if_none_exist(
                &mut tx,
                who,
                &base,
                resource_type,
                resource,
                condition,
            )
            .await?
        }
        None => interactions::create(&mut tx, who, resource_type, resource, None).await?,
    };
    tx.commit().await?;

    write_response(&req, &state, written.status, &written.record, format)
}
