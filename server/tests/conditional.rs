//! Conditional create, update, delete and patch, PATCH in both formats, and `$validate`,
//! over HTTP on SQLite and PostgreSQL — including clients racing the same conditional
//! create, which must leave exactly one resource.

mod common;

use common::{outcome, TestServer};
use serde_json::{json, Value};

const SYSTEM: &str = "http://example.org/mrn";

fn patient(mrn: &str, family: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": SYSTEM, "value": mrn}],
           "name": [{"family": family}]})
}

async fn count_patients(s: &TestServer, mrn: &str) -> usize {
    let body: Value = s
        .get(&format!(
            "Patient?identifier={SYSTEM}|{mrn}&_total=accurate"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["total"].as_u64().unwrap() as usize
}

async fn racing_conditional_creates_make_one_resource(s: TestServer) {
    const CLIENTS: usize = 16;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = s
                .post_json("Patient", &patient("race-1", "Racer"))
                .header("If-None-Exist", format!("identifier={SYSTEM}|race-1"));
            tokio::spawn(async move {
                let res = request.send().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, body["id"].as_str().unwrap_or_default().to_owned())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let created = results.iter().filter(|(st, _)| *st == 201).count();
    let found = results.iter().filter(|(st, _)| *st == 200).count();
    assert_eq!((created, found), (1, CLIENTS - 1), "{results:?}");
    let first = &results[0].1;
    assert!(results.iter().all(|(_, id)| id == first), "{results:?}");
    assert_eq!(count_patients(&s, "race-1").await, 1);

    // The same race through transaction Bundles.
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "fullUrl": "urn:uuid:p",
                "resource": patient("race-2", "Racer"),
                "request": {"method": "POST", "url": "Patient",
                            "ifNoneExist": format!("identifier={SYSTEM}|race-2")}}]});
            let request = s.post_json("", &bundle);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(count_patients(&s, "race-2").await, 1);
}

