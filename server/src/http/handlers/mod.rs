//! The handlers, one module per FHIR interaction (http.html), and the route table.

mod create;
mod delete;
mod health;
mod history;
mod ledger;
mod metadata;
mod metrics;
mod patch;
mod read;
mod search;
pub(crate) mod transaction;
mod update;
mod validate;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fhir::outcome::{Issue, IssueType, OperationOutcome};
use serde_json::Value;

use super::error::{ApiError, FHIR_JSON};
use super::negotiate::{self, Format, ReturnPreference};
use super::response::{base_url, version_body, version_headers, Projection};
use super::AppState;
use crate::http::request_id::RequestId;
use crate::store::{VersionRecord, WriteContext};

/// Who writes, for the ledger entries of this request's writes: the token's principal.
fn write_context(req: &HttpRequest) -> WriteContext {
    use actix_web::HttpMessage;
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    WriteContext {
        actor: req
            .extensions()
            .get::<crate::auth::Principal>()
            .map_or_else(|| WriteContext::ANONYMOUS.to_owned(), |p| p.actor()),
        request_id,
    }
}

/// Registers every route. Literal segments (`metadata`, `_history`) come before the
/// `{type}`/`{id}` patterns they would otherwise match.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics::scrape)))
        .service(
            web::scope("/ledger")
                .service(web::resource("/head").route(web::get().to(ledger::head)))
                .service(web::resource("/blocks").route(web::get().to(ledger::blocks)))
                .service(web::resource("/blocks/{height}").route(web::get().to(ledger::block)))
                .service(
                    web::resource("/proof/{type}/{id}/{version}")
                        .route(web::get().to(ledger::proof)),
                ),
        )
        .service(
            web::scope("/fhir")
                .service(
                    web::resource("/metadata").route(web::get().to(metadata::capability_statement)),
                )
                .service(web::resource("/_history").route(web::get().to(history::system)))
                .service(
                    web::resource(["", "/"])
                        .route(web::get().to(search::system_get))
                        .route(web::post().to(transaction::transaction)),
                )
                .service(web::resource("/_search").route(web::post().to(search::system_post)))
                .service(
                    web::resource("/{type}")
                        .route(web::get().to(search::type_get))
                        .route(web::post().to(create::create))
                        .route(web::put().to(update::conditional))
                        .route(web::patch().to(patch::conditional))
                        .route(web::delete().to(delete::conditional)),
                )
                .service(
                    web::resource("/{type}/$validate").route(web::post().to(validate::type_level)),
                )
                .service(
                    web::resource("/{type}/_history").route(web::get().to(history::type_level)),
                )
                .service(web::resource("/{type}/_search").route(web::post().to(search::type_post)))
                .service(
                    web::resource("/{type}/{id}")
                        .route(web::get().to(read::read))
                        .route(web::put().to(update::update))
                        .route(web::patch().to(patch::patch))
                        .route(web::delete().to(delete::delete)),
                )
                .service(
                    web::resource("/{type}/{id}/$validate")
                        .route(web::post().to(validate::instance)),
                )
                .service(
                    web::resource("/{type}/{id}/_history").route(web::get().to(history::instance)),
                )
                .service(
                    web::resource("/{type}/{id}/_history/{vid}").route(web::get().to(read::vread)),
                )
                // After the literal `_history` and `$validate` routes it would shadow.
                .service(
                    web::resource("/Patient/{id}/{type}").route(web::get().to(search::compartment)),
                ),
        );
}

/// A resource type named in a URL: it must be a concrete R4 resource type.
fn known_type(name: &str) -> Result<&str, ApiError> {
    if fhir::definitions::r4().is_resource_type(name) {
        Ok(name)
    } else {
        Err(ApiError::NotFound(format!(
            "'{name}' is not a FHIR R4 resource type"
        )))
    }
}

/// A logical id named in a URL.
fn valid_id(id: &str) -> Result<&str, ApiError> {
    if fhir::validate::is_valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "'{id}' is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
        )))
    }
}

/// Parses and validates a request body as a resource of `expected_type`.
fn parse_resource(body: &[u8], expected_type: &str) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let actual = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::BadRequest("the body is not a FHIR resource: resourceType is missing".into())
        })?;
    if actual != expected_type {
        return Err(ApiError::BadRequest(format!(
            "the body is a {actual}, but the URL is for {expected_type}"
        )));
    }
    fhir::validate::validate_resource(fhir::definitions::r4(), &value)?;
    Ok(value)
}

/// The response to a successful create or update, shaped by `Prefer: return=…`.
fn write_response(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    record: &VersionRecord,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    crate::audit_trail::touch(req, state, |t| t.version(record));
    let location = format!(
        "{}/{}/{}/_history/{}",
        base_url(req, state),
        record.resource_type,
        record.id,
        record.version
    );
    let mut builder = version_headers(status, record);
    builder.insert_header((header::LOCATION, location));
    Ok(match negotiate::return_preference(req.headers()) {
        ReturnPreference::Minimal => builder.finish(),
        ReturnPreference::Representation => builder
            .insert_header((header::CONTENT_TYPE, FHIR_JSON))
            .body(version_body(record, format, &Projection::default())?),
        ReturnPreference::OperationOutcome => {
            let verb = if status == StatusCode::CREATED {
                "Created"
            } else {
                "Updated"
            };
            let outcome = OperationOutcome::single(Issue::information(
                IssueType::Informational,
                format!(
                    "{verb} {}/{} version {}",
                    record.resource_type, record.id, record.version
                ),
            ));
            builder
                .insert_header((header::CONTENT_TYPE, FHIR_JSON))
                .body(super::response::json_text(&outcome.to_json(), format))
        }
    })
}
