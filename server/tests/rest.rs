//! The FHIR REST core over HTTP, on SQLite and PostgreSQL: create, read, vread, update,
//! delete, history, conditional reads, version-aware writes, validation and errors.

mod common;

use common::{outcome, TestServer};
use serde_json::{json, Value};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "extension": [{
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
            "valueCode": "F"
        }],
        "name": [{ "family": "Chalmers", "given": ["Peter", "James"] }],
        "gender": "female",
        "birthDate": "1974-12-25",
        "_birthDate": { "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1974-12-25T14:35:45-05:00"
        }]},
        "address": [{ "city": "PleasantVille", "postalCode": "3999" }]
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8302-2" }] },
        "valueQuantity": { "value": 185.50, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm" }
    })
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("text header")
        .to_owned()
}

async fn create_then_read_round_trips_exactly(s: TestServer) {
    let res = s.post_json("Patient", &patient()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let location = header(&res, "location");
    assert_eq!(header(&res, "etag"), "W/\"1\"");
    assert!(res.headers().contains_key("last-modified"));
    assert!(header(&res, "content-type").starts_with("application/fhir+json"));
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", s.base));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let res = s.get(&format!("Patient/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), "W/\"1\"");
    let read_text = res.text().await.unwrap();
    let read: Value = serde_json::from_str(&read_text).unwrap();
    assert_eq!(read, created);
    // Elements keep the order the client sent them in, after the server-owned id and meta.
    let at = |key: &str| read_text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("resourceType") < at("id") && at("id") < at("meta") && at("meta") < at("extension"));
    assert!(
        at("extension") < at("name") && at("name") < at("gender") && at("gender") < at("birthDate")
    );
    assert!(at("birthDate") < at("_birthDate") && at("_birthDate") < at("address"));
    // Extensions (including primitive ones) survive untouched.
    assert_eq!(read["_birthDate"], patient()["_birthDate"]);
    assert_eq!(read["extension"], patient()["extension"]);
}

async fn decimals_keep_their_literal_form(s: TestServer) {
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"h"},"valueQuantity":{"value":185.50}}"#;
    let res = s
        .client
        .post(s.url("Observation"))
        .header("Content-Type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = serde_json::from_str::<Value>(&res.text().await.unwrap()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = s
        .get(&format!("Observation/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"value\":185.50"), "{text}");
}

