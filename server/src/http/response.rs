//! Building FHIR responses: a stored version with its ETag and Last-Modified, `_summary` and
//! `_elements` projections, `_pretty` printing. Stored JSON is sent as stored whenever no
//! projection or pretty-printing is asked for, so reads cost no parse.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HttpDate};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use fhir::summary::SummaryMode;
use serde_json::Value;
use time::OffsetDateTime;

use super::error::{ApiError, FHIR_JSON};
use super::negotiate::{etag, Format, Params};
use super::AppState;
use crate::store::{StoreError, VersionRecord};

/// `_summary` and `_elements` of a read.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    summary: Option<SummaryMode>,
    elements: Option<Vec<String>>,
}

impl Projection {
    /// Reads `_summary` and `_elements`; `_summary=count` makes no sense on a read.
    pub fn parse(params: &Params) -> Result<Self, ApiError> {
        let summary = match params.single("_summary")? {
            None | Some("false") => None,
            Some("true") => Some(SummaryMode::True),
            Some("text") => Some(SummaryMode::Text),
            Some("data") => Some(SummaryMode::Data),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "_summary '{other}' is not supported here (true, text, data, false)"
                )))
            }
        };
        let elements = params.single("_elements")?.map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        if summary.is_some() && elements.is_some() {
            return Err(ApiError::BadRequest(
                "_summary and _elements cannot be combined".into(),
            ));
        }
        Ok(Projection { summary, elements })
    }

    fn is_identity(&self) -> bool {
        self.summary.is_none() && self.elements.is_none()
    }

    fn apply(&self, resource: &mut Value) {
        let defs = fhir::definitions::r4();
        if let Some(mode) = self.summary {
            fhir::summary::apply_summary(defs, resource, mode);
        }
        if let Some(elements) = &self.elements {
            let names: Vec<&str> = elements.iter().map(String::as_str).collect();
            fhir::summary::apply_elements(defs, resource, &names);
        }
    }
}

/// The `Last-Modified` value of an instant (HTTP dates have whole seconds).
pub fn http_date(t: OffsetDateTime) -> HttpDate {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A response builder carrying a version's ETag and Last-Modified.
pub fn version_headers(status: StatusCode, record: &VersionRecord) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((header::ETAG, etag(record.version)))
        .insert_header(header::LastModified(http_date(record.last_updated)));
    builder
}

/// Serializes a JSON value for the client.
pub fn json_text(value: &Value, format: Format) -> String {
    if format.pretty {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        value.to_string()
    }
}

/// The body of a stored version as the client asked for it.
pub fn version_body(
    record: &VersionRecord,
    format: Format,
    projection: &Projection,
) -> Result<String, ApiError> {
    let content = record
        .content
        .as_deref()
        .ok_or_else(|| StoreError::Corrupt(format!("version {} has no content", record.seq)))?;
    if projection.is_identity() && !format.pretty {
        return Ok(content.to_owned());
    }
    let mut value: Value = serde_json::from_str(content).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored JSON of version {} does not parse: {e}",
            record.seq
        ))
    })?;
    projection.apply(&mut value);
    Ok(json_text(&value, format))
}

/// A 200 (or other status) carrying a stored version.
pub fn version_response(
    status: StatusCode,
    record: &VersionRecord,
    format: Format,
    projection: &Projection,
) -> Result<HttpResponse, ApiError> {
    let body = version_body(record, format, projection)?;
    Ok(version_headers(status, record)
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(body))
}

/// The FHIR base URL (`…/fhir`): the configured one, or the one the request came in on.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    match &state.base_url {
        Some(base) => base.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}/fhir", info.scheme(), info.host())
        }
    }
}
