//! Access control: bearer tokens, SMART scopes, the Casbin role policy and the Patient
//! compartment.
//!
//! # Flow
//! [`middleware`] runs on every request. Under `/fhir` and `/ledger` (except `metadata` and
//! `.well-known`) it requires `Authorization: Bearer <token>`, validates the token
//! ([`token`]: signature with an algorithm allow-list, `iss`, `aud`, `exp`, `nbf`) and puts
//! the resulting [`Principal`] into the request's extensions; a missing or refused token is
//! answered 401 with `WWW-Authenticate: Bearer …` and an OperationOutcome before any handler
//! runs. Handlers take the [`Principal`] as an extractor and ask it before acting.
//!
//! # The authorization API
//! - [`Principal::authorize`]`(interaction, Some(type), resource)` — the effective
//!   permission is the role policy ([`policy`], Casbin) ∩ the token's SMART scopes
//!   ([`scopes`]) ∩, when the token carries a patient context, that Patient's compartment
//!   (`resource`, when given, must be in it; without one the type must be able to be in
//!   it). `None` as the type means every type at once (system search and history).
//!   Denial is `ApiError::Forbidden` (403). Usable per entry of a transaction Bundle.
//! - [`Principal::authorize_record`] — the same for a stored version (parsed only when a
//!   compartment has to be checked).
//! - [`Principal::authorize_stored`] — update, delete and instance history: also checks the version being
//!   replaced, and for the `patient` role that only `address` and `telecom` change.
//! - [`Principal::compartment`] — the patient id to confine searches to; the store turns it
//!   into a SQL condition over the compartment's reference parameters, so paging and totals
//!   stay right ([`crate::store::search::SearchQuery::compartment`]); type and system
//!   history are confined the same way ([`crate::store::HistoryQuery::compartment`]).
//! - [`Principal::actor`] — who writes, for ledger entries (`fhirUser`, else `sub`).
//!
//! AuditEvents are written by the server only: creating, updating or deleting one through
//! the API is refused for every role, whatever the policy file says.

pub mod discovery;
pub mod oidc;
pub mod policy;
pub mod scopes;
pub mod token;

use std::path::Path;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use serde_json::Value;

use crate::config::{AuthArgs, AuthMode};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::{Store, VersionRecord};
use policy::Policy;
use scopes::{Permission, ScopeContext, Scopes};
use token::{Claims, DevKey, TokenError};

/// The dev-mode issuer when `--auth-issuer` is not given.
pub const DEV_ISSUER: &str = "fhir-notary-dev";

/// The roles of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Reads their own compartment; may change their own address and telecom.
    Patient,
    /// A care facility's staff: create, update and read clinical resources.
    Practitioner,
    /// Reads everything, including the ledger and AuditEvents; writes nothing.
    Auditor,
    /// Everything.
    Admin,
    /// A backend client, governed by its scopes.
    System,
}

impl Role {
    /// The name in tokens and in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Practitioner => "practitioner",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        [
            Role::Patient,
            Role::Practitioner,
            Role::Auditor,
            Role::Admin,
            Role::System,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }

    /// The scopes `fhir-notary token` grants a role when none are asked for.
    pub fn default_scopes(self) -> &'static str {
        match self {
            Role::Patient => "launch/patient patient/*.rs patient/Patient.u",
            Role::Practitioner => "user/*.cruds",
            Role::Auditor => "user/*.rs",
            Role::Admin => "user/*.cruds",
            Role::System => "system/*.cruds",
        }
    }
}

/// What a request does, in the policy's and the scopes' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// read.
    Read,
    /// vread.
    Vread,
    /// search (type or system).
    Search,
    /// history of one resource.
    HistoryInstance,
    /// history of a type or of the whole server.
    HistoryType,
    /// create.
    Create,
    /// update (and patch).
    Update,
    /// delete.
    Delete,
    /// reading the ledger (blocks, head, proofs).
    Ledger,
}