async fn post_ignores_a_client_id_and_server_owns_meta(s: TestServer) {
    let mut body = patient();
    body["id"] = json!("client-chosen");
    body["meta"] = json!({ "versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{ "code": "keep" }] });
    let created = s.create(body).await;
    assert_ne!(created["id"], "client-chosen");
    assert_eq!(created["meta"]["versionId"], "1");
    assert_ne!(created["meta"]["lastUpdated"], "2001-01-01T00:00:00Z");
    assert_eq!(created["meta"]["tag"][0]["code"], "keep");
}

async fn update_creates_versions_and_vread_reads_each(s: TestServer) {
    let created = s.create(patient()).await;
    let id = created["id"].as_str().unwrap();
    let mut changed = created.clone();
    changed["gender"] = json!("male");
    let res = s
        .put_json(&format!("Patient/{id}"), &changed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), "W/\"2\"");
    assert_eq!(
        header(&res, "location"),
        format!("{}/Patient/{id}/_history/2", s.base)
    );
    let v2: Value = res.json().await.unwrap();
    assert_eq!(v2["meta"]["versionId"], "2");

    let v1: Value = s
        .get(&format!("Patient/{id}/_history/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["gender"], "female");
    let res = s
        .get(&format!("Patient/{id}/_history/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "etag"), "W/\"2\"");
    assert_eq!(res.json::<Value>().await.unwrap()["gender"], "male");
    let res = s
        .get(&format!("Patient/{id}/_history/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    outcome(res).await;
}

async fn update_as_create_uses_the_client_id(s: TestServer) {
    let mut body = patient();
    body["id"] = json!("pat-42");
    let res = s.put_json("Patient/pat-42", &body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "etag"), "W/\"1\"");
    let res = s.put_json("Patient/pat-42", &body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), "W/\"2\"");
}

async fn update_requires_matching_ids(s: TestServer) {
    let mut body = patient();
    body["id"] = json!("a");
    let res = s.put_json("Patient/b", &body).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = s.put_json("Patient/b", &patient()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    outcome(res).await;
    let res = s.get("Patient/b").send().await.unwrap();
    assert_eq!(res.status(), 404, "a refused update changes nothing");
}

async fn delete_is_versioned(s: TestServer) {
    let created = s.create(patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let res = s.delete(&format!("Patient/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "etag"), "W/\"2\"");

    let res = s.get(&format!("Patient/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 410);
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["code"], "deleted");
    let res = s
        .get(&format!("Patient/{id}/_history/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .get(&format!("Patient/{id}/_history/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);

    // Deleting again, or deleting what never existed, changes nothing.
    assert_eq!(
        s.delete(&format!("Patient/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.delete("Patient/never-was").send().await.unwrap().status(),
        204
    );

    // Re-creating continues the version sequence.
    let mut again = patient();
    again["id"] = json!(id);
    let res = s
        .put_json(&format!("Patient/{id}"), &again)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "etag"), "W/\"3\"");
    let res = s.get(&format!("Patient/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn if_match_makes_writes_version_aware(s: TestServer) {
    let created = s.create(patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("Patient/{id}");
    let res = s
        .put_json(&path, &created)
        .header("If-Match", "W/\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    outcome(res).await;
    let res = s
        .put_json(&path, &created)
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .delete(&path)
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let res = s
        .delete(&path)
        .header("If-Match", "W/\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = s
        .put_json(&path, &created)
        .header("If-Match", "nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

async fn racing_if_match_updates_let_exactly_one_win(s: TestServer) {
    let created = s.create(patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    for round in 1..=8i64 {
        let mut body = created.clone();
        body["gender"] = json!(if round % 2 == 0 { "male" } else { "female" });
        let requests = (0..4).map(|_| {
            s.put_json(&format!("Patient/{id}"), &body)
                .header("If-Match", format!("W/\"{round}\""))
                .send()
        });
        let statuses: Vec<u16> = futures_util::future::join_all(requests)
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 412).count(),
            3,
            "round {round}: {statuses:?}"
        );
    }
    let history: Value = s
        .get(&format!("Patient/{id}/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["total"], 9);
}

async fn concurrent_updates_never_lose_a_version(s: TestServer) {
    let created = s.create(patient()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let requests = (0..16).map(|_| s.put_json(&format!("Patient/{id}"), &created).send());
    let mut versions: Vec<i64> = Vec::new();
    for res in futures_util::future::join_all(requests).await {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        versions.push(
            header(&res, "etag")
                .trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse()
                .unwrap(),
        );
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<_>>());
}

async fn racing_update_as_create_makes_one_resource(s: TestServer) {
    let mut body = patient();
    body["id"] = json!("race");
    let requests = (0..8).map(|_| s.put_json("Patient/race", &body).send());
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
}

async fn conditional_read(s: TestServer) {
    let created = s.create(patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let res = s
        .get(&path)
        .header("If-None-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = s
        .get(&path)
        .header("If-None-Match", "W/\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .get(&path)
        .header("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = s
        .get(&path)
        .header("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn prefer_return(s: TestServer) {
    let res = s
        .post_json("Patient", &patient())
        .header("Prefer", "return=minimal")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().contains_key("location"));
    assert!(res.text().await.unwrap().is_empty());
    let res = s
        .post_json("Patient", &patient())
        .header("Prefer", "return=OperationOutcome")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["severity"], "information");
}

async fn format_negotiation(s: TestServer) {
    let created = s.create(patient()).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let res = s
        .get(&path)
        .header("Accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 406);
    outcome(res).await;
    assert_eq!(
        s.get(&format!("{path}?_format=xml"))
            .send()
            .await
            .unwrap()
            .status(),
        406
    );
    assert_eq!(
        s.get(&format!("{path}?_format=json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let res = s
        .get(&format!("{path}?_format=application/fhir+json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .get(&path)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = s
        .get(&format!("{path}?_pretty=true"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\n  \"resourceType\": \"Patient\""), "{text}");
    let res = s
        .client
        .post(s.url("Patient"))
        .header("Content-Type", "application/fhir+xml")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    outcome(res).await;
}

async fn summary_and_elements_on_read(s: TestServer) {
    let mut body = patient();
    body["text"] = json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter</div>" });
    let created = s.create(body).await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let res: Value = s
        .get(&format!("{path}?_elements=gender"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["gender"], "female");
    assert!(res.get("name").is_none());
    assert!(res.get("id").is_some());
    assert_eq!(res["meta"]["tag"][0]["code"], "SUBSETTED");
    let res: Value = s
        .get(&format!("{path}?_summary=data"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(res.get("text").is_none());
    assert!(res.get("name").is_some());
    let res: Value = s
        .get(&format!("{path}?_summary=text"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(res.get("text").is_some());
    assert!(res.get("name").is_none());
    let res: Value = s
        .get(&format!("{path}?_summary=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(res.get("name").is_some(), "name is a summary element");
    assert!(res.get("text").is_none());
    assert_eq!(
        s.get(&format!("{path}?_summary=bogus"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

async fn invalid_bodies_are_refused_with_outcomes(s: TestServer) {
    let send = |body: String| {
        s.client
            .post(s.url("Patient"))
            .header("Content-Type", "application/fhir+json")
            .body(body)
            .send()
    };
    let res = send("{not json".into()).await.unwrap();
    assert_eq!(res.status(), 400);
    outcome(res).await;

    let res =
        send(json!({ "resourceType": "Observation", "status": "final", "code": {} }).to_string())
            .await
            .unwrap();
    assert_eq!(res.status(), 400, "resourceType must match the URL");

    let mut unknown = patient();
    unknown["favouriteColour"] = json!("blue");
    let res = send(unknown.to_string()).await.unwrap();
    assert_eq!(res.status(), 400);
    let oo = outcome(res).await;
    assert_eq!(
        oo["issue"][0]["expression"][0], "Patient.favouriteColour",
        "{oo}"
    );

    let mut bad_date = patient();
    bad_date["birthDate"] = json!("1974-13-45");
    let res = send(bad_date.to_string()).await.unwrap();
    assert_eq!(res.status(), 400);
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate", "{oo}");

    let mut not_array = patient();
    not_array["name"] = json!({ "family": "x" });
    assert_eq!(send(not_array.to_string()).await.unwrap().status(), 400);

    // Missing required elements: understood, but not acceptable.
    let res = s
        .post_json(
            "Observation",
            &json!({ "resourceType": "Observation", "code": { "text": "x" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let oo = outcome(res).await;
    assert_eq!(oo["issue"][0]["code"], "required", "{oo}");

    let res = s
        .post_json("NotAType", &json!({ "resourceType": "NotAType" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    outcome(res).await;

    let res = send(format!(
        r#"{{"resourceType":"Patient","name":[{{"family":"{}"}}]}}"#,
        "x".repeat(2 * 1024 * 1024)
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 413);
    outcome(res).await;

    // A decimal beyond a double's range cannot be hashed, compared or searched.
    let res = s
        .client
        .post(s.url("Observation"))
        .header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let oo = outcome(res).await;
    assert_eq!(
        oo["issue"][0]["expression"][0], "Observation.valueQuantity.value",
        "{oo}"
    );

    // Control characters (NUL above all, which PostgreSQL text cannot hold) are refused.
    let res = send(r#"{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}"#.into())
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let oo = outcome(res).await;
    assert_eq!(
        oo["issue"][0]["expression"][0], "Patient.name[0].family",
        "{oo}"
    );
    let res = s.get("Patient?name=a%00b").send().await.unwrap();
    assert_eq!(res.status(), 400);
    outcome(res).await;

    // Nothing refused was stored.
    let history: Value = s
        .get("_history")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(history.get("entry").is_none(), "{history}");
}

async fn contained_resources_are_validated(s: TestServer) {
    let mut body = observation();
    body["contained"] =
        json!([{ "resourceType": "Patient", "id": "p1", "gender": "nope-not-a-code " }]);
    let res = s.post_json("Observation", &body).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let oo = outcome(res).await;
    let expr = oo["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(expr.starts_with("Observation.contained[0]"), "{oo}");
    body["contained"] = json!([{ "resourceType": "Patient", "id": "p1", "gender": "male" }]);
    body["subject"] = json!({ "reference": "#p1" });
    assert_eq!(
        s.post_json("Observation", &body)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
}

async fn unknown_routes_and_methods_answer_with_outcomes(s: TestServer) {
    let res = s
        .client
        .get(format!("{}/nothing-here", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    outcome(res).await;
    let res = s.client.post(s.url("Patient/x")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    outcome(res).await;
    let res = s.get("Patient/bad$id").send().await.unwrap();
    assert_eq!(res.status(), 400);
    outcome(res).await;
    let res = s.get("Patient/does-not-exist").send().await.unwrap();
    assert_eq!(res.status(), 404);
    outcome(res).await;
}

async fn history_at_every_level_with_paging(s: TestServer) {
    let a = s.create(patient()).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    s.put_json(&format!("Patient/{a_id}"), &a)
        .send()
        .await
        .unwrap();
    s.delete(&format!("Patient/{a_id}")).send().await.unwrap();
    for _ in 0..4 {
        s.create(observation()).await;
    }

    let inst: Value = s
        .get(&format!("Patient/{a_id}/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inst["type"], "history");
    assert_eq!(inst["total"], 3);
    let entries = inst["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    // Newest first, with request and response as the history bundle requires.
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[0]["response"]["status"], "204 No Content");
    assert_eq!(entries[1]["request"]["method"], "PUT");
    assert_eq!(entries[1]["request"]["url"], format!("Patient/{a_id}"));
    assert_eq!(entries[1]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[2]["request"]["method"], "POST");
    assert_eq!(entries[2]["request"]["url"], "Patient");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["fullUrl"], format!("{}/Patient/{a_id}", s.base));

    let ty: Value = s
        .get("Observation/_history")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ty["entry"].as_array().unwrap().len(), 4);

    // Page through system history two at a time while another client keeps writing:
    // every version present at the first page is seen exactly once.
    let mut seen = Vec::new();
    let mut url = s.url("_history?_count=2");
    loop {
        let page: Value = s
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s.create(observation()).await;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(format!("{}@{}", e["fullUrl"], e["response"]["etag"]));
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);

    let none: Value = s
        .get("_history?_count=0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.get("entry").is_none(), "{none}");
    assert!(
        !none["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next"),
        "_count=0 must not link to an endless chain of empty pages: {none}"
    );
    // Offsets beyond what SQL integers hold are an empty page, not a crash.
    let far: Value = s
        .get("_history?_offset=18446744073709551615")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(far.get("entry").is_none(), "{far}");
    let res = s
        .get("Patient?_offset=18446744073709551615")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s.get("_history?_count=x").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = s.get("Patient/no-such/_history").send().await.unwrap();
    assert_eq!(res.status(), 404);
}

async fn history_since_and_at(s: TestServer) {
    let a = s.create(patient()).await;
    let id = a["id"].as_str().unwrap().to_owned();
    let first_updated = a["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let b: Value = s
        .put_json(&format!("Patient/{id}"), &a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_updated = b["meta"]["lastUpdated"].as_str().unwrap().to_owned();

    let since: Value = s
        .get(&format!(
            "Patient/{id}/_history?_since={}",
            urlencode(&second_updated)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(since["total"], 1, "{since}");
    assert_eq!(since["entry"][0]["response"]["etag"], "W/\"2\"");

    // At the instant of the first write, version 1 was current and version 2 did not exist.
    let at: Value = s
        .get(&format!(
            "Patient/{id}/_history?_at={}",
            urlencode(&first_updated)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at["total"], 1, "{at}");
    assert_eq!(at["entry"][0]["response"]["etag"], "W/\"1\"");
    assert_eq!(
        s.get("_history?_since=yesterday")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn capability_statement_lists_what_is_supported(s: TestServer) {
    let res = s.get("metadata").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cs: Value = res.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(
        resources.len(),
        fhir::definitions::r4().resource_types().count()
    );
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    assert_eq!(patient["updateCreate"], true);
    assert_eq!(patient["versioning"], "versioned-update");
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for code in [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "create",
    ] {
        assert!(codes.contains(&code), "{code} missing");
    }
    assert!(codes.contains(&"search-type"), "search-type missing");
}

async fn health_and_request_ids(s: TestServer) {
    let res = s
        .client
        .get(format!("{}/healthz", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let res = s
        .client
        .get(format!("{}/readyz", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .get("metadata")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "x-request-id"), "abc-123");
    let res = s
        .get("metadata")
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(header(&res, "x-request-id"), "bad id with spaces");
}

backend_tests!(
    create_then_read_round_trips_exactly,
    decimals_keep_their_literal_form,
    post_ignores_a_client_id_and_server_owns_meta,
    update_creates_versions_and_vread_reads_each,
    update_as_create_uses_the_client_id,
    update_requires_matching_ids,
    delete_is_versioned,
    if_match_makes_writes_version_aware,
    racing_if_match_updates_let_exactly_one_win,
    concurrent_updates_never_lose_a_version,
    racing_update_as_create_makes_one_resource,
    conditional_read,
    prefer_return,
    format_negotiation,
    summary_and_elements_on_read,
    invalid_bodies_are_refused_with_outcomes,
    contained_resources_are_validated,
    unknown_routes_and_methods_answer_with_outcomes,
    history_at_every_level_with_paging,
    history_since_and_at,
    capability_statement_lists_what_is_supported,
    health_and_request_ids,
);
