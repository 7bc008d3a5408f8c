//! capabilities: `GET [base]/metadata` (http.html#capabilities).
//!
//! The CapabilityStatement lists exactly what this server does: every R4 resource type with
//! read, vread, update (including update-as-create), patch (JSON Patch and FHIRPath Patch),
//! delete, create, history and search (with each indexed search parameter: name, type,
//! definition); conditional create, update and delete (multiple); `$validate`; system
//! history, search, transaction and batch; versioned updates with `If-Match`; conditional
//! read; JSON only.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::http::error::{ApiError, FHIR_JSON};
use crate::http::negotiate::{self, Params};
use crate::http::response::{base_url, json_text};
use crate::http::AppState;

/// `GET [base]/metadata`.
pub async fn capability_statement(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string());
    let format = negotiate::negotiate(&req, &params)?;
    let mut statement = build(&base_url(&req, &state));
    statement["rest"][0]["security"] = crate::auth::discovery::capability_security(&req, &state);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(json_text(&statement, format)))
}

fn build(base: &str) -> Value {
    let interactions = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ];
    let registry = fhir::search::r4_search();
    let resources: Vec<Value> = fhir::definitions::r4()
        .resource_types()
        .map(|t| {
            let params = registry.params_for(t).iter().filter(|p| p.is_indexed());
            let search_params: Vec<Value> = params
                .clone()
                .map(|p| json!({ "name": p.code, "definition": p.url, "type": p.kind.as_str() }))
                .collect();
            let includes: Vec<String> = params
                .filter(|p| p.kind == fhir::search::ParamType::Reference)
                .map(|p| format!("{t}:{}", p.code))
                .collect();
            let mut resource = json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": interactions.iter().map(|code| json!({ "code": code })).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "multiple",
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }],
                "searchParam": search_params,
            });
            // FHIR JSON has no empty arrays: a type without reference parameters has none.
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            resource
        })
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir::primitives::format_instant(OffsetDateTime::now_utc()),
        "publisher": "FHIR Notary",
        "kind": "instance",
        "software": { "name": "FHIR Notary", "version": version },
        "implementation": { "description": "FHIR Notary", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [
                { "code": "transaction" },
                { "code": "batch" },
                { "code": "history-system" },
                { "code": "search-system" },
            ],
        }],
    })
}