impl Interaction {
    /// The policy action.
    pub fn action(self) -> &'static str {
        match self {
            Interaction::Read | Interaction::Vread | Interaction::Ledger => "read",
            Interaction::Search | Interaction::HistoryInstance | Interaction::HistoryType => {
                "search"
            }
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
        }
    }

    fn permission(self) -> Permission {
        match self {
            Interaction::Read | Interaction::Vread | Interaction::Ledger => Permission::Read,
            Interaction::Search | Interaction::HistoryInstance | Interaction::HistoryType => {
                Permission::Search
            }
            Interaction::Create => Permission::Create,
            Interaction::Update => Permission::Update,
            Interaction::Delete => Permission::Delete,
        }
    }
}

/// How tokens are checked: the configuration, the keys and the role policy.
#[derive(Clone, Debug)]
pub struct Auth(Arc<AuthInner>);

#[derive(Debug)]
struct AuthInner {
    keys: Keys,
    issuer: String,
    audience: String,
    role_claim: String,
    policy: Arc<Policy>,
}

#[derive(Debug)]
enum Keys {
    Dev(DevKey),
    Oidc(oidc::Provider),
}

impl Auth {
    /// Sets up token checking as configured; `data_dir` holds the dev-mode key.
    pub async fn from_args(args: &AuthArgs, data_dir: &Path) -> Result<Auth, String> {
        let policy = Policy::load(args.auth_model.as_deref(), args.auth_policy.as_deref()).await?;
        let (keys, issuer) = match args.auth_mode {
            AuthMode::Dev => (
                Keys::Dev(DevKey::load_or_create(&data_dir.join(token::DEV_KEY_FILE))?),
                args.auth_issuer
                    .clone()
                    .unwrap_or_else(|| DEV_ISSUER.to_owned()),
            ),
            AuthMode::Oidc => {
                let issuer = args
                    .auth_issuer
                    .clone()
                    .ok_or("--auth-mode oidc needs --auth-issuer (the provider's issuer URL)")?;
                (Keys::Oidc(oidc::Provider::discover(&issuer).await?), issuer)
            }
        };
        Ok(Auth(Arc::new(AuthInner {
            keys,
            issuer,
            audience: args.auth_audience.clone(),
            role_claim: args.auth_role_claim.clone(),
            policy: Arc::new(policy),
        })))
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.0.audience
    }

    /// The provider's `(token endpoint, JWKS URI)` in oidc mode; `None` in dev mode, where
    /// this server publishes its own JWKS and has no token endpoint.
    pub fn provider_endpoints(&self) -> Option<(Option<String>, String)> {
        match &self.0.keys {
            Keys::Dev(_) => None,
            Keys::Oidc(p) => Some((p.token_endpoint.clone(), p.jwks_uri.clone())),
        }
    }

    /// Whether tokens come from this server's own key.
    pub fn is_dev(&self) -> bool {
        matches!(self.0.keys, Keys::Dev(_))
    }

    /// The public keys tokens are checked with, as a JWKS (dev mode; empty otherwise).
    pub fn jwks(&self) -> Value {
        match &self.0.keys {
            Keys::Dev(key) => serde_json::json!({ "keys": [key.jwk()] }),
            Keys::Oidc(_) => serde_json::json!({ "keys": [] }),
        }
    }

