//! `$validate` (resource-operation-validate): `POST [base]/[type]/$validate` and
//! `POST [base]/[type]/[id]/$validate`.
//!
//! Runs the same validation as create and update, stores nothing, and answers 200 with an
//! OperationOutcome: its issues, or one information issue when there are none. The body is
//! the resource itself or a `Parameters` with a `resource` parameter and an optional `mode`
//! (`create`, `update`, `delete`). `mode=update` (and the instance form) checks the body's
//! id against the URL's; `mode=delete` checks the resource exists. A body that is not JSON,
//! or a resource of another type, is a 400: there is nothing to validate.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fhir::outcome::{Issue, IssueType, OperationOutcome};
use serde_json::Value;

use super::{known_type, valid_id};
use crate::http::error::{outcome_response, ApiError};
use crate::http::negotiate;
use crate::http::AppState;

/// What a `$validate` body asks: the resource, the mode, the profile.
type Request = (Option<Value>, Option<Mode>, Option<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
    Delete,
}

/// `POST [base]/[type]/$validate`.
pub async fn type_level(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    validate(&req, payload, &state, resource_type, None).await
}

/// `POST [base]/[type]/[id]/$validate`.
pub async fn instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    validate(&req, payload, &state, resource_type, Some(id)).await
}

async fn validate(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    resource_type: &str,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    negotiate::require_json_body(req)?;
    let body = negotiate::read_body(req, payload, state.max_body_bytes).await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let (resource, mode, profile) = unwrap_parameters(body, resource_type)?;
    let mode = mode.unwrap_or(if id.is_some() {
        Mode::Update
    } else {
        Mode::Create
    });

    let mut issues = Vec::new();
    if let Some(profile) = profile {
        issues.push(Issue {
            severity: fhir::outcome::Severity::Warning,
            code: IssueType::NotSupported,
            diagnostics: Some(format!(
                "validated against the base R4 definitions only; the profile {profile} was not checked"
            )),
            expression: Vec::new(),
        });
    }
    if mode == Mode::Delete {
        let Some(id) = id else {
            return Err(ApiError::BadRequest(
                "mode=delete validates an existing resource: use [type]/[id]/$validate".into(),
            ));
        };
        match state.store.read_current(resource_type, id).await? {
            Some(v) if !v.is_delete() => {}
            _ => issues.push(Issue::error(
                IssueType::NotFound,
                format!("{resource_type}/{id} does not exist, so it cannot be deleted"),
            )),
        }
    } else if let Some(resource) = resource {
        let actual = resource.get("resourceType").and_then(Value::as_str);
        if actual != Some(resource_type) {
            return Err(ApiError::BadRequest(format!(
                "the resource to validate is a {}, but the URL is for {resource_type}",
                actual.unwrap_or("(no resourceType)")
            )));
        }
        if let Err(err) = fhir::validate::validate_resource(fhir::definitions::r4(), &resource) {
            issues.extend(err.issues);
        }
        if mode == Mode::Update {
            let body_id = resource.get("id").and_then(Value::as_str);
            match (body_id, id) {
                (None, _) => issues.push(
                    Issue::error(IssueType::Required, "an update needs the resource's id")
                        .at(format!("{resource_type}.id")),
                ),
                (Some(b), Some(id)) if b != id => issues.push(
                    Issue::error(
                        IssueType::Invalid,
                        format!("the id '{b}' does not match the id '{id}' in the URL"),
                    )
                    .at(format!("{resource_type}.id")),
                ),
                _ => {}
            }
        }
    } else {
        return Err(ApiError::BadRequest(
            "$validate needs a resource (the body, or a 'resource' parameter)".into(),
        ));
    }
    if !issues
        .iter()
        .any(|i| i.severity == fhir::outcome::Severity::Error)
    {
        issues.push(Issue::information(
            IssueType::Informational,
            "validation found no issues",
        ));
    }
    Ok(outcome_response(
        StatusCode::OK,
        &OperationOutcome::from(issues),
    ))
}

/// The resource, mode and profile of a `Parameters` body, or the body itself as the
/// resource.
fn unwrap_parameters(body: Value, resource_type: &str) -> Result<Request, ApiError> {
    if resource_type == "Parameters"
        || body.get("resourceType").and_then(Value::as_str) != Some("Parameters")
    {
        return Ok((Some(body), None, None));
    }
    let mut resource = None;
    let mut mode = None;
    let mut profile = None;
    for p in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match p.get("name").and_then(Value::as_str) {
            Some("resource") => resource = p.get("resource").cloned(),
            Some("mode") => {
                let text = p
                    .get("valueCode")
                    .or_else(|| p.get("valueString"))
                    .and_then(Value::as_str);
                mode = Some(match text {
                    Some("create") => Mode::Create,
                    Some("update") => Mode::Update,
                    Some("delete") => Mode::Delete,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "mode must be create, update or delete, not {}",
                            other.unwrap_or("(none)")
                        )))
                    }
                });
            }
            Some("profile") => {
                profile = p
                    .get("valueUri")
                    .or_else(|| p.get("valueCanonical"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            _ => {}
        }
    }
    Ok((resource, mode, profile))
}
