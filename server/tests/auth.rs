//! Access control over HTTP, on SQLite and PostgreSQL: tokens required (401 with
//! `WWW-Authenticate`), public discovery, the role × interaction matrix — each allowed
//! case answered, each denied one 403 with an OperationOutcome and an AuditEvent — and the
//! AuditEvent trail: searchable by auditors, notarized, flushed at shutdown.

mod common;

use common::{client_with, outcome, Db, TestServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use server::auth::{Auth, MintRequest, Role};

async fn without_a_token_the_api_answers_401(server: TestServer) {
    let anonymous = client_with(None);
    for url in [
        server.url("Patient"),
        server.url("Patient/x"),
        server.url("_history"),
        server.base.clone(),
        format!("{}/ledger/head", server.root),
    ] {
        let res = anonymous.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 401, "{url}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        let body = outcome(res).await;
        assert_eq!(body["issue"][0]["code"], "login");
    }
    let res = anonymous
        .post(server.url("Patient"))
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A token that is not one, a forged signature, and tokens for another audience or
    // issuer (signed with the right key) are refused as invalid_token.
    let good = server.token(Role::Admin, None, None);
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let other_aud = mint_with(&server, "fhir-notary-dev", "someone-else").await;
    let other_iss = mint_with(&server, "https://evil.example", "fhir-notary").await;
    // alg "none": header {"alg":"none","typ":"JWT"}, the real claims, no signature.
    let claims = good.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
    for bad in ["not-a-jwt", &forged, &other_aud, &other_iss, &none] {
        let res = client_with(Some(bad))
            .get(server.url("Patient"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "token {bad}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        outcome(res).await;
    }
    // Basic credentials are not a bearer token.
    let res = anonymous
        .get(server.url("Patient"))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// A token signed with the server's dev key, for another issuer or audience.
async fn mint_with(server: &TestServer, issuer: &str, audience: &str) -> String {
    let mut args = server::config::AuthArgs::dev();
    args.auth_issuer = Some(issuer.into());
    args.auth_audience = audience.into();
    let auth = Auth::from_args(&args, &server.data_dir).await.unwrap();
    auth.mint(&MintRequest {
        role: Role::Admin,
        subject: "x".into(),
        patient: None,
        fhir_user: None,
        scope: None,
        ttl: std::time::Duration::from_secs(60),
    })
    .unwrap()
}

async fn discovery_and_metadata_are_public(server: TestServer) {
    let anonymous = client_with(None);
    let res = anonymous.get(server.url("metadata")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cs: Value = res.json().await.unwrap();
    assert_eq!(
        cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    for path in [
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
        "/.well-known/openid-configuration",
    ] {
        let res = anonymous
            .get(format!("{}{path}", server.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["issuer"], "fhir-notary-dev", "{path}");
        assert_eq!(
            doc["jwks_uri"],
            format!("{}/.well-known/jwks.json", server.root)
        );
    }
    let jwks: Value = anonymous
        .get(format!("{}/.well-known/jwks.json", server.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(
        key.get("d").is_none(),
        "the JWKS must not carry the private key"
    );
    assert!(anonymous
        .get(format!("{}/healthz", server.root))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
}

/// The data every matrix row works on: two patients, each with an Observation.
struct World {
    p1: String,
    p2: String,
    o1: String,
    o2: String,
}

async fn world(server: &TestServer) -> World {
    let p1 = server
        .create(json!({"resourceType": "Patient", "gender": "female",
            "address": [{"city": "Leiden"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p2 = server
        .create(json!({"resourceType": "Patient", "gender": "male"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let obs = |p: &str| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": format!("Patient/{p}")}})
    };
    let o1 = server.create(obs(&p1)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o2 = server.create(obs(&p2)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World { p1, p2, o1, o2 }
}

/// One request of the matrix.
enum Req {
    Get(String),
    Post(String, Value),
    Put(String, Value),
    Delete(String),
}

async fn send(server: &TestServer, client: &Client, req: &Req) -> reqwest::Response {
    let url = |p: &str| {
        if p.starts_with("/ledger") {
            format!("{}{p}", server.root)
        } else {
            server.url(p)
        }
    };
    let json_body = |b: &Value| b.to_string();
    match req {
        Req::Get(p) => client.get(url(p)).send(),
        Req::Post(p, b) => client
            .post(url(p))
            .header("Content-Type", "application/fhir+json")
            .body(json_body(b))
            .send(),
        Req::Put(p, b) => client
            .put(url(p))
            .header("Content-Type", "application/fhir+json")
            .body(json_body(b))
            .send(),
        Req::Delete(p) => client.delete(url(p)).send(),
    }
    .await
    .unwrap()
}

fn describe(req: &Req) -> String {
    match req {
        Req::Get(p) => format!("GET {p}"),
        Req::Post(p, _) => format!("POST {p}"),
        Req::Put(p, _) => format!("PUT {p}"),
        Req::Delete(p) => format!("DELETE {p}"),
    }
}

/// How many 403s each server (by root URL) was expected to answer.
static DENIALS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Sends `req` and checks the status; a 403 must be an OperationOutcome `forbidden`.
async fn expect(server: &TestServer, client: &Client, who: &str, req: Req, status: u16) -> Value {
    let res = send(server, client, &req).await;
    let got = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(
        got,
        StatusCode::from_u16(status).unwrap(),
        "{who}: {} answered {got}: {body}",
        describe(&req)
    );
    if status == 403 {
        *DENIALS
            .lock()
            .unwrap()
            .entry(server.root.clone())
            .or_default() += 1;
        assert_eq!(body["resourceType"], "OperationOutcome", "{who}: {body}");
        assert_eq!(body["issue"][0]["code"], "forbidden", "{who}: {body}");
    }
    body
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or(""),
                        e["resource"]["id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn new_obs(p: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "weight"}, "subject": {"reference": format!("Patient/{p}")}})
}

async fn role_interaction_matrix(server: TestServer) {
    let w = world(&server).await;
    let p1_body = |extra: Value| {
        let mut p = json!({"resourceType": "Patient", "id": w.p1, "gender": "female",
            "address": [{"city": "Leiden"}]});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let audit_event = json!({"resourceType": "AuditEvent",
        "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});

    // patient: their own compartment only; only address and telecom of their own record.
    let who = "patient";
    let c = server.client_as(Role::Patient, Some(&w.p1));
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p1)), 200).await;
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p2)), 403).await;
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}", w.o1)),
        200,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}", w.o2)),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}/_history/1", w.o2)),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}/_history", w.o1)),
        200,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}/_history", w.o2)),
        403,
    )
    .await;
    let found = expect(
        &server,
        &c,
        who,
        Req::Get("Observation?_total=accurate".into()),
        200,
    )
    .await;
    assert_eq!(ids(&found), [format!("Observation/{}", w.o1)]);
    assert_eq!(found["total"], 1, "totals count only the compartment");
    let found = expect(&server, &c, who, Req::Get("Patient".into()), 200).await;
    assert_eq!(ids(&found), [format!("Patient/{}", w.p1)]);
    let found = expect(
        &server,
        &c,
        who,
        Req::Get(format!(
            "Patient?_revinclude=Observation:subject&_id={},{}",
            w.p1, w.p2
        )),
        200,
    )
    .await;
    assert_eq!(
        ids(&found),
        [format!("Observation/{}", w.o1), format!("Patient/{}", w.p1)]
    );
    // Type and system history list only the compartment's resources.
    let listed = expect(
        &server,
        &c,
        who,
        Req::Get("Observation/_history".into()),
        200,
    )
    .await;
    assert_eq!(ids(&listed), [format!("Observation/{}", w.o1)]);
    let listed = expect(&server, &c, who, Req::Get("_history".into()), 200).await;
    let listed = ids(&listed);
    assert!(listed.contains(&format!("Patient/{}", w.p1)), "{listed:?}");
    assert!(
        listed.contains(&format!("Observation/{}", w.o1)),
        "{listed:?}"
    );
    for other in [format!("Patient/{}", w.p2), format!("Observation/{}", w.o2)] {
        assert!(!listed.contains(&other), "{other} leaked: {listed:?}");
    }
    expect(&server, &c, who, Req::Get("Organization".into()), 403).await;
    expect(
        &server,
        &c,
        who,
        Req::Get("Organization/_history".into()),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Post("Observation".into(), new_obs(&w.p1)),
        403,
    )
    .await;
    let moved = p1_body(json!({"address": [{"city": "Delft"}],
        "telecom": [{"system": "phone", "value": "+31 71 000"}]}));
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Patient/{}", w.p1), moved.clone()),
        200,
    )
    .await;
    let changed = p1_body(json!({"gender": "other", "address": [{"city": "Delft"}],
        "telecom": [{"system": "phone", "value": "+31 71 000"}]}));
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Patient/{}", w.p1), changed),
        403,
    )
    .await;
    let theirs = json!({"resourceType": "Patient", "id": w.p2, "gender": "male",
        "address": [{"city": "Delft"}]});
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Patient/{}", w.p2), theirs),
        403,
    )
    .await;
    let mut obs = new_obs(&w.p1);
    obs["id"] = json!(w.o1);
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Observation/{}", w.o1), obs),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Delete(format!("Patient/{}", w.p1)),
        403,
    )
    .await;
    expect(&server, &c, who, Req::Get("/ledger/head".into()), 403).await;
    expect(&server, &c, who, Req::Get("AuditEvent".into()), 403).await;
    // A patient token without a patient context can do nothing.
    let lost = client_with(Some(&server.token(Role::Patient, None, None)));
    expect(
        &server,
        &lost,
        who,
        Req::Get(format!("Patient/{}", w.p1)),
        403,
    )
    .await;

    // practitioner: create, update and read clinical resources; no delete, no audit data.
    let who = "practitioner";
    let c = server.client_as(Role::Practitioner, None);
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p2)), 200).await;
    let found = expect(&server, &c, who, Req::Get("Observation".into()), 200).await;
    assert_eq!(ids(&found).len(), 2);
    let created = expect(
        &server,
        &c,
        who,
        Req::Post("Observation".into(), new_obs(&w.p2)),
        201,
    )
    .await;
    let mut update = created.clone();
    update["status"] = json!("amended");
    let id = created["id"].as_str().unwrap().to_owned();
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Observation/{id}"), update),
        200,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get("Observation/_history".into()),
        200,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Delete(format!("Observation/{id}")),
        403,
    )
    .await;
    expect(&server, &c, who, Req::Get("AuditEvent".into()), 403).await;
    expect(&server, &c, who, Req::Get("/ledger/head".into()), 403).await;
    // System-wide search must name types the role may search.
    expect(
        &server,
        &c,
        who,
        Req::Get("?_type=Patient,Observation".into()),
        200,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Get("?_lastUpdated=gt2000".into()),
        403,
    )
    .await;

    // auditor: reads everything, the ledger and AuditEvents included; writes nothing.
    let who = "auditor";
    let c = server.client_as(Role::Auditor, None);
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}", w.o2)),
        200,
    )
    .await;
    expect(&server, &c, who, Req::Get("AuditEvent".into()), 200).await;
    expect(&server, &c, who, Req::Get("_history".into()), 200).await;
    let head = expect(&server, &c, who, Req::Get("/ledger/head".into()), 200).await;
    assert!(head["height"].is_number(), "{head}");
    expect(
        &server,
        &c,
        who,
        Req::Post("Observation".into(), new_obs(&w.p1)),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Put(format!("Patient/{}", w.p1), moved.clone()),
        403,
    )
    .await;
    expect(
        &server,
        &c,
        who,
        Req::Delete(format!("Observation/{}", w.o1)),
        403,
    )
    .await;

    // admin: everything, except writing AuditEvents (nobody may).
    let who = "admin";
    let c = server.client_as(Role::Admin, None);
    expect(&server, &c, who, Req::Get("/ledger/head".into()), 200).await;
    expect(
        &server,
        &c,
        who,
        Req::Post("AuditEvent".into(), audit_event.clone()),
        403,
    )
    .await;
    expect(&server, &c, who, Req::Delete("AuditEvent/any".into()), 403).await;
    let mut ae = audit_event.clone();
    ae["id"] = json!("any");
    expect(&server, &c, who, Req::Put("AuditEvent/any".into(), ae), 403).await;
    expect(
        &server,
        &c,
        who,
        Req::Delete(format!("Observation/{}", w.o2)),
        204,
    )
    .await;

    // system: governed by its scopes.
    let who = "system";
    let c = client_with(Some(&server.token(
        Role::System,
        None,
        Some("system/Observation.rs system/Patient.r"),
    )));
    expect(
        &server,
        &c,
        who,
        Req::Get(format!("Observation/{}", w.o1)),
        200,
    )
    .await;
    expect(&server, &c, who, Req::Get("Observation".into()), 200).await;
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p1)), 200).await;
    expect(&server, &c, who, Req::Get("Patient".into()), 403).await;
    expect(
        &server,
        &c,
        who,
        Req::Post("Observation".into(), new_obs(&w.p1)),
        403,
    )
    .await;
    expect(&server, &c, who, Req::Get("/ledger/head".into()), 403).await;
    // SMART v1 scopes work the same.
    let c = client_with(Some(&server.token(
        Role::System,
        None,
        Some("system/*.read"),
    )));
    expect(&server, &c, who, Req::Get("Patient".into()), 200).await;
    expect(
        &server,
        &c,
        who,
        Req::Post("Observation".into(), new_obs(&w.p1)),
        403,
    )
    .await;
    // A patient-context token with patient/ scopes stays in that compartment, whatever
    // the role.
    let c = client_with(Some(&server.token(
        Role::Practitioner,
        Some(&w.p2),
        Some("patient/*.read"),
    )));
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p1)), 403).await;
    expect(&server, &c, who, Req::Get(format!("Patient/{}", w.p2)), 200).await;

    // Every denial left an AuditEvent with outcome 4 and a 403 in its description.
    let denials = DENIALS.lock().unwrap()[&server.root];
    let events = audit_events(&server, "outcome=4", denials).await;
    let forbidden = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["outcomeDesc"]
                .as_str()
                .is_some_and(|d| d.contains("answered 403"))
        })
        .count();
    assert_eq!(forbidden, denials);
}