    /// Signs a token for `role` with the dev key (`fhir-notary token`).
    pub fn mint(&self, request: &MintRequest) -> Result<String, String> {
        let Keys::Dev(key) = &self.0.keys else {
            return Err("tokens can only be minted in dev mode".into());
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut extra = serde_json::Map::new();
        extra.insert(self.0.role_claim.clone(), request.role.as_str().into());
        let claims = Claims {
            iss: self.0.issuer.clone(),
            sub: request.subject.clone(),
            aud: self.0.audience.clone().into(),
            exp: now + i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: Some(now),
            nbf: Some(now),
            scope: Some(
                request
                    .scope
                    .clone()
                    .unwrap_or_else(|| request.role.default_scopes().to_owned()),
            ),
            patient: request.patient.clone(),
            fhir_user: request.fhir_user.clone(),
            extra,
        };
        key.mint(&claims)
    }

    /// Validates an `Authorization` header value into a principal.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, TokenError> {
        let token = authorization
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        let header = token::header(token)?;
        let claims = match &self.0.keys {
            Keys::Dev(key) => {
                let dk = key
                    .decoding_key(header.kid.as_deref())
                    .ok_or(TokenError::Invalid(
                        "the token was signed by an unknown key",
                    ))?;
                if header.alg != jsonwebtoken::Algorithm::EdDSA {
                    return Err(TokenError::Invalid("the token's algorithm is not accepted"));
                }
                token::verify(token, header.alg, dk, &self.0.issuer, &self.0.audience)?
            }
            Keys::Oidc(provider) => {
                provider
                    .verify(token, &header, &self.0.issuer, &self.0.audience)
                    .await?
            }
        };
        Ok(self.principal(claims))
    }

    fn principal(&self, claims: Claims) -> Principal {
        let role = match claims.extra.get(&self.0.role_claim) {
            Some(Value::String(s)) => Role::parse(s),
            Some(Value::Array(roles)) => {
                roles.iter().filter_map(Value::as_str).find_map(Role::parse)
            }
            _ => None,
        };
        Principal {
            subject: claims.sub,
            role,
            scopes: Scopes::parse(claims.scope.as_deref().unwrap_or("")),
            patient: claims.patient.filter(|p| fhir::validate::is_valid_id(p)),
            fhir_user: claims.fhir_user,
            policy: Arc::clone(&self.0.policy),
        }
    }
}

/// What `fhir-notary token` asks for.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The role claim.
    pub role: Role,
    /// `sub`.
    pub subject: String,
    /// The SMART patient context.
    pub patient: Option<String>,
    /// `fhirUser`.
    pub fhir_user: Option<String>,
    /// Scopes; the role's defaults when `None`.
    pub scope: Option<String>,
    /// Lifetime.
    pub ttl: std::time::Duration,
}

/// The caller, from a validated token.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// The role claim, when it names a role of the policy.
    pub role: Option<Role>,
    /// The token's SMART scopes.
    pub scopes: Scopes,
    /// The SMART patient context (a Patient id).
    pub patient: Option<String>,
    /// SMART `fhirUser`.
    pub fhir_user: Option<String>,
    policy: Arc<Policy>,
}

impl Principal {
    /// Who writes, for ledger entries: the `fhirUser` (`Practitioner/123`), else `sub`.
    pub fn actor(&self) -> String {
        self.fhir_user
            .clone()
            .unwrap_or_else(|| self.subject.clone())
    }

