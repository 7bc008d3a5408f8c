//! Transaction and batch Bundles (http.html#transaction): a request Bundle parsed into typed
//! entries, the order the spec processes them in, and the reference rewriting that ties
//! the entries together (`urn:uuid:` full URLs and conditional references such as
//! `Patient?identifier=sys|val` replaced by the ids the server resolved them to).
//!
//! Nothing here touches storage: the server decides what each entry resolves to and
//! writes; this module only reads and rewrites JSON.

use std::collections::HashMap;

use serde_json::Value;

use crate::outcome::{Issue, IssueType};

/// `Bundle.type` of a request Bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All entries succeed or none does.
    Transaction,
    /// Each entry on its own.
    Batch,
}

impl BundleKind {
    /// The `Bundle.type` of the response.
    pub fn response_type(self) -> &'static str {
        match self {
            BundleKind::Transaction => "transaction-response",
            BundleKind::Batch => "batch-response",
        }
    }
}

/// `Bundle.entry.request.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Processed first.
    Delete,
    /// Then creates.
    Post,
    /// Then updates and patches.
    Put,
    /// Patches run with updates.
    Patch,
    /// Reads run last and see the writes.
    Get,
    /// Like GET, without a body.
    Head,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "DELETE" => Method::Delete,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => return None,
        })
    }

    /// The method as written in a Bundle.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Delete => "DELETE",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }

    /// The spec's processing rank: DELETE, POST, PUT/PATCH, GET/HEAD.
    fn rank(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// One entry of a request Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the Bundle (responses keep the order of the request).
    pub index: usize,
    /// `entry.fullUrl`.
    pub full_url: Option<String>,
    /// `entry.request.method`.
    pub method: Method,
    /// `entry.request.url`, relative to the server's base.
    pub url: String,
    /// `entry.resource`.
    pub resource: Option<Value>,
    /// `entry.request.ifMatch`.
    pub if_match: Option<String>,
    /// `entry.request.ifNoneExist` (the query of a conditional create).
    pub if_none_exist: Option<String>,
    /// `entry.request.ifNoneMatch`.
    pub if_none_match: Option<String>,
    /// `entry.request.ifModifiedSince`.
    pub if_modified_since: Option<String>,
}

impl Entry {
    /// The FHIRPath of this entry's element, for OperationOutcome expressions.
    pub fn expression(&self, rest: &str) -> String {
        if rest.is_empty() {
            format!("Bundle.entry[{}]", self.index)
        } else {
            format!("Bundle.entry[{}].{rest}", self.index)
        }
    }
}

/// A parsed request Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBundle {
    /// Transaction or batch.
    pub kind: BundleKind,
    /// The entries, in Bundle order.
    pub entries: Vec<Entry>,
}

impl RequestBundle {
    /// Entry indexes in the order the spec processes them: DELETE, POST, PUT and PATCH,
    /// then GET and HEAD; Bundle order within each.
    pub fn processing_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| (self.entries[i].method.rank(), i));
        order
    }
}

