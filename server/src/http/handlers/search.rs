//! search: `GET [base]/[type]?…`, `POST [base]/[type]/_search` (form-encoded), and system
//! search `GET [base]?_type=…` / `POST [base]/_search` (http.html#search, search.html).
//!
//! Answers 200 with a `searchset` Bundle: `entry.search.mode` `match` for the matches,
//! `include` for what `_include`/`_revinclude` add (each resource once, never a match
//! twice), and, when lenient handling left parameters out, one `outcome` entry naming them.
//! Links: `self` (only the parameters applied), `next` and `previous` (keyset cursors in
//! `_cursor`, see [`crate::store::search`]). `total` when `_total` asks for it, with
//! `_summary=count`, or when the first page holds every match.
//!
//! `Prefer: handling=strict` answers unknown parameters and unsupported modifiers with 400;
//! the default, lenient, ignores them. Values that do not parse are 400 in both modes. A POST
//! body must be `application/x-www-form-urlencoded` (else 415); its parameters join the query
//! string's. `_summary`, `_elements`, `_format` and `_pretty` shape the response.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use fhir::outcome::{Issue, IssueType, OperationOutcome, Severity};
use fhir::search::{SearchRequest, Summary};
use serde::Serialize;
use serde_json::value::RawValue;

use super::known_type;
use crate::audit_trail::{touch, Touched};
use crate::auth::{Interaction, Principal};
use crate::http::bundle::{self, Link};
use crate::http::error::{ApiError, FHIR_JSON};
use crate::http::negotiate::{self, Format, Params};
use crate::http::response::{base_url, version_body, Projection};
use crate::http::AppState;
use crate::store::search::{Cursor, SearchPage, SearchQuery};
use crate::store::{StoreError, VersionRecord};

const DEFAULT_COUNT: u64 = 50;
/// The paging position in `next`/`previous` links; not a FHIR parameter, so it is taken out
/// before the request is parsed.
const CURSOR: &str = "_cursor";

/// `GET [base]/[type]`.
pub async fn type_get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    let params = Params::parse(req.query_string());
    search(&req, &state, &principal, Some(resource_type), params).await
}

/// `GET [base]/Patient/[id]/[type]`: a search of `type` within the Patient's compartment
/// (its resources that refer to the Patient through the compartment's parameters).
pub async fn compartment(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let id = super::valid_id(&path.0)?;
    let resource_type = known_type(&path.1)?;
    if resource_type != "Patient"
        && fhir::compartment::patient_compartment()
            .params(resource_type)
            .is_empty()
    {
        return Err(ApiError::NotFound(format!(
            "{resource_type} is not in the Patient compartment"
        )));
    }
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(&req, &params)?;
    let base = base_url(&req, &state);
    principal.authorize_types(Interaction::Search, &[resource_type.to_owned()])?;
    let found = searchset(
        &state,
        &principal,
        &base,
        Some(resource_type),
        Some(id),
        params,
        strict_handling(&req),
    )
    .await?;
    touch(&req, &state, |t| t.merge(found.touched));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(bundle::formatted(found.body, format)?))
}

/// `POST [base]/[type]/_search`.
pub async fn type_post(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    payload: web::Payload,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    let params = form_params(&req, &state, payload).await?;
    search(&req, &state, &principal, Some(resource_type), params).await
}

/// `GET [base]?_type=…`.
pub async fn system_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string());
    search(&req, &state, &principal, None, params).await
}

/// `POST [base]/_search`.
pub async fn system_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let params = form_params(&req, &state, payload).await?;
    search(&req, &state, &principal, None, params).await
}

/// The query string's parameters followed by the form body's.
async fn form_params(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<Params, ApiError> {
    if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
        let value = value.to_str().unwrap_or("");
        let essence = value.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type '{value}' is not supported for _search; send \
                 application/x-www-form-urlencoded"
            )));
        }
    }
    let body = negotiate::read_body(req, payload, state.max_body_bytes).await?;
    let mut params = Params::parse(req.query_string());
    params.0.extend(
        form_urlencoded::parse(&body)
            .into_owned()
            .collect::<Vec<_>>(),
    );
    Ok(params)
}

/// Whether `Prefer: handling=strict` was sent (lenient is the default).
fn strict_handling(req: &HttpRequest) -> bool {
    req.headers().get_all("prefer").any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().replace(' ', "") == "handling=strict")
        })
    })
}

async fn search(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    resource_type: Option<&str>,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate::negotiate(req, &params)?;
    let base = base_url(req, state);
    let found = searchset(
        state,
        principal,
        &base,
        resource_type,
        None,
        params,
        strict_handling(req),
    )
    .await?;
    touch(req, state, |t| t.merge(found.touched));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(bundle::formatted(found.body, format)?))
}

