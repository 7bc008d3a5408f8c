//! The HTTP layer's error type and the one place where errors become responses.
//!
//! Every error reaches the client as a FHIR OperationOutcome:
//!
//! | error                                  | status | issue code      |
//! |----------------------------------------|--------|-----------------|
//! | `BadRequest`                           | 400    | invalid         |
//! | `Invalid` (structure, formats)         | 400    | per issue       |
//! | `Invalid` (only missing required)      | 422    | required        |
//! | `Unauthorized` (no or invalid token)   | 401    | login           |
//! | `Forbidden` (policy, scopes, compartment) | 403 | forbidden       |
//! | `NotFound`                             | 404    | not-found       |
//! | `MethodNotAllowed`                     | 405    | not-supported   |
//! | `NotAcceptable`                        | 406    | not-supported   |
//! | `Conflict`, `StoreError::Conflict`     | 409    | conflict        |
//! | `Gone`                                 | 410    | deleted         |
//! | `PreconditionFailed`, version mismatch | 412    | conflict        |
//! | `PayloadTooLarge`                      | 413    | too-long        |
//! | `UnsupportedMediaType`                 | 415    | not-supported   |
//! | `Unprocessable`                        | 422    | processing      |
//! | any other `StoreError`, `Internal`     | 500    | exception       |
//! | `InEntry` (a Bundle entry's error)     | the entry's error's, located in the Bundle |
//!
//! 500s are logged with their cause and answered with a generic message: no SQL, paths or
//! internals reach a client.

use actix_web::body::BoxBody;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use fhir::outcome::{Issue, IssueType, OperationOutcome};
use fhir::validate::ValidationError;

use crate::store::StoreError;

/// `application/fhir+json; charset=utf-8`, the type of every FHIR body this server sends.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The resource in the body is not valid R4.
    #[error("the resource is not valid")]
    Invalid(ValidationError),
    /// No acceptable access token; `invalid_token` when one was sent but refused (RFC 6750).
    #[error("{reason}")]
    Unauthorized {
        /// What the client is told.
        reason: String,
        /// A token was sent and refused (rather than none sent).
        invalid_token: bool,
    },
    /// The token is valid but does not permit this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource, type or endpoint.
    #[error("{0}")]
    NotFound(String),
    /// The resource was deleted; `version` is the delete's version.
    #[error("{resource_type}/{id} was deleted")]
    Gone {
        /// The resource type.
        resource_type: String,
        /// The logical id.
        id: String,
        /// The version number of the deletion.
        version: i64,
    },
    /// The interaction is not supported here.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The requested response format is not supported.
    #[error("{0}")]
    NotAcceptable(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A precondition (`If-Match`) failed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body exceeds the configured limit.
    #[error("the request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// The body's media type is not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is well-formed but breaks a rule of this server.
    #[error("{0}")]
    Unprocessable(String),
    /// A storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault of this server that is not the database's (a handler panicked).
    #[error("{0}")]
    Internal(String),
    /// Entry `index` of a Bundle failed with `source`: answered as `source` is, with its
    /// issues placed at `Bundle.entry[index]`.
    #[error("Bundle.entry[{index}]: {source}")]
    InEntry {
        /// The entry's position in the Bundle.
        index: usize,
        /// What went wrong with it.
        source: Box<ApiError>,
    },
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::Invalid(err)
    }
}

impl ApiError {
    /// Places this error at entry `index` of a Bundle.
    pub fn in_entry(self, index: usize) -> ApiError {
        ApiError::InEntry {
            index,
            source: Box::new(self),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_code()
    }

    /// The outcome sent to the client.
    pub fn outcome(&self) -> OperationOutcome {
        let issue = |code, msg: String| OperationOutcome::single(Issue::error(code, msg));
        match self {
            ApiError::Invalid(err) => OperationOutcome::from(err.issues.clone()),
            ApiError::BadRequest(m) => issue(IssueType::Invalid, m.clone()),
            ApiError::Unauthorized { reason, .. } => issue(IssueType::Login, reason.clone()),
            ApiError::Forbidden(m) => issue(IssueType::Forbidden, m.clone()),
            ApiError::NotFound(m) => issue(IssueType::NotFound, m.clone()),
            ApiError::Gone { .. } => issue(IssueType::Deleted, self.to_string()),
            ApiError::MethodNotAllowed(m)
            | ApiError::NotAcceptable(m)
            | ApiError::UnsupportedMediaType(m) => issue(IssueType::NotSupported, m.clone()),
            ApiError::Conflict(m) | ApiError::PreconditionFailed(m) => {
                issue(IssueType::Conflict, m.clone())
            }
            ApiError::PayloadTooLarge(_) => issue(IssueType::TooLong, self.to_string()),
            ApiError::Unprocessable(m) => issue(IssueType::Processing, m.clone()),
            ApiError::Store(StoreError::VersionMismatch { expected, current }) => issue(
                IssueType::Conflict,
                match current {
                    Some(c) => {
                        format!("If-Match named version {expected}, but the current version is {c}")
                    }
                    None => format!(
                        "If-Match named version {expected}, but the resource does not exist"
                    ),
                },
            ),
            ApiError::Store(StoreError::Conflict(_)) => issue(
                IssueType::Conflict,
                "another request changed the same resource at the same time; retry".into(),
            ),
            ApiError::Store(_) | ApiError::Internal(_) => {
                issue(IssueType::Exception, "internal server error".into())
            }
            ApiError::InEntry { index, source } => {
                let mut outcome = source.outcome();
                for issue in &mut outcome.issues {
                    let at = format!("Bundle.entry[{index}]");
                    issue.diagnostics = Some(match issue.diagnostics.take() {
                        Some(d) => format!("{at}: {d}"),
                        None => at.clone(),
                    });
                    issue.expression = if issue.expression.is_empty() {
                        vec![at]
                    } else {
                        issue
                            .expression
                            .iter()
                            .map(|e| match e.split_once('.') {
                                // `Patient.name[0]` within the entry's resource.
                                Some((head, rest))
                                    if head.starts_with(|c: char| c.is_ascii_uppercase()) =>
                                {
                                    format!("{at}.resource.{rest}")
                                }
                                _ => format!("{at}.{e}"),
                            })
                            .collect()
                    };
                }
                outcome
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(err) if err.is_structural() => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) | ApiError::Store(StoreError::Conflict(_)) => {
                StatusCode::CONFLICT
            }
            ApiError::PreconditionFailed(_)
            | ApiError::Store(StoreError::VersionMismatch { .. }) => {
                StatusCode::PRECONDITION_FAILED
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InEntry { source, .. } => source.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut response = outcome_response(status, &self.outcome());
        if let ApiError::Gone { version, .. } = self {
            if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
                response.headers_mut().insert(header::ETAG, etag);
            }
        }
        if let ApiError::Unauthorized {
            reason,
            invalid_token,
        } = self
        {
            let challenge = if *invalid_token {
                format!(
                    "Bearer realm=\"fhir-notary\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                )
            } else {
                "Bearer realm=\"fhir-notary\"".to_owned()
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
            );
        }
        response
    }
}

/// A response carrying an OperationOutcome.
pub fn outcome_response(status: StatusCode, outcome: &OperationOutcome) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(outcome.to_json().to_string())
}