/// Reads a request Bundle. Every problem found is reported (not just the first), each with
/// the expression of the element at fault.
pub fn parse_request_bundle(bundle: &Value) -> Result<RequestBundle, Vec<Issue>> {
    let mut issues = Vec::new();
    let invalid = |what: String, at: String| Issue::error(IssueType::Invalid, what).at(at);
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(vec![Issue::error(
            IssueType::Invalid,
            "the body must be a Bundle of type transaction or batch",
        )]);
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some(other) => {
            return Err(vec![invalid(
                format!(
                    "a Bundle of type '{other}' cannot be processed: POST a transaction or a batch"
                ),
                "Bundle.type".into(),
            )])
        }
        None => {
            return Err(vec![invalid(
                "Bundle.type is required (transaction or batch)".into(),
                "Bundle.type".into(),
            )])
        }
    };
    let raw_entries = match bundle.get("entry") {
        None => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            return Err(vec![invalid(
                "Bundle.entry must be an array".into(),
                "Bundle.entry".into(),
            )])
        }
    };
    let mut entries = Vec::with_capacity(raw_entries.len());
    let mut full_urls: HashMap<&str, usize> = HashMap::new();
    for (index, raw) in raw_entries.iter().enumerate() {
        let at = |rest: &str| format!("Bundle.entry[{index}]{rest}");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let request = raw.get("request");
        let Some(request) = request.filter(|r| r.is_object()) else {
            issues.push(invalid(
                format!("entry {index} has no request"),
                at(".request"),
            ));
            continue;
        };
        let method = match request.get("method").and_then(Value::as_str) {
            Some(m) => match Method::parse(m) {
                Some(m) => m,
                None => {
                    issues.push(invalid(
                        format!("entry {index}: '{m}' is not an HTTP verb of a Bundle request"),
                        at(".request.method"),
                    ));
                    continue;
                }
            },
            None => {
                issues.push(invalid(
                    format!("entry {index} has no request.method"),
                    at(".request.method"),
                ));
                continue;
            }
        };
        let Some(url) = text(request.get("url")).filter(|u| !u.is_empty()) else {
            issues.push(invalid(
                format!("entry {index} has no request.url"),
                at(".request.url"),
            ));
            continue;
        };
        let resource = raw.get("resource").cloned();
        let needs_body = matches!(method, Method::Post | Method::Put | Method::Patch);
        if needs_body && resource.is_none() {
            issues.push(invalid(
                format!("entry {index}: a {} needs a resource", method.as_str()),
                at(".resource"),
            ));
            continue;
        }
        if !needs_body && resource.is_some() {
            issues.push(invalid(
                format!("entry {index}: a {} carries no resource", method.as_str()),
                at(".resource"),
            ));
            continue;
        }
        let full_url = text(raw.get("fullUrl"));
        if let Some(full) = &full_url {
            if let Some(first) = full_urls.get(full.as_str()) {
                issues.push(invalid(
                    format!("entry {index} repeats the fullUrl '{full}' of entry {first}"),
                    at(".fullUrl"),
                ));
                continue;
            }
        }
        if let Some(full) = raw.get("fullUrl").and_then(Value::as_str) {
            full_urls.insert(full, index);
        }
        entries.push(Entry {
            index,
            full_url,
            method,
            url,
            resource,
            if_match: text(request.get("ifMatch")),
            if_none_exist: text(request.get("ifNoneExist")),
            if_none_match: text(request.get("ifNoneMatch")),
            if_modified_since: text(request.get("ifModifiedSince")),
        });
    }
    if issues.is_empty() {
        Ok(RequestBundle { kind, entries })
    } else {
        Err(issues)
    }
}

/// A request URL split into its path segments and its decoded query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    /// Path segments (`["Patient", "123", "_history", "2"]`).
    pub segments: Vec<String>,
    /// The query, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The query as written (for conditional keys and links).
    pub raw_query: Option<String>,
}

