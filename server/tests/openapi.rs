//! The OpenAPI document and the Swagger UI, over HTTP: the committed `openapi/openapi.json`
//! is exactly what the server serves, the document covers every resource type and endpoint
//! the server answers, and `/docs/` serves the UI from the server itself.
//!
//! The document does not depend on the database, so these run on SQLite only.
//! `scripts/fuzz` validates the document with `openapi-spec-validator` and fuzzes the
//! server from it with schemathesis.

mod common;

use std::path::PathBuf;

use common::{Db, TestServer};
use serde_json::Value;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p fhir-notary --test openapi";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
}

async fn served(server: &TestServer) -> Value {
    let res = server
        .client
        .get(format!("{}/openapi.json", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// The canonical text of a document: two-space indentation, members in document order.
fn canonical(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).unwrap() + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_document_is_what_the_server_serves() {
    let server = TestServer::start(Db::Sqlite).await;
    let served = canonical(&served(&server).await);
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with {REGENERATE}",
            path.display()
        )
    });
    let committed = canonical(&serde_json::from_str(&committed).unwrap_or_else(|e| {
        panic!("openapi/openapi.json is not JSON ({e}); regenerate it with {REGENERATE}")
    }));
    if committed != served {
        let line = committed
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(served.lines().count()));
        panic!(
            "openapi/openapi.json differs from what the server serves, from line {}:\n  committed: {}\n  served:    {}\nRegenerate it with {REGENERATE}",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            served.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_covers_every_resource_type_and_endpoint() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = served(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let schemas = &doc["components"]["schemas"];
    let types: Vec<&str> = fhir::definitions::r4().resource_types().collect();
    assert_eq!(types.len(), 146);
    for ty in &types {
        for (path, methods) in [
            (format!("/fhir/{ty}"), &["get", "post"][..]),
            (format!("/fhir/{ty}/_search"), &["post"]),
            (format!("/fhir/{ty}/_history"), &["get"]),
            (format!("/fhir/{ty}/{{id}}"), &["get", "put", "delete"]),
            (format!("/fhir/{ty}/{{id}}/_history"), &["get"]),
            (format!("/fhir/{ty}/{{id}}/_history/{{vid}}"), &["get"]),
        ] {
            for method in methods {
                assert!(
                    paths[&path][*method].is_object(),
                    "{method} {path} is not documented"
                );
            }
        }
        assert_eq!(
            schemas[*ty]["properties"]["resourceType"]["enum"][0], *ty,
            "no schema for {ty}"
        );
        assert_eq!(
            paths[&format!("/fhir/{ty}/{{id}}")]["get"]["responses"]["200"]["content"]
                ["application/fhir+json"]["schema"]["$ref"],
            format!("#/components/schemas/{ty}")
        );
    }

    // Search parameters: the type's own, with their FHIR type in the description.
    let search = &paths["/fhir/Patient"]["get"]["parameters"];
    let parameters = &doc["components"]["parameters"];
    let named = |name: &str| -> Value {
        search
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let key = p["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
                parameters[key].clone()
            })
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("Patient search has no parameter {name}"))
    };
    assert!(named("family")["description"]
        .as_str()
        .unwrap()
        .starts_with("FHIR search parameter of type `string`"));
    assert!(named("birthdate")["description"]
        .as_str()
        .unwrap()
        .contains("Prefixes: eq, ne"));
    assert_eq!(named("_count")["in"], "query");
    assert_eq!(named("_id")["schema"]["type"], "string");
    let observation = paths["/fhir/Observation"]["get"]["parameters"].to_string();
    assert!(observation.contains("search-Observation-code-value-quantity"));
    assert!(!search.to_string().contains("Observation-code"));

    // Every error is an OperationOutcome; the bearer scheme guards all but metadata.
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        assert_eq!(
            response["content"]["application/fhir+json"]["schema"]["$ref"],
            "#/components/schemas/OperationOutcome",
            "{name}"
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["smart"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    assert!(scheme["description"].as_str().unwrap().contains(".cruds"));
    assert!(paths["/fhir/metadata"]["get"]["security"].is_null());
    assert_eq!(
        paths["/fhir/Patient/{id}"]["get"]["security"],
        serde_json::json!([{ "smart": [] }])
    );
    assert_eq!(
        paths["/ledger/head"]["get"]["security"],
        serde_json::json!([{ "smart": [] }])
    );
}

/// Every documented path and method answers, with the path parameters filled in: none is a
/// route the server does not have (404 "no such endpoint" or 405).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_exists() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = served(&server).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // One resource type stands for all: they share the route.
        let per_type = path.starts_with("/fhir/")
            && !path.starts_with("/fhir/_")
            && !path.starts_with("/fhir/metadata");
        if per_type && !path.starts_with("/fhir/Patient") {
            continue;
        }
        let url = path
            .replace("{id}", "p1")
            .replace("{vid}", "1")
            .replace("{type}", "Patient")
            .replace("{version}", "1")
            .replace("{height}", "0");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let res = server
                .client
                .request(method.clone(), format!("{}{url}", server.root))
                .header("content-type", "application/fhir+json")
                .body(r#"{"resourceType":"Patient","id":"p1"}"#)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            assert!(
                status != 405 && !(status == 404 && body.contains("no such endpoint")),
                "{method} {url} is documented but answers {status}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked > 15, "only {checked} routes checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_serve_swagger_ui_from_the_server() {
    let server = TestServer::start(Db::Sqlite).await;
    // /docs redirects to /docs/ (reqwest follows it).
    let res = server
        .client
        .get(format!("{}/docs", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.url().path(), "/docs/");
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet is relative: served by this server, not a CDN.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for rest in html.split(attr).skip(1) {
            let url = &rest[..rest.find('"').unwrap()];
            assert!(
                !url.contains("://") && !url.starts_with("//"),
                "/docs/ loads {url} from elsewhere"
            );
            assets.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in &assets {
        let res = server
            .client
            .get(format!("{}/docs/{asset}", server.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "/docs/{asset}");
        assert!(
            !res.bytes().await.unwrap().is_empty(),
            "/docs/{asset} is empty"
        );
    }
    let init = server
        .client
        .get(format!("{}/docs/swagger-initializer.js", server.root))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(!init.contains("https://"), "{init}");
}