    /// The Patient whose compartment confines this caller, if any.
    pub fn compartment(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// Whether `interaction` on `resource_type` (`None`: every type) is permitted, for
    /// `resource` when given (see the module doc).
    pub fn authorize(
        &self,
        interaction: Interaction,
        resource_type: Option<&str>,
        resource: Option<&Value>,
    ) -> Result<(), ApiError> {
        let role = self.role.ok_or_else(|| {
            ApiError::Forbidden("the token names no role this server knows".into())
        })?;
        let action = interaction.action();
        if resource_type == Some("AuditEvent")
            && matches!(
                interaction,
                Interaction::Create | Interaction::Update | Interaction::Delete
            )
        {
            return Err(ApiError::Forbidden(
                "AuditEvents are written by the server only; they cannot be created, changed \
                 or deleted through the API"
                    .into(),
            ));
        }
        if role == Role::Patient && self.patient.is_none() {
            return Err(ApiError::Forbidden(
                "a patient token must carry a patient context".into(),
            ));
        }
        // The policy.
        let denied = |object: &str| {
            ApiError::Forbidden(format!(
                "the role '{}' may not {action} {object}",
                role.as_str()
            ))
        };
        match (interaction, resource_type) {
            (Interaction::Ledger, _) => {
                if !self.policy.allows(role.as_str(), "ledger", action) {
                    return Err(denied("the ledger"));
                }
            }
            (_, Some(t)) => {
                if !self.policy.allows(role.as_str(), t, action) {
                    return Err(denied(t));
                }
            }
            (_, None) => {
                if let Some(t) = fhir::definitions::r4()
                    .resource_types()
                    .find(|t| !self.policy.allows(role.as_str(), t, action))
                {
                    return Err(denied(&format!("{t} (name the types with _type)")));
                }
            }
        }
        // The scopes: patient/ scopes only count with a patient in context.
        let perm = interaction.permission();
        let scope_type = match interaction {
            Interaction::Ledger => None,
            _ => resource_type,
        };
        let granted = self
            .scopes
            .granting(perm, scope_type)
            .any(|s| s.context != ScopeContext::Patient || self.patient.is_some());
        if !granted {
            return Err(ApiError::Forbidden(format!(
                "the token's scopes do not grant '{perm}' on {}",
                scope_type.unwrap_or("every resource type")
            )));
        }
        // The compartment.
        if let Some(patient) = &self.patient {
            let compartment = fhir::compartment::patient_compartment();
            let outside = || {
                ApiError::Forbidden(format!(
                    "this token is confined to the compartment of Patient/{patient}"
                ))
            };
            match (interaction, resource_type, resource) {
                (Interaction::Ledger, _, _) => {
                    return Err(ApiError::Forbidden(format!(
                        "this token is confined to the compartment of Patient/{patient}: \
                         the ledger is not available to it"
                    )))
                }
                (_, _, Some(r)) => {
                    if !compartment.contains(r, patient) {
                        return Err(outside());
                    }
                }
                (_, Some(t), None) => {
                    if t != "Patient" && compartment.params(t).is_empty() {
                        return Err(outside());
                    }
                }
                (_, None, None) => {}
            }
        }
        Ok(())
    }

    /// [`Self::authorize`] for each of `types` (a system search's `_type`), or for every
    /// type when `types` is empty.
    pub fn authorize_types(
        &self,
        interaction: Interaction,
        types: &[String],
    ) -> Result<(), ApiError> {
        if types.is_empty() {
            return self.authorize(interaction, None, None);
        }
        types
            .iter()
            .try_for_each(|t| self.authorize(interaction, Some(t), None))
    }

    /// [`Self::authorize`] for a stored version; its JSON is parsed only when a compartment
    /// must be checked. A deletion (no content) is checked at the type level.
    pub fn authorize_record(
        &self,
        interaction: Interaction,
        record: &VersionRecord,
    ) -> Result<(), ApiError> {
        let resource = match (&self.patient, &record.content) {
            (Some(_), Some(text)) => Some(parse_stored(text)?),
            _ => None,
        };
        self.authorize(interaction, Some(&record.resource_type), resource.as_ref())
    }

    /// Whether the caller may see `record` at all (for `_include`d resources, which are
    /// filtered rather than refused).
    pub fn may_read(&self, record: &VersionRecord) -> bool {
        self.authorize_record(Interaction::Read, record).is_ok()
    }

    /// Update (`new` given) or delete of `resource_type/id`: `new` and, with a patient
    /// context or for the `patient` role, the current version are checked; a patient may
    /// change only the `address` and `telecom` of an existing resource.
    pub async fn authorize_stored(
        &self,
        store: &Store,
        interaction: Interaction,
        resource_type: &str,
        id: &str,
        new: Option<&Value>,
    ) -> Result<(), ApiError> {
        self.authorize(interaction, Some(resource_type), new)?;
        if !self.needs_current() {
            return Ok(());
        }
        let current = store.read_current(resource_type, id).await?;
        let current = match current.as_ref().and_then(|c| c.content.as_deref()) {
            Some(text) => Some(parse_stored(text)?),
            None => None,
        };
        self.authorize_change(interaction, resource_type, current.as_ref(), new)
    }

    /// Whether [`Self::authorize_change`] looks at the current version (it does for
    /// patient tokens only), so writers can skip reading it otherwise.
    pub fn needs_current(&self) -> bool {
        self.patient.is_some() || self.role == Some(Role::Patient)
    }

    /// A write of `resource_type` replacing `current` (None: nothing there) with `new`
    /// (None: a delete), as [`Self::authorize_stored`] checks it, given the current version:
    /// the write paths call it inside their transaction, with the version they locked.
    pub fn authorize_change(
        &self,
        interaction: Interaction,
        resource_type: &str,
        current: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<(), ApiError> {
        self.authorize(interaction, Some(resource_type), new)?;
        if !self.needs_current() {
            return Ok(());
        }
        if let Some(c) = current {
            self.authorize(interaction, Some(resource_type), Some(c))?;
        }
        if self.role == Some(Role::Patient)
            && matches!(interaction, Interaction::Update | Interaction::Delete)
        {
            match (interaction, current, new) {
                (Interaction::Update, Some(old), Some(new)) => {
                    if !same_except_contact(old, new) {
                        return Err(ApiError::Forbidden(
                            "a patient may change only the address and telecom of their own \
                             record"
                                .into(),
                        ));
                    }
                }
                _ => {
                    return Err(ApiError::Forbidden(
                        "a patient may only update their own existing record".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn parse_stored(text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::Store(crate::store::StoreError::Corrupt(format!(
            "stored JSON does not parse: {e}"
        )))
    })
}

/// Whether two versions differ in nothing but `address`, `telecom` and what the server
/// itself maintains (`meta`, the narrative `text`).
fn same_except_contact(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ["address", "telecom", "meta", "text"] {
                o.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Whether `path` needs a token: the FHIR API and the ledger, but not the
/// CapabilityStatement or the discovery documents.
pub fn needs_token(path: &str) -> bool {
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    if under("/fhir") {
        !(path == "/fhir/metadata" || path.starts_with("/fhir/.well-known/"))
    } else {
        under("/ledger")
    }
}

/// Requires and validates a bearer token where [`needs_token`] says so, and stores the
/// [`Principal`] in the request's extensions.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    if needs_token(req.path()) {
        let auth = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.auth.clone())
            .ok_or_else(|| ApiError::Internal("no application state".into()))?;
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match auth.authenticate(authorization.as_deref()).await {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
            }
            Err(e) => {
                let err = ApiError::Unauthorized {
                    reason: e.to_string(),
                    invalid_token: e != TokenError::Missing,
                };
                req.extensions_mut().insert(Refused(e));
                let response = err.error_response();
                return Ok(req.into_response(response).map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Marks a request whose token was refused (for the audit trail).
#[derive(Debug, Clone)]
pub struct Refused(pub TokenError);

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(req.extensions().get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Unauthorized {
                reason: TokenError::Missing.to_string(),
                invalid_token: false,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_needed_for_data_not_for_discovery() {
        assert!(needs_token("/fhir/Patient"));
        assert!(needs_token("/fhir"));
        assert!(needs_token("/fhir/"));
        assert!(needs_token("/ledger/head"));
        assert!(!needs_token("/fhir/metadata"));
        assert!(!needs_token("/fhir/.well-known/smart-configuration"));
        assert!(!needs_token("/.well-known/jwks.json"));
        assert!(!needs_token("/healthz"));
        assert!(!needs_token("/openapi.json"));
    }

    #[test]
    fn a_patient_may_change_contact_details_only() {
        let old = serde_json::json!({"resourceType": "Patient", "id": "p", "gender": "male",
            "meta": {"versionId": "1"}, "address": [{"city": "A"}]});
        let moved = serde_json::json!({"resourceType": "Patient", "id": "p", "gender": "male",
            "address": [{"city": "B"}], "telecom": [{"system": "phone", "value": "1"}]});
        let other = serde_json::json!({"resourceType": "Patient", "id": "p", "gender": "female",
            "address": [{"city": "B"}]});
        assert!(same_except_contact(&old, &moved));
        assert!(!same_except_contact(&old, &other));
    }
}
