//! delete: `DELETE [base]/[type]/[id]` (http.html#delete).
//!
//! Deletion is versioned: a delete version is written, later reads answer 410 Gone, and
//! vread of earlier versions keeps working. Answers 204 No Content, also when the resource
//! does not exist or is already deleted (as the spec allows). `If-Match` makes it
//! version-aware (412 on mismatch).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{known_type, valid_id, write_context};
use crate::auth::{Interaction, Principal};
use crate::http::error::ApiError;
use crate::http::negotiate::{self, etag};
use crate::http::AppState;
use crate::store::DeleteOutcome;

/// `DELETE [base]/[type]/[id]`.
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    let if_match = negotiate::if_match(req.headers())?;

    principal
        .authorize_stored(&state.store, Interaction::Delete, resource_type, id, None)
        .await?;
    let mut tx = state.store.begin(write_context(&req)).await?;
    let outcome = tx.delete(resource_type, id, if_match).await?;
    tx.commit().await?;

    let mut response = HttpResponse::NoContent();
    if let DeleteOutcome::Deleted(record) = outcome {
        response.insert_header((header::ETAG, etag(record.version)));
    }
    Ok(response.finish())
}
