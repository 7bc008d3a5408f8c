//! The HTTP layer: the actix application, its routes and the state shared by handlers.
//!
//! A request flows route → handler (extract, negotiate, validate) → [`crate::store`]; no SQL
//! here and no HTTP types below. Errors become OperationOutcomes in [`error`]; responses the
//! framework itself produces (unknown route, wrong method) are rewritten into
//! OperationOutcomes by [`fhir_errors`]. [`openapi`] describes every route (`/openapi.json`,
//! `/docs/`).

pub mod bundle;
pub mod error;
pub(crate) mod handlers;
pub mod interactions;
pub mod negotiate;
pub mod openapi;
pub mod request_id;
pub mod response;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpResponse};
use fhir::outcome::{Issue, IssueType, OperationOutcome};

use crate::store::Store;
use error::outcome_response;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Token validation and the role policy.
    pub auth: crate::auth::Auth,
    /// Where AuditEvents go; `None` only when `--audit false` (benchmarks).
    pub audit: Option<crate::audit_trail::AuditTrail>,
    /// The storage API.
    pub store: Store,
    /// Configured public base URL of the FHIR endpoint (`…/fhir`), if any.
    pub base_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
    /// How often the ledger seals blocks (the retry hint for not-yet-sealed proofs).
    pub seal_interval: std::time::Duration,
}

/// The actix application: every route, with the middleware production runs.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .wrap(from_fn(crate::auth::middleware))
        .wrap(from_fn(crate::audit_trail::middleware))
        .wrap(ErrorHandlers::new().default_handler(fhir_errors))
        .wrap(from_fn(request_id::middleware))
        .configure(crate::auth::discovery::routes)
        .configure(handlers::routes)
        .configure(openapi::routes)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(error::ApiError::NotFound("no such endpoint".into()))
        }))
}

/// Turns error responses that are not already FHIR (the router's 404 and 405, payload
/// errors raised by the framework) into OperationOutcomes with the same status.
fn fhir_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_fhir = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/fhir+json"));
    if is_fhir {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status.as_u16() {
        404 => (IssueType::NotFound, "no such endpoint".to_owned()),
        405 => (
            IssueType::NotSupported,
            "this interaction is not supported on this endpoint".to_owned(),
        ),
        413 => (
            IssueType::TooLong,
            "the request body is too large".to_owned(),
        ),
        s if s >= 500 => (IssueType::Exception, "internal server error".to_owned()),
        _ => (
            IssueType::Invalid,
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_owned(),
        ),
    };
    let replacement: HttpResponse = outcome_response(
        status,
        &OperationOutcome::single(Issue::error(code, message)),
    );
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let mut res = ServiceResponse::new(req, replacement);
    if let Some(allow) = allow {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(ErrorHandlerResponse::Response(res.map_into_right_body()))
}