/// Runs a search as `principal` may see it (within Patient `compartment`'s compartment
/// when given) and renders its searchset Bundle (compact JSON): the REST search
/// interactions, compartment search and the GET entries of a Bundle share it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn searchset(
    state: &AppState,
    principal: &Principal,
    base: &str,
    resource_type: Option<&str>,
    compartment: Option<&str>,
    params: Params,
    strict: bool,
) -> Result<Found, ApiError> {
    let asked = compartment;
    let compartment = match (asked, principal.compartment()) {
        (Some(asked), Some(own)) if asked != own => {
            return Err(ApiError::Forbidden(format!(
                "this token is confined to the compartment of Patient/{own}"
            )))
        }
        (asked, own) => asked.or(own),
    };
    let cursor = params
        .single(CURSOR)?
        .map(|raw| {
            Cursor::decode(raw).ok_or_else(|| {
                ApiError::BadRequest(format!("{CURSOR} is not a paging position of this server"))
            })
        })
        .transpose()?;
    // No FHIR value holds control characters, and PostgreSQL text cannot hold NUL.
    if let Some((name, _)) = params
        .0
        .iter()
        .find(|(k, v)| k.chars().chain(v.chars()).any(|c| c < ' ' && c != '\t'))
    {
        return Err(ApiError::BadRequest(format!(
            "search parameter '{}' contains a control character",
            name.escape_debug()
        )));
    }
    let rest: Vec<(String, String)> = params.0.into_iter().filter(|(k, _)| k != CURSOR).collect();
    let request =
        fhir::search::parse_search(fhir::search::r4_search(), resource_type, &rest, strict)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    principal.authorize_types(Interaction::Search, &request.resource_types)?;
    if let Some(c) = &cursor {
        if !c.fits(&request) {
            return Err(ApiError::BadRequest(format!(
                "{CURSOR} belongs to a search with another _sort"
            )));
        }
    }
    let projection = projection(&request)?;
    let mut page = state
        .store
        .search(&SearchQuery {
            request: &request,
            base_url: Some(base),
            cursor: cursor.as_ref(),
            count: request.count.map_or(DEFAULT_COUNT, u64::from),
            compartment,
        })
        .await?;
    page.included.retain(|v| principal.may_read(v));
    let mut touched = Touched::default();
    if state.audit.is_some() {
        for record in page.matches.iter().chain(&page.included) {
            touched.patients_of(record);
        }
    }
    let path = match (asked, resource_type) {
        (Some(patient), Some(t)) => format!("{base}/Patient/{patient}/{t}"),
        (_, Some(t)) => format!("{base}/{t}"),
        (_, None) => base.to_owned(),
    };
    let body = bundle(&path, base, &request, cursor.as_ref(), &page, &projection)?;
    Ok(Found { body, touched })
}

/// A rendered searchset and what the audit trail should know of it.
pub(super) struct Found {
    /// The Bundle, compact JSON.
    pub body: String,
    /// The Patients whose resources it holds (left empty when the trail is off).
    pub touched: Touched,
}

/// `_summary` (but `count`) and `_elements` as the read handlers apply them.
fn projection(request: &SearchRequest) -> Result<Projection, ApiError> {
    let mut params = Params::default();
    let summary = match request.summary {
        Some(Summary::True) => Some("true"),
        Some(Summary::Text) => Some("text"),
        Some(Summary::Data) => Some("data"),
        _ => None,
    };
    if let Some(s) = summary {
        params.0.push(("_summary".into(), s.into()));
    }
    if let Some(elements) = &request.elements {
        params.0.push(("_elements".into(), elements.join(",")));
    }
    Projection::parse(&params)
}

fn corrupt(e: serde_json::Error) -> ApiError {
    ApiError::Store(StoreError::Corrupt(e.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    full_url: String,
    resource: &'a RawValue,
    search: EntrySearch,
}

#[derive(Serialize)]
struct EntrySearch {
    mode: &'static str,
}

fn bundle(
    path: &str,
    base: &str,
    request: &SearchRequest,
    cursor: Option<&Cursor>,
    page: &SearchPage,
    projection: &Projection,
) -> Result<String, ApiError> {
    let raw = |v: &VersionRecord| -> Result<Box<RawValue>, ApiError> {
        let text = version_body(v, Format::default(), projection)?;
        RawValue::from_string(text).map_err(corrupt)
    };
    let matches = page
        .matches
        .iter()
        .map(|v| Ok((v, raw(v)?, "match")))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let included = page
        .included
        .iter()
        .map(|v| Ok((v, raw(v)?, "include")))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let outcome = (!request.ignored.is_empty())
        .then(|| {
            let issues = request
                .ignored
                .iter()
                .map(|(name, value, why)| Issue {
                    severity: Severity::Warning,
                    code: IssueType::NotSupported,
                    diagnostics: Some(format!("`{name}={value}` was ignored: {why}")),
                    expression: Vec::new(),
                })
                .collect();
            RawValue::from_string(OperationOutcome { issues }.to_json().to_string())
                .map_err(corrupt)
        })
        .transpose()?;

    let mut entry: Vec<Entry<'_>> = matches
        .iter()
        .chain(&included)
        .map(|(v, resource, mode)| Entry {
            full_url: format!("{base}/{}/{}", v.resource_type, v.id),
            resource,
            search: EntrySearch { mode },
        })
        .collect();
    if let Some(resource) = &outcome {
        entry.push(Entry {
            full_url: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            resource,
            search: EntrySearch { mode: "outcome" },
        });
    }

    let url = |cursor: Option<&Cursor>| -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &request.applied {
            query.append_pair(k, v);
        }
        if let Some(c) = cursor {
            query.append_pair(CURSOR, &c.encode());
        }
        let query = query.finish();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    };
    let mut link = vec![Link {
        relation: "self",
        url: url(cursor),
    }];
    if let Some(next) = &page.next {
        link.push(Link {
            relation: "next",
            url: url(Some(next)),
        });
    }
    if let Some(previous) = &page.previous {
        link.push(Link {
            relation: "previous",
            url: url(Some(previous)),
        });
    }
    let total = if request.total == Some(fhir::search::TotalMode::None) {
        None
    } else {
        page.total
    };
    bundle::render("searchset", total, link, entry)
}