async fn racing_conditional_updates_make_one_resource(s: TestServer) {
    const CLIENTS: usize = 12;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let request = s.put_json(
                &format!("Patient?identifier={SYSTEM}|race-3"),
                &patient("race-3", &format!("Writer{i}")),
            );
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    let mut expected = vec![200; CLIENTS - 1];
    expected.push(201);
    assert_eq!(statuses, expected);
    assert_eq!(count_patients(&s, "race-3").await, 1);
    let body: Value = s
        .get(&format!("Patient?identifier={SYSTEM}|race-3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["entry"][0]["resource"]["meta"]["versionId"],
        CLIENTS.to_string()
    );
}

async fn conditional_create_update_and_delete(s: TestServer) {
    // No match: created. One match: 200 with it, nothing new.
    let cond = format!("identifier={SYSTEM}|c-1");
    let res = s
        .post_json("Patient", &patient("c-1", "First"))
        .header("If-None-Exist", cond.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .post_json("Patient", &patient("c-1", "Second"))
        .header("If-None-Exist", cond.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["name"][0]["family"], "First");

    // Conditional update of the one match: a new version of it.
    let res = s
        .put_json(&format!("Patient?{cond}"), &patient("c-1", "Updated"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["id"].as_str(), body["meta"]["versionId"].as_str()),
        (Some(id.as_str()), Some("2"))
    );
    // A body id naming another resource is refused.
    let mut other = patient("c-1", "X");
    other["id"] = json!("someone-else");
    let res = s
        .put_json(&format!("Patient?{cond}"), &other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // No match with a body id: created at that id.
    let mut chosen = patient("c-2", "Chosen");
    chosen["id"] = json!("chosen-id");
    let res = s
        .put_json(&format!("Patient?identifier={SYSTEM}|c-2"), &chosen)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], "chosen-id");

    // Several matches: 412 for create and update; the condition must be known.
    s.create(patient("dup", "A")).await;
    s.create(patient("dup", "B")).await;
    let dup = format!("identifier={SYSTEM}|dup");
    let res = s
        .post_json("Patient", &patient("dup", "C"))
        .header("If-None-Exist", dup.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    outcome(res).await;
    let res = s
        .put_json(&format!("Patient?{dup}"), &patient("dup", "C"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let res = s
        .put_json("Patient?colour=blue", &patient("x", "C"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = s
        .put_json("Patient", &patient("x", "C"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Conditional delete removes every match; a second one finds nothing.
    let res = s.delete(&format!("Patient?{dup}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(count_patients(&s, "dup").await, 0);
    let res = s.delete(&format!("Patient?{dup}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = s.delete(&format!("Patient?{cond}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["etag"], "W/\"3\"");
    assert_eq!(
        s.get(&format!("Patient/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    assert!(s
        .get("metadata")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("\"conditionalDelete\":\"multiple\""));
}

fn patch(s: &TestServer, path: &str, content_type: &str, body: &Value) -> reqwest::RequestBuilder {
    s.client
        .patch(s.url(path))
        .header("Content-Type", content_type)
        .body(body.to_string())
}

async fn json_patch_and_fhirpath_patch(s: TestServer) {
    let created = s.create(patient("p-1", "Doe")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Patient/{id}");

    let res = patch(
        &s,
        &path,
        "application/json-patch+json",
        &json!([{"op": "add", "path": "/gender", "value": "female"},
                {"op": "replace", "path": "/name/0/family", "value": "Roe"}]),
    )
    .header("If-Match", "W/\"1\"")
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["gender"].as_str(), body["name"][0]["family"].as_str()),
        (Some("female"), Some("Roe"))
    );

    let fhirpath = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "telecom"},
            {"name": "value", "valueContactPoint": {"system": "phone", "value": "555-0100"}}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.gender"}]}]});
    let res = patch(&s, &path, "application/fhir+json", &fhirpath)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["meta"]["versionId"], "3");
    assert_eq!(body["telecom"][0]["value"], "555-0100");
    assert!(body.get("gender").is_none());
    // History records the patches as such.
    let history: Value = s
        .get(&format!("{path}/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["entry"][0]["request"]["method"], "PATCH");

    // Stale If-Match: 412. A result that is not valid: 400, nothing written.
    let stale = patch(&s, &path, "application/json-patch+json", &json!([]))
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let invalid = patch(
        &s,
        &path,
        "application/json-patch+json",
        &json!([{"op": "add", "path": "/birthDate", "value": "yesterday"}]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(invalid.status(), 400);
    let id_change = patch(
        &s,
        &path,
        "application/json-patch+json",
        &json!([{"op": "replace", "path": "/id", "value": "other"}]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(id_change.status(), 422);
    let failing_test = patch(
        &s,
        &path,
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/name/0/family", "value": "Doe"}]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(failing_test.status(), 422);
    outcome(failing_test).await;
    let current: Value = s.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(current["meta"]["versionId"], "3");

    // Wrong media type, unknown and deleted resources.
    let res = patch(&s, &path, "text/plain", &json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = patch(
        &s,
        "Patient/nope",
        "application/json-patch+json",
        &json!([]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 404);
    s.delete(&path).send().await.unwrap();
    let res = patch(&s, &path, "application/json-patch+json", &json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);

    // Conditional patch.
    s.create(patient("p-2", "Cond")).await;
    let res = patch(
        &s,
        &format!("Patient?identifier={SYSTEM}|p-2"),
        "application/json-patch+json",
        &json!([{"op": "add", "path": "/active", "value": true}]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["active"], true);
    s.wait_sealed().await;
    let (ok, report) = s.audit();
    assert!(ok, "{report}");
}

async fn validate_stores_nothing(s: TestServer) {
    let before = s.count("SELECT COUNT(*) AS n FROM resource_versions").await;
    let res = s
        .post_json("Patient/$validate", &patient("v", "Valid"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["severity"], "information");

    let res = s
        .post_json(
            "Patient/$validate",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "soon", "colour": 1}},
                {"name": "mode", "valueCode": "create"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let oo = outcome(res).await;
    let errors: Vec<&str> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{oo}");

    // Instance level checks the id; mode=delete checks existence.
    let res = s
        .post_json("Patient/abc/$validate", &patient("v", "Valid"))
        .send()
        .await
        .unwrap();
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["code"], "required");
    let res = s
        .post_json(
            "Patient/abc/$validate",
            &json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}),
        )
        .send()
        .await
        .unwrap();
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["code"], "not-found");
    let res = s
        .post_json("Observation/$validate", &patient("v", "Valid"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        s.count("SELECT COUNT(*) AS n FROM resource_versions").await,
        before
    );
}

backend_tests!(
    racing_conditional_creates_make_one_resource,
    racing_conditional_updates_make_one_resource,
    conditional_create_update_and_delete,
    json_patch_and_fhirpath_patch,
    validate_stores_nothing,
);
