//! update: `PUT [base]/[type]/[id]` (http.html#update), including update-as-create.
//!
//! The body's id must equal the URL's. `If-Match: W/"n"` makes the update version-aware
//! (412 unless n is current). Answers 200 for an update, 201 when the resource did not exist
//! (or was deleted), with Location, ETag and Last-Modified; the body follows `Prefer`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::{known_type, parse_resource, valid_id, write_context, write_response};
use crate::auth::{Interaction, Principal};
use crate::http::error::ApiError;
use crate::http::negotiate::{self, Params};
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
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(ApiError::BadRequest(format!(
                "the body's id '{body_id}' does not match the id '{id}' in the URL"
            )))
        }
        None => {
            return Err(ApiError::BadRequest(
                "an update must carry the resource's id in the body".into(),
            ))
        }
    }

    principal
        .authorize_stored(
            &state.store,
            Interaction::Update,
            resource_type,
            id,
            Some(&resource),
        )
        .await?;
    let mut tx = state.store.begin(write_context(&req)).await?;
    let (record, created) = tx.update(resource_type, id, resource, if_match).await?;
    tx.commit().await?;

    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(&req, &state, status, &record, format)
}
