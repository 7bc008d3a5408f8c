//! history: `GET [base]/[type]/[id]/_history`, `[base]/[type]/_history`, `[base]/_history`
//! (http.html#history).
//!
//! A `history` Bundle, newest first; each entry has `fullUrl`, the resource (absent for a
//! deletion), `request` (method and URL of the interaction that made it) and `response`
//! (status, ETag, lastModified). Parameters: `_count` (page size, default 50, at most 1000),
//! `_since` (instant), `_at` (dateTime: versions current at some point in that period).
//! Paging links carry `_snapshot`, the newest write the first page saw, so that writes made
//! while a client pages do not shift entries between pages.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{known_type, valid_id};
use crate::audit_trail::touch;
use crate::auth::{Interaction, Principal};
use crate::http::bundle::{self, Link};
use crate::http::error::ApiError;
use crate::http::negotiate::{self, etag, Format, Params};
use crate::http::response::base_url;
use crate::http::AppState;
use crate::store::{
    HistoryPage, HistoryQuery, HistoryScope, StoreError, VersionRecord, WriteMethod,
};

const DEFAULT_COUNT: u64 = 50;
const MAX_COUNT: u64 = 1000;

/// `GET [base]/_history`.
pub async fn system(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    // A patient-context token sees the types of its compartment that it may read (the
    // trail's AuditEvents name patients, but a patient may not read them); anyone else
    // must be allowed every type.
    let types: Vec<&str> = match principal.compartment() {
        Some(_) => fhir::definitions::r4()
            .resource_types()
            .filter(|t| {
                principal
                    .authorize(Interaction::HistoryType, Some(t), None)
                    .is_ok()
            })
            .collect(),
        None => Vec::new(),
    };
    if types.is_empty() {
        principal.authorize(Interaction::HistoryType, None, None)?;
    }
    history(&req, &state, &principal, HistoryScope::System(&types)).await
}

/// `GET [base]/[type]/_history`.
pub async fn type_level(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let resource_type = known_type(&path)?;
    principal.authorize(Interaction::HistoryType, Some(resource_type), None)?;
    history(&req, &state, &principal, HistoryScope::Type(resource_type)).await
}

/// `GET [base]/[type]/[id]/_history`.
pub async fn instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = (known_type(&path.0)?, valid_id(&path.1)?);
    principal
        .authorize_stored(
            &state.store,
            Interaction::HistoryInstance,
            resource_type,
            id,
            None,
        )
        .await?;
    let scope = HistoryScope::Instance(resource_type, id);
    let response = history(&req, &state, &principal, scope).await?;
    Ok(response)
}

/// A history page as `principal` may see it: with a patient context, only the versions of
/// resources in that Patient's compartment (the current version decides which resources in
/// SQL, then each listed version is checked itself, so a version from before a resource
/// moved into the compartment stays hidden; such a page can hold fewer than `_count`).
async fn history(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
    scope: HistoryScope<'_>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(req, &params)?;
    let base = base_url(req, state);
    let mut query = parse_query(&params, scope)?;
    query.compartment = principal.compartment();
    query.base_url = Some(&base);
    let mut page = state.store.history(&query).await?;
    if principal.compartment().is_some() {
        page.versions.retain(|v| principal.may_read(v));
    }
    if let HistoryScope::Instance(t, id) = scope {
        if page.total == Some(0) && query.since.is_none() && query.at.is_none() {
            return Err(ApiError::NotFound(format!("{t}/{id} does not exist")));
        }
    }
    touch(req, state, |t| {
        page.versions.iter().for_each(|v| t.patients_of(v))
    });
    bundle(&base, req.path(), &params, &query, &page, format)
}

fn parse_query<'a>(params: &Params, scope: HistoryScope<'a>) -> Result<HistoryQuery<'a>, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        params
            .single(name)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name} must be a non-negative integer, not '{v}'"
                    ))
                })
            })
            .transpose()
    };
    let count = number("_count")?.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT);
    let since = params
        .single("_since")?
        .map(|v| {
            fhir::primitives::parse_instant(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "_since must be an instant such as 2024-01-31T10:00:00Z, not '{v}'"
                ))
            })
        })
        .transpose()?;
    let at = params
        .single("_at")?
        .map(|v| {
            fhir::primitives::parse_date_time_range(v).ok_or_else(|| {
                ApiError::BadRequest(format!("_at must be a FHIR dateTime, not '{v}'"))
            })
        })
        .transpose()?;
    let snapshot = number("_snapshot")?
        .map(|s| {
            i64::try_from(s).map_err(|_| ApiError::BadRequest("_snapshot is out of range".into()))
        })
        .transpose()?;
    Ok(HistoryQuery {
        scope,
        since,
        at,
        snapshot,
        offset: number("_offset")?.unwrap_or(0),
        count,
        compartment: None,
        base_url: None,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: EntryRequest,
    response: EntryResponse,
}

#[derive(Serialize)]
struct EntryRequest {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResponse {
    status: &'static str,
    etag: String,
    last_modified: String,
}

fn bundle(
    base: &str,
    path: &str,
    params: &Params,
    query: &HistoryQuery<'_>,
    page: &HistoryPage,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    let raw: Vec<Option<Box<RawValue>>> = page
        .versions
        .iter()
        .map(|v| {
            v.content
                .as_ref()
                .map(|c| {
                    RawValue::from_string(c.clone()).map_err(|e| {
                        StoreError::Corrupt(format!(
                            "stored JSON of version {} does not parse: {e}",
                            v.seq
                        ))
                    })
                })
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let entry = page
        .versions
        .iter()
        .zip(&raw)
        .map(|(v, resource)| Entry {
            full_url: format!("{base}/{}/{}", v.resource_type, v.id),
            resource: resource.as_deref(),
            request: entry_request(v),
            response: EntryResponse {
                status: match v.method {
                    WriteMethod::Delete => "204 No Content",
                    _ if v.version == 1 => "201 Created",
                    _ => "200 OK",
                },
                etag: etag(v.version),
                last_modified: fhir::primitives::format_instant(v.last_updated),
            },
        })
        .collect();

    // The request path starts with the server's own `/fhir`, which `base` stands for.
    let relative = path.strip_prefix("/fhir").unwrap_or(path);
    let page_url = |offset: u64| -> String {
        let mut query_string = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params.0 {
            if !matches!(k.as_str(), "_offset" | "_snapshot") {
                query_string.append_pair(k, v);
            }
        }
        query_string.append_pair("_snapshot", &page.snapshot.to_string());
        query_string.append_pair("_offset", &offset.to_string());
        format!("{base}{relative}?{}", query_string.finish())
    };
    let mut link = vec![Link {
        relation: "self",
        url: page_url(query.offset),
    }];
    // `_count=0` asks for no entries: there is no next page of nothing.
    if page.has_more && query.count > 0 {
        link.push(Link {
            relation: "next",
            url: page_url(query.offset + query.count),
        });
    }
    if query.offset > 0 {
        link.push(Link {
            relation: "previous",
            url: page_url(query.offset.saturating_sub(query.count)),
        });
    }
    bundle::respond("history", page.total, link, entry, format)
}

fn entry_request(v: &VersionRecord) -> EntryRequest {
    let url = match v.method {
        WriteMethod::Create => v.resource_type.clone(),
        _ => format!("{}/{}", v.resource_type, v.id),
    };
    EntryRequest {
        method: v.method.as_str(),
        url,
    }
}
