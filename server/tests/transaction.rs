//! Transaction and batch Bundles over HTTP, on SQLite and PostgreSQL: atomicity (in the
//! database and the ledger), `urn:uuid` rewriting, conditional references, `ifNoneExist`,
//! processing order and per-entry outcomes of a batch.

mod common;

use common::{outcome, TestServer};
use serde_json::{json, Value};

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn batch(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let ty = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": ty}})
}

async fn send(s: &TestServer, bundle: &Value) -> reqwest::Response {
    s.post_json("", bundle).send().await.expect("POST bundle")
}

async fn counts(s: &TestServer) -> (i64, i64) {
    (
        s.count("SELECT COUNT(*) AS n FROM resource_versions").await,
        s.count("SELECT COUNT(*) AS n FROM ledger_entries").await,
    )
}

async fn read(s: &TestServer, reference: &str) -> Value {
    let res = s.get(reference).send().await.unwrap();
    assert_eq!(res.status(), 200, "read {reference}");
    res.json().await.unwrap()
}

async fn urn_references_are_rewritten_everywhere(s: TestServer) {
    let bundle = transaction(vec![
        post(
            "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            json!({"resourceType": "Patient", "name": [{"family": "Chalmers"}],
                   "identifier": [{"system": "urn:ietf:rfc:3986",
                                   "value": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}]}),
        ),
        post(
            "urn:uuid:88f151c0-a954-468a-88df-a5dc6d6d5d6b",
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"text": "weight"},
                   "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                   "extension": [{"url": "http://example.org/about",
                                  "valueReference": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}],
                   "contained": [{"resourceType": "Provenance", "id": "p", "recorded": "2024-01-01T00:00:00Z",
                                  "agent": [{"who": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}],
                                  "target": [{"reference": "urn:oid:1.2.3.4"}]}]}),
        ),
        post(
            "urn:oid:1.2.3.4",
            json!({"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}),
        ),
    ]);
    let res = send(&s, &bundle).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "transaction-response");
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert!(e["response"]["location"]
            .as_str()
            .unwrap()
            .ends_with("/_history/1"));
    }
    let patient_id = entries[0]["resource"]["id"].as_str().unwrap().to_owned();
    let encounter_id = entries[2]["resource"]["id"].as_str().unwrap();
    let patient_ref = format!("Patient/{patient_id}");
    let observation = read(
        &s,
        &format!(
            "Observation/{}",
            entries[1]["resource"]["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(observation["subject"]["reference"], patient_ref);
    assert_eq!(
        observation["extension"][0]["valueReference"]["reference"],
        patient_ref
    );
    assert_eq!(
        observation["contained"][0]["agent"][0]["who"]["reference"],
        patient_ref
    );
    assert_eq!(
        observation["contained"][0]["target"][0]["reference"],
        format!("Encounter/{encounter_id}")
    );
    // An identifier that happens to hold the urn is data, not a reference.
    let patient = read(&s, &patient_ref).await;
    assert_eq!(
        patient["identifier"][0]["value"],
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    );
    // Searchable by the rewritten reference.
    let found: Value = s
        .get(&format!("Observation?subject={patient_ref}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1));
    s.wait_sealed().await;
    let (ok, report) = s.audit();
    assert!(ok, "{report}");
}

async fn a_failing_entry_leaves_nothing_behind(s: TestServer) {
    let existing = s
        .create(json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}))
        .await;
    let id = existing["id"].as_str().unwrap().to_owned();
    let before = counts(&s).await;
    let failing = [
        // A precondition failing in the middle (412).
        (
            json!({"resource": {"resourceType": "Patient", "id": id, "name": [{"family": "Changed"}]},
                   "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\""}}),
            412,
        ),
        // An invalid resource (400), found before anything is written.
        (
            post(
                "urn:uuid:bad",
                json!({"resourceType": "Patient", "colour": "blue"}),
            ),
            400,
        ),
        // A conditional reference that matches nothing (412).
        (
            post(
                "urn:uuid:c",
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient?identifier=http://nowhere|none"}}),
            ),
            412,
        ),
    ];
    for (i, (bad, status)) in failing.into_iter().enumerate() {
        let bundle = transaction(vec![
            post(
                "urn:uuid:a",
                json!({"resourceType": "Patient", "name": [{"family": "First"}]}),
            ),
            json!({"request": {"method": "DELETE", "url": format!("Patient/{id}")}}),
            bad,
            post(
                "urn:uuid:b",
                json!({"resourceType": "Patient", "name": [{"family": "Last"}]}),
            ),
        ]);
        let res = send(&s, &bundle).await;
        assert_eq!(res.status(), status, "case {i}");
        let oo = outcome(res).await;
        let issue = &oo["issue"][0];
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("Bundle.entry[2]"),
            "case {i}: {oo}"
        );
        assert_eq!(
            counts(&s).await,
            before,
            "case {i}: rows or ledger entries left"
        );
    }
    assert_eq!(
        read(&s, &format!("Patient/{id}")).await["name"][0]["family"],
        "Kept"
    );
    s.wait_sealed().await;
    let (ok, report) = s.audit();
    assert!(ok, "{report}");
}

