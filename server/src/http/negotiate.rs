//! Reading the parts of a FHIR request that are not the resource: query parameters, the
//! requested format (`_format`, `Accept`, `_pretty`), `Prefer`, `If-Match` and friends, the
//! body's media type and size. Each is parsed once into a typed value; anything malformed
//! is an [`ApiError`] naming what was wrong.

use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;

use super::error::ApiError;

/// The query parameters of a request, in order, repeated names kept.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses a query string (`a=1&b=2`).
    pub fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The value of a parameter that may appear once; a repeated one is a 400.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "parameter '{name}' may appear only once"
            )));
        }
        Ok(first)
    }
}

/// How a response body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    /// `_pretty=true`: indented JSON.
    pub pretty: bool,
}

const JSON_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "json",
    "text/json",
];

/// Decides the response format from `_format` (which wins) or `Accept`, and `_pretty`.
/// Only JSON is served; asking for anything else alone is a 406.
pub fn negotiate(req: &HttpRequest, params: &Params) -> Result<Format, ApiError> {
    let pretty = match params.single("_pretty")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "_pretty must be true or false, not '{other}'"
            )))
        }
    };
    if let Some(format) = params.single("_format")? {
        // A `+` left unescaped in a query string arrives as a space.
        let mime = format.replace(' ', "+");
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !JSON_TYPES.contains(&essence.as_str()) {
            return Err(ApiError::NotAcceptable(format!(
                "_format '{format}' is not supported; this server speaks application/fhir+json"
            )));
        }
        return Ok(Format { pretty });
    }
    if let Some(accept) = req.headers().get(header::ACCEPT) {
        let accept = accept
            .to_str()
            .map_err(|_| ApiError::BadRequest("the Accept header is not valid text".into()))?;
        if !accepts_json(accept) {
            return Err(ApiError::NotAcceptable(format!(
                "cannot answer in '{accept}'; this server speaks application/fhir+json"
            )));
        }
    }
    Ok(Format { pretty })
}

/// Whether an `Accept` header admits JSON (any media range that is JSON or a wildcard,
/// without `q=0`). An empty header admits anything.
fn accepts_json(accept: &str) -> bool {
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused
            && (JSON_TYPES.contains(&essence.as_str())
                || essence == "*/*"
                || essence == "application/*")
    })
}

/// Checks a request body is declared as JSON. A missing Content-Type is taken as JSON,
/// since some clients omit it; any other declared type is a 415.
pub fn require_json_body(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().map_err(|_| {
        ApiError::UnsupportedMediaType("the Content-Type header is not valid text".into())
    })?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/fhir+json" || essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{value}' is not supported; send application/fhir+json"
        )))
    }
}

/// Reads the whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: u64,
) -> Result<Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What the client asked to get back from a write (`Prefer: return=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPreference {
    /// No body.
    Minimal,
    /// The resource as stored (the default).
    #[default]
    Representation,
    /// An OperationOutcome about the interaction.
    OperationOutcome,
}

/// Reads `Prefer: return=…`; other preferences are ignored, as RFC 7240 allows.
pub fn return_preference(headers: &HeaderMap) -> ReturnPreference {
    for value in headers.get_all("prefer") {
        let Ok(value) = value.to_str() else { continue };
        for pref in value.split([',', ';']) {
            match pref.trim().replace(' ', "").as_str() {
                "return=minimal" => return ReturnPreference::Minimal,
                "return=representation" => return ReturnPreference::Representation,
                "return=OperationOutcome" => return ReturnPreference::OperationOutcome,
                _ => {}
            }
        }
    }
    ReturnPreference::default()
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Parses an entity tag holding a version (`W/"3"`, `"3"`), as sent in `If-Match` and
/// `If-None-Match`. A bare `3` is accepted too: some clients (fhirpy) send the version id
/// unquoted, and it can mean nothing else.
pub(crate) fn parse_version_tag(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    let unquoted = match raw.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => raw,
    };
    unquoted.parse().ok().filter(|v| *v >= 1)
}

/// The version named by `If-Match`, if any; a header that names no version is a 400.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_version_tag)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest("If-Match must be a version ETag such as W/\"3\"".into())
        })
}

/// Whether `If-None-Match` names `version` (or is `*`).
pub fn if_none_match_hits(headers: &HeaderMap, version: i64) -> bool {
    headers.get_all(header::IF_NONE_MATCH).any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == "*" || parse_version_tag(tag) == Some(version))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert!(accepts_json("application/fhir+json"));
        assert!(accepts_json("application/fhir+json; fhirVersion=4.0"));
        assert!(accepts_json("text/html, */*;q=0.8"));
        assert!(accepts_json("application/xml, application/json;q=0.5"));
        assert!(!accepts_json("application/fhir+xml"));
        assert!(!accepts_json("application/json;q=0, application/fhir+xml"));
    }

    #[test]
    fn version_tags() {
        assert_eq!(parse_version_tag("W/\"3\""), Some(3));
        assert_eq!(parse_version_tag("\"12\""), Some(12));
        assert_eq!(parse_version_tag("3"), Some(3));
        assert_eq!(parse_version_tag("\"3"), None);
        assert_eq!(parse_version_tag("W/\"x\""), None);
    }

    #[test]
    fn repeated_single_parameter_is_refused() {
        let p = Params::parse("_count=1&_count=2");
        assert!(p.single("_count").is_err());
        assert_eq!(
            Params::parse("a=b%2Bc").single("a").ok().flatten(),
            Some("b+c")
        );
    }
}
