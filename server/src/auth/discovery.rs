//! Discovery documents, public (no token):
//!
//! - `GET /.well-known/smart-configuration` (also under `/fhir/.well-known/`, where SMART
//!   clients look): issuer, JWKS, token endpoint when the issuer has one, scopes and
//!   capabilities this server honours.
//! - `GET /.well-known/openid-configuration` and `GET /.well-known/jwks.json`: in dev mode,
//!   this server is the issuer and publishes its token key; in oidc mode they answer 404
//!   (the provider publishes its own).
//!
//! The CapabilityStatement's `rest.security` is built here too, so the three agree.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::http::error::ApiError;
use crate::http::response::base_url;
use crate::http::AppState;

/// The server's root URL (the FHIR base without `/fhir`).
fn root_url(req: &HttpRequest, state: &AppState) -> String {
    let base = base_url(req, state);
    base.strip_suffix("/fhir").unwrap_or(&base).to_owned()
}

/// Where tokens come from: `(token endpoint, jwks uri)`.
fn endpoints(req: &HttpRequest, state: &AppState) -> (Option<String>, String) {
    state.auth.provider_endpoints().unwrap_or_else(|| {
        (
            None,
            format!("{}/.well-known/jwks.json", root_url(req, state)),
        )
    })
}

const SCOPES: [&str; 8] = [
    "patient/*.rs",
    "patient/*.read",
    "user/*.cruds",
    "user/*.*",
    "system/*.cruds",
    "system/*.*",
    "launch/patient",
    "fhirUser",
];

/// `GET /.well-known/smart-configuration`.
pub async fn smart_configuration(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (token_endpoint, jwks_uri) = endpoints(&req, &state);
    let mut doc = json!({
        "issuer": state.auth.issuer(),
        "jwks_uri": jwks_uri,
        "scopes_supported": SCOPES,
        "capabilities": [
            "permission-v1",
            "permission-v2",
            "permission-patient",
            "permission-user",
            "context-standalone-patient",
        ],
        "grant_types_supported": if token_endpoint.is_some() {
            json!(["client_credentials"])
        } else {
            json!([])
        },
        "code_challenge_methods_supported": ["S256"],
    });
    if let Some(t) = token_endpoint {
        doc["token_endpoint"] = t.into();
    }
    HttpResponse::Ok().json(doc)
}

/// `GET /.well-known/openid-configuration` (dev mode).
pub async fn openid_configuration(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.auth.is_dev() {
        return Err(not_here());
    }
    let (_, jwks_uri) = endpoints(&req, &state);
    Ok(HttpResponse::Ok().json(json!({
        "issuer": state.auth.issuer(),
        "jwks_uri": jwks_uri,
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "scope", "patient", "fhirUser"],
    })))
}

/// `GET /.well-known/jwks.json` (dev mode).
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.auth.is_dev() {
        return Err(not_here());
    }
    Ok(HttpResponse::Ok().json(state.auth.jwks()))
}

fn not_here() -> ApiError {
    ApiError::NotFound(
        "this server does not issue tokens; see its issuer's discovery document".into(),
    )
}

/// The CapabilityStatement's `rest.security`: SMART on FHIR, with the OAuth URIs.
pub fn capability_security(req: &HttpRequest, state: &AppState) -> Value {
    let (token_endpoint, _) = endpoints(req, state);
    let mut uris = vec![];
    if let Some(t) = token_endpoint {
        uris.push(json!({ "url": "token", "valueUri": t }));
    }
    let mut security = json!({
        "cors": false,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
        }],
        "description": format!(
            "Bearer tokens (JWT) from the issuer {} for the audience {}; SMART v1 and v2 \
             scopes; roles patient, practitioner, auditor, admin and system.",
            state.auth.issuer(),
            state.auth.audience()
        ),
    });
    if !uris.is_empty() {
        security["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris,
        }]);
    }
    security
}

/// The discovery routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource([
            "/.well-known/smart-configuration",
            "/fhir/.well-known/smart-configuration",
        ])
        .route(web::get().to(smart_configuration)),
    )
    .service(
        web::resource("/.well-known/openid-configuration")
            .route(web::get().to(openid_configuration)),
    )
    .service(web::resource("/.well-known/jwks.json").route(web::get().to(jwks)));
}