async fn conditional_references_and_if_none_exist(s: TestServer) {
    let npi = "http://hl7.org/fhir/sid/us-npi";
    let practitioner = s
        .create(json!({"resourceType": "Practitioner",
                       "identifier": [{"system": npi, "value": "9999999989"}]}))
        .await;
    let bundle = transaction(vec![
        json!({"fullUrl": "urn:uuid:org", "resource": {"resourceType": "Practitioner",
                 "identifier": [{"system": npi, "value": "9999999989"}]},
               "request": {"method": "POST", "url": "Practitioner",
                           "ifNoneExist": format!("identifier={npi}|9999999989")}}),
        post(
            "urn:uuid:enc",
            json!({"resourceType": "Encounter", "status": "finished",
                   "class": {"code": "AMB"},
                   "participant": [
                       {"individual": {"reference": format!("Practitioner?identifier={npi}|9999999989")}},
                       {"individual": {"reference": "urn:uuid:org"}}]}),
        ),
    ]);
    let res = send(&s, &bundle).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    // The conditional create matched: 200, nothing new.
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(body["entry"][0]["resource"]["id"], practitioner["id"]);
    let encounter = &body["entry"][1]["resource"];
    let expected = format!("Practitioner/{}", practitioner["id"].as_str().unwrap());
    assert_eq!(
        encounter["participant"][0]["individual"]["reference"],
        expected
    );
    assert_eq!(
        encounter["participant"][1]["individual"]["reference"],
        expected
    );
    assert_eq!(
        s.count("SELECT COUNT(*) AS n FROM resources WHERE resource_type = 'Practitioner'")
            .await,
        1
    );

    // Two matches: the reference is ambiguous.
    s.create(json!({"resourceType": "Practitioner",
                    "identifier": [{"system": npi, "value": "9999999989"}]}))
        .await;
    let res = send(
        &s,
        &transaction(vec![post(
            "urn:uuid:x",
            json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                   "participant": [{"individual": {"reference": format!("Practitioner?identifier={npi}|9999999989")}}]}),
        )]),
    )
    .await;
    assert_eq!(res.status(), 412);
    let oo = outcome(res).await;
    assert!(oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("ambiguous"));
    // A conditional reference sees what the same transaction created before it.
    let res = send(
        &s,
        &transaction(vec![
            post(
                "urn:uuid:new-doc",
                json!({"resourceType": "Practitioner", "identifier": [{"system": npi, "value": "1234567893"}]}),
            ),
            post(
                "urn:uuid:y",
                json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                       "participant": [{"individual": {"reference": format!("Practitioner?identifier={npi}|1234567893")}}]}),
            ),
        ]),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["entry"][1]["resource"]["participant"][0]["individual"]["reference"],
        format!(
            "Practitioner/{}",
            body["entry"][0]["resource"]["id"].as_str().unwrap()
        )
    );
    // An unknown search parameter in a condition is refused, not ignored.
    let res = send(
        &s,
        &transaction(vec![json!({"resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "colour=blue"}})]),
    )
    .await;
    assert_eq!(res.status(), 400);
}

async fn entries_run_deletes_first_and_reads_last(s: TestServer) {
    let doomed = s
        .create(json!({"resourceType": "Patient", "name": [{"family": "Doomed"}]}))
        .await;
    let doomed_id = doomed["id"].as_str().unwrap();
    let bundle = transaction(vec![
        json!({"request": {"method": "GET", "url": "Patient?family=Fresh"}}),
        json!({"request": {"method": "GET", "url": format!("Patient/{doomed_id}")}}),
        json!({"fullUrl": "urn:uuid:fresh", "resource": {"resourceType": "Patient", "id": "fresh-1", "name": [{"family": "Fresh"}]},
               "request": {"method": "PUT", "url": "Patient/fresh-1"}}),
        json!({"request": {"method": "DELETE", "url": format!("Patient/{doomed_id}")}}),
        json!({"resource": {"resourceType": "Patient", "name": [{"family": "Fresh"}]},
               "request": {"method": "PUT", "url": "Patient?family=Nobody"}}),
    ]);
    let res = send(&s, &bundle).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let e = body["entry"].as_array().unwrap();
    // The search saw both new patients; the read saw the deletion.
    assert_eq!(e[0]["response"]["status"], "200 OK");
    assert_eq!(e[0]["resource"]["type"], "searchset");
    assert_eq!(e[0]["resource"]["entry"].as_array().map(Vec::len), Some(2));
    assert_eq!(e[1]["response"]["status"], "410 Gone");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    assert_eq!(e[2]["resource"]["id"], "fresh-1");
    assert_eq!(e[3]["response"]["status"], "204 No Content");
    assert_eq!(e[3]["response"]["etag"], "W/\"2\"");
    assert_eq!(e[4]["response"]["status"], "201 Created");
}

async fn batch_entries_stand_alone(s: TestServer) {
    let bundle = batch(vec![
        post(
            "urn:uuid:1",
            json!({"resourceType": "Patient", "name": [{"family": "One"}]}),
        ),
        post(
            "urn:uuid:2",
            json!({"resourceType": "Patient", "birthDate": "not a date"}),
        ),
        json!({"request": {"method": "GET", "url": "Patient/does-not-exist"}}),
        json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": "Patient/x"}}),
        post(
            "urn:uuid:3",
            json!({"resourceType": "Patient", "name": [{"family": "Three"}]}),
        ),
    ]);
    let before = counts(&s).await;
    let res = s
        .post_json("", &bundle)
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "batch-response");
    let statuses: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "400 Bad Request",
            "201 Created"
        ]
    );
    assert!(body["entry"][0].get("resource").is_none());
    assert_eq!(
        body["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    let after = counts(&s).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 2));
}

async fn malformed_bundles_are_refused(s: TestServer) {
    for (body, status) in [
        (json!({"resourceType": "Patient"}), 400),
        (json!({"resourceType": "Bundle", "type": "collection"}), 400),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]}),
            400,
        ),
        (
            transaction(vec![post(
                "urn:uuid:1",
                json!({"resourceType": "Observation"}),
            )]),
            422,
        ),
        (
            transaction(vec![json!({"resource": {"resourceType": "Patient"},
                                    "request": {"method": "POST", "url": "Nonsense"}})]),
            404,
        ),
    ] {
        let res = send(&s, &body).await;
        assert_eq!(res.status(), status, "{body}");
        outcome(res).await;
    }
    // An empty transaction is a valid no-op.
    let res = send(&s, &transaction(vec![])).await;
    assert_eq!(res.status(), 200);
}

backend_tests!(
    urn_references_are_rewritten_everywhere,
    a_failing_entry_leaves_nothing_behind,
    conditional_references_and_if_none_exist,
    entries_run_deletes_first_and_reads_last,
    batch_entries_stand_alone,
    malformed_bundles_are_refused,
);