/// Splits `url` (relative, or absolute under `base`) into segments and query. An absolute
/// URL elsewhere is refused: a Bundle entry addresses this server.
pub fn parse_request_url(url: &str, base: &str) -> Result<RequestUrl, String> {
    let relative = match url.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => rest,
        _ if url.contains("://") => {
            return Err(format!("'{url}' is not a URL of this server ({base})"))
        }
        _ => url,
    };
    let relative = relative.trim_start_matches('/');
    let (path, raw_query) = match relative.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (relative, None),
    };
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let query = raw_query
        .as_deref()
        .map(|q| {
            form_urlencoded_pairs(q)
                .into_iter()
                .filter(|(k, _)| !k.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(RequestUrl {
        segments,
        query,
        raw_query,
    })
}

/// `application/x-www-form-urlencoded` decoding of a query string (`+` is a space).
pub fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Calls `f` on every `reference` string of `resource` (in Reference elements anywhere:
/// nested, in extensions and in contained resources).
pub fn for_each_reference(resource: &Value, f: &mut impl FnMut(&str)) {
    match resource {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("reference", Value::String(r)) => f(r),
                    _ => for_each_reference(value, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| for_each_reference(v, f)),
        _ => {}
    }
}

/// Replaces every `reference` string of `resource` found in `map` by its value (and a
/// `urn:uuid:…` or conditional reference is left alone when it is not in the map). Returns
/// how many were replaced.
pub fn rewrite_references(resource: &mut Value, map: &HashMap<String, String>) -> usize {
    match resource {
        Value::Object(object) => object
            .iter_mut()
            .map(|(key, value)| match (key.as_str(), &*value) {
                ("reference", Value::String(r)) => match map.get(r.as_str()) {
                    Some(new) => {
                        *value = Value::String(new.clone());
                        1
                    }
                    None => 0,
                },
                _ => rewrite_references(value, map),
            })
            .sum(),
        Value::Array(items) => items.iter_mut().map(|v| rewrite_references(v, map)).sum(),
        _ => 0,
    }
}

/// A conditional reference (`Patient?identifier=sys|val`): its type and query, or None for
/// any other reference.
pub fn conditional_reference(reference: &str) -> Option<(&str, &str)> {
    let (ty, query) = reference.split_once('?')?;
    let plain_type = !ty.is_empty() && ty.chars().all(|c| c.is_ascii_alphanumeric());
    plain_type.then_some((ty, query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_processed_deletes_first_reads_last() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Patient?name=x"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/1"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/2"}},
            {"resource": {"resourceType": "Parameters"}, "request": {"method": "PATCH", "url": "Patient/3"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
        ]});
        let parsed = parse_request_bundle(&bundle).unwrap();
        assert_eq!(parsed.kind, BundleKind::Transaction);
        assert_eq!(parsed.processing_order(), vec![3, 2, 5, 1, 4, 0]);
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_path() {
        let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "FETCH", "url": "Patient"}},
            {"resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/1"}}
        ]});
        let issues = parse_request_bundle(&bundle).unwrap_err();
        let at: Vec<&str> = issues.iter().map(|i| i.expression[0].as_str()).collect();
        assert_eq!(
            at,
            vec![
                "Bundle.entry[0].resource",
                "Bundle.entry[1].request.method",
                "Bundle.entry[2].request",
                "Bundle.entry[4].fullUrl",
                "Bundle.entry[5].resource",
            ]
        );
    }

    #[test]
    fn other_bundle_types_are_refused() {
        for ty in ["collection", "document", "searchset"] {
            let issues =
                parse_request_bundle(&json!({"resourceType": "Bundle", "type": ty})).unwrap_err();
            assert!(issues[0].diagnostics.as_deref().unwrap().contains(ty));
        }
        assert!(parse_request_bundle(&json!({"resourceType": "Patient"})).is_err());
    }

    #[test]
    fn references_are_rewritten_everywhere_and_only_there() {
        let mut resource = json!({
            "resourceType": "Observation",
            "subject": {"reference": "urn:uuid:p"},
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:p"}],
            "extension": [{"url": "x", "valueReference": {"reference": "urn:uuid:p"}}],
            "contained": [{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:p"}]}],
            "performer": [{"reference": "Practitioner?identifier=npi|1"}, {"reference": "#c"}]
        });
        let map = HashMap::from([
            ("urn:uuid:p".to_owned(), "Patient/123".to_owned()),
            (
                "Practitioner?identifier=npi|1".to_owned(),
                "Practitioner/9".to_owned(),
            ),
        ]);
        assert_eq!(rewrite_references(&mut resource, &map), 4);
        assert_eq!(resource["subject"]["reference"], "Patient/123");
        assert_eq!(resource["identifier"][0]["value"], "urn:uuid:p");
        assert_eq!(
            resource["extension"][0]["valueReference"]["reference"],
            "Patient/123"
        );
        assert_eq!(
            resource["contained"][0]["target"][0]["reference"],
            "Patient/123"
        );
        assert_eq!(resource["performer"][0]["reference"], "Practitioner/9");
        assert_eq!(resource["performer"][1]["reference"], "#c");
    }

    #[test]
    fn conditional_references_are_recognised() {
        assert_eq!(
            conditional_reference("Patient?identifier=a|b"),
            Some(("Patient", "identifier=a|b"))
        );
        assert_eq!(conditional_reference("Patient/1"), None);
        assert_eq!(conditional_reference("http://x/y?z"), None);
        let mut seen = Vec::new();
        for_each_reference(
            &json!({"a": [{"reference": "Patient?x=1"}], "b": {"reference": "Patient/2"}}),
            &mut |r| seen.push(r.to_owned()),
        );
        assert_eq!(seen, vec!["Patient?x=1", "Patient/2"]);
    }

    #[test]
    fn urls_split_into_segments_and_a_decoded_query() {
        let base = "http://h/fhir";
        let u = parse_request_url("Patient?identifier=a%7Cb&name=J+D", base).unwrap();
        assert_eq!(u.segments, vec!["Patient"]);
        assert_eq!(
            u.query,
            vec![
                ("identifier".to_owned(), "a|b".to_owned()),
                ("name".to_owned(), "J D".to_owned())
            ]
        );
        let u = parse_request_url("http://h/fhir/Patient/1/_history/2", base).unwrap();
        assert_eq!(u.segments, vec!["Patient", "1", "_history", "2"]);
        assert!(parse_request_url("http://other/fhir/Patient/1", base).is_err());
        assert_eq!(
            parse_request_url("/Patient/1", base).unwrap().segments,
            vec!["Patient", "1"]
        );
    }
}
