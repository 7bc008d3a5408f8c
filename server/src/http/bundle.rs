//! The Bundles this server builds itself (history, searchset): one envelope, one way of
//! writing it out. Entries differ per Bundle type and stay with their handlers; they embed
//! stored resources as raw JSON, so a Bundle costs no re-parse unless `_pretty` asks for one.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;
use time::OffsetDateTime;

use super::error::{ApiError, FHIR_JSON};
use super::negotiate::Format;
use super::response::json_text;
use crate::store::StoreError;

/// `Bundle.link`.
#[derive(Debug, Serialize)]
pub struct Link {
    /// `self`, `next` or `previous`.
    pub relation: &'static str,
    /// The URL.
    pub url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<E> {
    resource_type: &'static str,
    id: String,
    meta: Meta,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<E>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: String,
}

fn corrupt(e: serde_json::Error) -> ApiError {
    ApiError::Store(StoreError::Corrupt(e.to_string()))
}

/// A Bundle of type `kind` (a fresh id, `meta.lastUpdated` now), as compact JSON.
pub fn render<E: Serialize>(
    kind: &'static str,
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<E>,
) -> Result<String, ApiError> {
    let bundle = Envelope {
        resource_type: "Bundle",
        id: uuid::Uuid::new_v4().to_string(),
        meta: Meta {
            last_updated: fhir::primitives::format_instant(OffsetDateTime::now_utc()),
        },
        kind,
        total,
        link,
        entry,
    };
    serde_json::to_string(&bundle).map_err(corrupt)
}

/// A 200 carrying a Bundle of type `kind` (see [`render`]).
pub fn respond<E: Serialize>(
    kind: &'static str,
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<E>,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    let compact = render(kind, total, link, entry)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(formatted(compact, format)?))
}

/// Compact Bundle JSON, re-indented when `_pretty` asks for it (embedded raw resources
/// are re-indented only by a parse).
pub fn formatted(compact: String, format: Format) -> Result<String, ApiError> {
    if format.pretty {
        let value: serde_json::Value = serde_json::from_str(&compact).map_err(corrupt)?;
        Ok(json_text(&value, format))
    } else {
        Ok(compact)
    }
}