async fn writes_name_the_principal_in_the_ledger(server: TestServer) {
    let token = server.auth.mint(&MintRequest {
        role: Role::Practitioner,
        subject: "nurse-7".into(),
        patient: None,
        fhir_user: Some("Practitioner/123".into()),
        scope: None,
        ttl: std::time::Duration::from_secs(60),
    });
    let c = client_with(Some(&token.unwrap()));
    let res = c
        .post(server.url("Patient"))
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let n = server
        .count("SELECT COUNT(*) AS n FROM ledger_entries WHERE actor = 'Practitioner/123'")
        .await;
    assert_eq!(n, 1);
    // Without fhirUser, the subject.
    server.create(json!({"resourceType": "Patient"})).await;
    let n = server
        .count("SELECT COUNT(*) AS n FROM ledger_entries WHERE actor = 'test-admin'")
        .await;
    assert!(n >= 1);
}

#[tokio::test]
async fn the_token_command_prints_a_token_the_server_accepts() {
    let server = TestServer::start(Db::Sqlite).await;
    let token = common::cli_token(&server.data_dir, "auditor");
    let res = client_with(Some(&token))
        .get(server.url("Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .args(["token", "--role", "patient"])
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a patient token needs --patient");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--patient"));
}

/// Polls `AuditEvent?<query>` as an auditor until at least `min` match (the trail is
/// written off the request path), returning the last Bundle.
async fn audit_events(server: &TestServer, query: &str, min: usize) -> Value {
    let auditor = server.client_as(Role::Auditor, None);
    let mut last = Value::Null;
    for _ in 0..200 {
        last = auditor
            .get(server.url(&format!("AuditEvent?{query}&_count=1000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["entry"].as_array().map_or(0, Vec::len) >= min {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {min} AuditEvents match {query}: {last}");
}

async fn every_interaction_leaves_a_searchable_notarized_audit_event(server: TestServer) {
    let w = world(&server).await;
    let patient = server.client_as(Role::Patient, Some(&w.p1));
    // An allowed read, a denial and a refused token.
    expect(
        &server,
        &patient,
        "patient",
        Req::Get(format!("Patient/{}", w.p1)),
        200,
    )
    .await;
    expect(
        &server,
        &patient,
        "patient",
        Req::Get(format!("Observation/{}", w.o2)),
        403,
    )
    .await;
    let res = client_with(Some("garbage"))
        .get(server.url(&format!("Patient/{}", w.p2)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let token = server
        .auth
        .mint(&MintRequest {
            role: Role::Practitioner,
            subject: "nurse-7".into(),
            patient: None,
            fhir_user: Some("Practitioner/123".into()),
            scope: None,
            ttl: std::time::Duration::from_secs(60),
        })
        .unwrap();
    let nurse = client_with(Some(&token));
    expect(
        &server,
        &nurse,
        "practitioner",
        Req::Get(format!("Observation/{}", w.o1)),
        200,
    )
    .await;

    // A search across patients, and a transaction.
    let found = expect(
        &server,
        &nurse,
        "practitioner",
        Req::Get("Observation?code=http://loinc.org|29463-7".into()),
        200,
    )
    .await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(2));
    let admin = server.client_as(Role::Admin, None);
    let written: Value = admin
        .post(server.url(""))
        .json(
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b7ee2c4-3f5e-4c4e-9a53-4a8d3f0d9b10",
             "resource": {"resourceType": "Patient", "gender": "other"},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "urn:uuid:0b7ee2c4-3f5e-4c4e-9a53-4a8d3f0d9b10"}},
             "request": {"method": "POST", "url": "Observation"}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let location = |i: usize| {
        written["entry"][i]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (new_patient, new_obs) = (location(0), location(1));

    // Reads name the Patient whose record was read, so the trail can be searched by
    // patient: the nurse's read of p1's Observation, and the search that returned both
    // Patients' Observations.
    let nurse_on_p1 = audit_events(
        &server,
        &format!("patient=Patient/{}&altid=nurse-7&subtype=read", w.p1),
        1,
    )
    .await;
    let named: Vec<&str> = nurse_on_p1["entry"][0]["resource"]["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect();
    assert!(
        named.contains(&format!("Observation/{}/_history/1", w.o1).as_str()),
        "{named:?}"
    );
    for p in [&w.p1, &w.p2] {
        audit_events(
            &server,
            &format!("patient=Patient/{p}&altid=nurse-7&subtype=search-type"),
            1,
        )
        .await;
    }
    // A transaction's event names every version it wrote and their Patient.
    let tx_event = audit_events(&server, "subtype=transaction&altid=test-admin", 1).await;
    let e = &tx_event["entry"][0]["resource"];
    let named: Vec<&str> = e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect();
    let id_of = |location: &str| location.split('/').nth_back(2).unwrap().to_owned();
    for wanted in [
        format!("Patient/{}/_history/1", id_of(&new_patient)),
        format!("Observation/{}/_history/1", id_of(&new_obs)),
        format!("Patient/{}", id_of(&new_patient)),
    ] {
        assert!(
            named.contains(&wanted.as_str()),
            "{wanted} not in {named:?}"
        );
    }
    // A create names the new resource, not only its type.
    audit_events(
        &server,
        &format!("entity=Observation/{}&subtype=create", w.o1),
        1,
    )
    .await;

    // By patient: the patient-context events name Patient/p1.
    let by_patient = audit_events(
        &server,
        &format!("patient=Patient/{}&outcome=0&altid=test-patient", w.p1),
        1,
    )
    .await;
    let e = &by_patient["entry"][0]["resource"];
    assert_eq!(e["subtype"][0]["code"], "read");
    assert_eq!(e["action"], "R");
    assert_eq!(e["agent"][0]["altId"], "test-patient");
    assert_eq!(e["source"]["observer"]["display"], "FHIR Notary");
    // The denial: outcome 4, the resource touched as entity.
    let denied = audit_events(
        &server,
        &format!("entity=Observation/{}&outcome=4", w.o2),
        1,
    )
    .await;
    let e = &denied["entry"][0]["resource"];
    assert!(e["outcomeDesc"].as_str().unwrap().contains("403"), "{e}");
    // The refused token: anonymous agent, outcome 4.
    let refused = audit_events(&server, &format!("entity=Patient/{}&outcome=4", w.p2), 1).await;
    let e = &refused["entry"][0]["resource"];
    assert_eq!(e["agent"][0]["who"]["display"], "anonymous");
    assert!(e["outcomeDesc"].as_str().unwrap().contains("401"), "{e}");
    // By agent (fhirUser) and by date.
    audit_events(&server, "agent=Practitioner/123", 1).await;
    audit_events(&server, "date=ge2020-01-01&altid=nurse-7", 1).await;
    // The writes of the world were audited as creates by the admin.
    audit_events(&server, "subtype=create&altid=test-admin", 4).await;

    // Stored through the store: notarized like every write.
    server.wait_sealed().await;
    let notarized = server
        .count("SELECT COUNT(*) AS n FROM ledger_entries WHERE resource_type = 'AuditEvent'")
        .await;
    assert!(notarized >= 8, "{notarized} AuditEvents in the ledger");
    let (ok, report) = server.audit();
    assert!(ok, "{report}");
}

#[tokio::test]
async fn shutdown_stores_every_queued_audit_event() {
    // The real binary on SQLite: requests, SIGTERM, then count what the trail stored.
    let dir = tempfile::tempdir().unwrap();
    let token = common::cli_token(dir.path(), "admin");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = client_with(Some(&token));
    let root = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{root}/readyz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let requests = 300;
    let sent: Vec<_> = (0..requests)
        .map(|i| {
            let (client, root) = (client.clone(), root.clone());
            tokio::spawn(async move {
                client
                    .get(format!("{root}/fhir/Patient/nobody-{i}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for s in sent {
        assert_eq!(s.await.unwrap(), 404);
    }
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());

    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.path().join("fhir-notary.db").display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    use sqlx::Row;
    let n: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM resources WHERE resource_type = 'AuditEvent'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    pool.close().await;
    assert_eq!(
        n, requests,
        "every request's AuditEvent was stored before exit"
    );
}

/// PATCH, conditional interactions and Bundle entries are authorized exactly as the same
/// request on its own: a patient may patch only the address and telecom of their own
/// record, an auditor writes nothing through a transaction, a denied entry fails the whole
/// transaction, and a Bundle's reads see only what the caller may read.
async fn patch_conditional_and_bundle_entries_are_authorized(server: TestServer) {
    let admin = server.client_as(Role::Admin, None);
    let put = |c: &Client, path: &str, body: Value| {
        c.put(server.url(path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    };
    for (id, family) in [("pa", "Own"), ("pb", "Other")] {
        let res = put(
            &admin,
            &format!("Patient/{id}"),
            json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 201);
    }
    let patient = server.client_as(Role::Patient, Some("pa"));
    let patch = |c: &Client, path: &str, ops: Value| {
        c.patch(server.url(path))
            .header("Content-Type", "application/json-patch+json")
            .body(ops.to_string())
    };
    let telecom =
        json!([{"op": "add", "path": "/telecom", "value": [{"system": "phone", "value": "555"}]}]);
    let res = patch(&patient, "Patient/pa", telecom.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = patch(
        &patient,
        "Patient/pa",
        json!([{"op": "add", "path": "/birthDate", "value": "1990-01-01"}]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    outcome(res).await;
    let res = patch(&patient, "Patient/pb", telecom).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // Conditional delete of someone else's record: refused.
    let res = patient
        .delete(server.url("Patient?family=Other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // An auditor's transaction writes nothing; a practitioner's does.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:o", "resource": {"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/pa"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let post = |c: &Client, body: &Value| {
        c.post(server.url(""))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    };
    let auditor = server.client_as(Role::Auditor, None);
    let res = post(&auditor, &bundle).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let oo = outcome(res).await;
    assert!(oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .starts_with("Bundle.entry[0]"));
    let practitioner = server.client_as(Role::Practitioner, None);
    let res = post(&practitioner, &bundle).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // A patient's Bundle reads: their own record, not another's.
    let reads = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/pa"}},
        {"request": {"method": "GET", "url": "Patient/pb"}},
        {"request": {"method": "GET", "url": "Observation"}}]});
    let res = post(&patient, &reads).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let statuses: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["200 OK", "403 Forbidden", "200 OK"]);
    let observations = body["entry"][2]["resource"]["entry"].as_array().unwrap();
    assert_eq!(observations.len(), 1);
}

/// A patient's type and system history hold only the versions that are in their
/// compartment: an Observation that moved from another Patient to theirs shows only its
/// later version, and one that moved away is not listed at all.
async fn patient_history_lists_only_compartment_versions(server: TestServer) {
    let w = world(&server).await;
    let practitioner = server.client_as(Role::Practitioner, None);
    let moved = |id: &str, p: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": format!("Patient/{p}")}})
    };
    // o2 moves to p1 (its version 1 belongs to p2); o1 moves away from p1.
    for (id, p) in [(&w.o2, &w.p1), (&w.o1, &w.p2)] {
        let res = practitioner
            .put(server.url(&format!("Observation/{id}")))
            .json(&moved(id, p))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let patient = server.client_as(Role::Patient, Some(&w.p1));
    let versions = |bundle: &Value| -> Vec<String> {
        let mut v: Vec<String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap(),
                    e["resource"]["meta"]["versionId"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    };
    let typed = expect(
        &server,
        &patient,
        "patient",
        Req::Get("Observation/_history".into()),
        200,
    )
    .await;
    assert_eq!(versions(&typed), [format!("Observation/{}/2", w.o2)]);
    let all = expect(
        &server,
        &patient,
        "patient",
        Req::Get("_history".into()),
        200,
    )
    .await;
    let all = versions(&all);
    assert!(all.contains(&format!("Observation/{}/2", w.o2)), "{all:?}");
    assert!(all.contains(&format!("Patient/{}/1", w.p1)), "{all:?}");
    assert!(
        !all.iter().any(|v| v.contains(&w.o1) || v.contains(&w.p2)),
        "{all:?}"
    );
    // The other Patient sees the mirror image.
    let other = server.client_as(Role::Patient, Some(&w.p2));
    let typed = expect(
        &server,
        &other,
        "patient",
        Req::Get("Observation/_history".into()),
        200,
    )
    .await;
    assert_eq!(versions(&typed), [format!("Observation/{}/2", w.o1)]);
}

backend_tests!(
    audited:
    patient_history_lists_only_compartment_versions,
    patch_conditional_and_bundle_entries_are_authorized,
    every_interaction_leaves_a_searchable_notarized_audit_event,
    without_a_token_the_api_answers_401,
    discovery_and_metadata_are_public,
    role_interaction_matrix,
    writes_name_the_principal_in_the_ledger,
);
