//! The search conformance suite over HTTP, on SQLite and PostgreSQL: hand-built fixtures whose
//! expected results are written out here, for every parameter type, modifier and prefix,
//! chaining, `_has`, includes, sorting, paging under concurrent writes, totals, handling.

mod common;

use std::collections::BTreeSet;

use common::{outcome, TestServer};
use serde_json::{json, Value};

/// Writes `body` under its own id (update-as-create).
async fn put(s: &TestServer, body: Value) {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let res = s.put_json(&path, &body).send().await.unwrap();
    let status = res.status();
    assert!(
        status == 201 || status == 200,
        "PUT {path}: {status} {}",
        res.text().await.unwrap_or_default()
    );
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// GETs a searchset, checking its shape.
async fn get_bundle(s: &TestServer, url: &str) -> Value {
    let res = s.client.get(url).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    assert_eq!(body["resourceType"], "Bundle");
    assert_eq!(body["type"], "searchset");
    body
}

async fn search(s: &TestServer, ty: &str, pairs: &[(&str, &str)]) -> Value {
    get_bundle(s, &s.url(&format!("{ty}?{}", query(pairs)))).await
}

fn ids_with_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Match ids in order.
async fn ids(s: &TestServer, ty: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    ids_with_mode(&search(s, ty, pairs).await, "match")
}

/// Match ids as a set, checking none repeats.
async fn set(s: &TestServer, ty: &str, pairs: &[(&str, &str)]) -> BTreeSet<String> {
    let list = ids(s, ty, pairs).await;
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(
        set.len(),
        list.len(),
        "{ty} {pairs:?} repeated a match: {list:?}"
    );
    set
}

fn of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";

/// Organizations, Patients and Observations that most tests search.
async fn fixtures(s: &TestServer) {
    put(
        s,
        json!({"resourceType": "Organization", "id": "org1", "name": "Acme Hospital"}),
    )
    .await;
    put(
        s,
        json!({"resourceType": "Organization", "id": "org2", "name": "Beta Clinic"}),
    )
    .await;
    put(
        s,
        json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "http://hospital/mrn", "value": "111"}],
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "gender": "male", "birthDate": "1974-12-25",
            "managingOrganization": {"reference": "Organization/org1"}
        }),
    )
    .await;
    put(
        s,
        json!({
            "resourceType": "Patient", "id": "p2",
            "identifier": [{"system": "http://other", "value": "111"}],
            "name": [{"family": "Núñez", "given": ["María"]}],
            "gender": "female", "birthDate": "1980-03",
            "managingOrganization": {"reference": "Organization/org2"}
        }),
    )
    .await;
    put(
        s,
        json!({
            "resourceType": "Patient", "id": "p3",
            "identifier": [{"value": "111"}],
            "name": [{"family": "Chalmers-Smith", "given": ["Anna"]}],
            "gender": "female", "birthDate": "1974"
        }),
    )
    .await;
    put(
        s,
        json!({
            "resourceType": "Patient", "id": "p4",
            "name": [{"family": "Obrien", "given": ["Sean"]}],
            "birthDate": "2001-06-15"
        }),
    )
    .await;
    let obs = |id: &str, code: (&str, &str, &str), subject: Value| {
        json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": code.0, "code": code.1, "display": code.2}]},
            "subject": subject
        })
    };
    let mut o1 = obs(
        "o1",
        (LOINC, "8480-6", "Systolic blood pressure"),
        json!({"reference": "Patient/p1"}),
    );
    o1["effectiveDateTime"] = json!("2020-01-15T10:00:00Z");
    o1["valueQuantity"] = json!({"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"});
    put(s, o1).await;
    let mut o2 = obs(
        "o2",
        (LOINC, "8462-4", "Diastolic blood pressure"),
        json!({"reference": "Patient/p1"}),
    );
    o2["effectiveDateTime"] = json!("2020-02-20");
    o2["valueQuantity"] = json!({"value": 80, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"});
    put(s, o2).await;
    let mut o3 = obs(
        "o3",
        (LOINC, "29463-7", "Body weight"),
        json!({"reference": "Patient/p2"}),
    );
    o3["effectiveDateTime"] = json!("2021-06");
    o3["valueQuantity"] = json!({"value": 72.5, "unit": "kg", "system": UCUM, "code": "kg"});
    put(s, o3).await;
    let mut o4 = obs(
        "o4",
        ("http://snomed.info/sct", "27113001", "Body weight"),
        json!({"reference": "Patient/p3"}),
    );
    o4["effectivePeriod"] = json!({"start": "2019-01-01"});
    o4["valueQuantity"] = json!({"value": 150, "unit": "lb"});
    put(s, o4).await;
    // A reference to another server's Patient with the same id as ours.
    put(
        s,
        obs(
            "o5",
            (LOINC, "0000-0", "Other"),
            json!({"reference": "http://other.org/fhir/Patient/p1"}),
        ),
    )
    .await;
    // A logical reference by identifier only.
    put(
        s,
        obs(
            "o6",
            (LOINC, "0000-0", "Other"),
            json!({"identifier": {"system": "http://hospital/mrn", "value": "999"}}),
        ),
    )
    .await;
}

async fn strings(s: TestServer) {
    fixtures(&s).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Patient", pairs);
    assert_eq!(p(&[("family", "chal")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("family", "CHALMERS")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("family:exact", "Chalmers")]).await, of(&["p1"]));
    assert_eq!(p(&[("family:exact", "chalmers")]).await, of(&[]));
    assert_eq!(p(&[("family:contains", "MERS")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("family:contains", "smi")]).await, of(&["p3"]));
    assert_eq!(p(&[("family", "nunez")]).await, of(&["p2"]));
    assert_eq!(p(&[("family", "Núñ")]).await, of(&["p2"]));
    assert_eq!(p(&[("family:exact", "Núñez")]).await, of(&["p2"]));
    assert_eq!(p(&[("name", "peter")]).await, of(&["p1"]));
    assert_eq!(p(&[("given", "james")]).await, of(&["p1"]));
    // OR with commas, AND with repetition.
    assert_eq!(p(&[("family", "chal,obr")]).await, of(&["p1", "p3", "p4"]));
    assert_eq!(
        p(&[("family", "chal"), ("given", "anna")]).await,
        of(&["p3"])
    );
    assert_eq!(p(&[("family", "chal"), ("family", "smith")]).await, of(&[]));
    // LIKE wildcards in a value are literal.
    assert_eq!(p(&[("family", "c_al")]).await, of(&[]));
    assert_eq!(p(&[("family", "%")]).await, of(&[]));
    assert_eq!(p(&[("family:contains", "%")]).await, of(&[]));
    // :missing.
    assert_eq!(
        p(&[("family:missing", "false")]).await,
        of(&["p1", "p2", "p3", "p4"])
    );
    assert_eq!(p(&[("family:missing", "true")]).await, of(&[]));
}

async fn tokens(s: TestServer) {
    fixtures(&s).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Patient", pairs);
    assert_eq!(p(&[("gender", "male")]).await, of(&["p1"]));
    assert_eq!(
        p(&[("gender", "female,male")]).await,
        of(&["p1", "p2", "p3"])
    );
    assert_eq!(p(&[("gender:not", "male")]).await, of(&["p2", "p3", "p4"]));
    assert_eq!(p(&[("gender:not", "male,female")]).await, of(&["p4"]));
    assert_eq!(p(&[("gender:missing", "true")]).await, of(&["p4"]));
    assert_eq!(
        p(&[("gender:missing", "false")]).await,
        of(&["p1", "p2", "p3"])
    );
    assert_eq!(p(&[("identifier", "111")]).await, of(&["p1", "p2", "p3"]));
    assert_eq!(
        p(&[("identifier", "http://hospital/mrn|111")]).await,
        of(&["p1"])
    );
    assert_eq!(p(&[("identifier", "|111")]).await, of(&["p3"]));
    assert_eq!(p(&[("identifier", "http://other|")]).await, of(&["p2"]));
    assert_eq!(p(&[("identifier", "http://other|222")]).await, of(&[]));
    assert_eq!(p(&[("_id", "p1,p4")]).await, of(&["p1", "p4"]));
    let o = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Observation", pairs);
    assert_eq!(o(&[("code", "http://loinc.org|8480-6")]).await, of(&["o1"]));
    assert_eq!(o(&[("code", "8480-6,27113001")]).await, of(&["o1", "o4"]));
    assert_eq!(o(&[("code", "http://snomed.info/sct|")]).await, of(&["o4"]));
    assert_eq!(
        o(&[("code:text", "systolic,DIAST")]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(o(&[("code:text", "BODY w")]).await, of(&["o3", "o4"]));
    assert_eq!(
        o(&[("code:not", "http://loinc.org|0000-0")]).await,
        of(&["o1", "o2", "o3", "o4"])
    );
    assert_eq!(
        o(&[("status", "final"), ("code", "29463-7")]).await,
        of(&["o3"])
    );
    // Deleted resources are never found.
    let res = s.delete("Patient/p4").send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(p(&[("gender:missing", "true")]).await, of(&[]));
    assert_eq!(p(&[("_id", "p1,p4")]).await, of(&["p1"]));
    // `:of-type`: the identifier's type coding and its value, together.
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    put(
        &s,
        json!({"resourceType": "Patient", "id": "p5", "gender": "other", "identifier": [
            {"type": {"coding": [{"system": v2, "code": "MR"}]}, "system": "http://hospital/mrn", "value": "555"},
            {"type": {"coding": [{"system": v2, "code": "DL"}]}, "value": "777"}]}),
    )
    .await;
    const MR555: &str = "http://terminology.hl7.org/CodeSystem/v2-0203|MR|555";
    const MR777: &str = "http://terminology.hl7.org/CodeSystem/v2-0203|MR|777";
    const EITHER: &str = "http://terminology.hl7.org/CodeSystem/v2-0203|DL|777,http://x|MR|555";
    assert_eq!(p(&[("identifier:of-type", MR555)]).await, of(&["p5"]));
    assert_eq!(p(&[("identifier:of-type", MR777)]).await, of(&[]));
    assert_eq!(p(&[("identifier:of-type", EITHER)]).await, of(&["p5"]));
    assert_eq!(p(&[("identifier", "555")]).await, of(&["p5"]));
}

async fn dates(s: TestServer) {
    fixtures(&s).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Patient", pairs);
    // eq: the search range contains the value's range.
    assert_eq!(p(&[("birthdate", "1974")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("birthdate", "eq1974-12-25")]).await, of(&["p1"]));
    assert_eq!(p(&[("birthdate", "1980-03-10")]).await, of(&[]));
    assert_eq!(p(&[("birthdate", "ne1974")]).await, of(&["p2", "p4"]));
    assert_eq!(p(&[("birthdate", "gt1980-01-01")]).await, of(&["p2", "p4"]));
    assert_eq!(p(&[("birthdate", "lt1975")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("birthdate", "lt1974-06")]).await, of(&["p3"]));
    assert_eq!(p(&[("birthdate", "ge1980-03")]).await, of(&["p2", "p4"]));
    assert_eq!(p(&[("birthdate", "le1974-12-25")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("birthdate", "sa1975")]).await, of(&["p2", "p4"]));
    assert_eq!(
        p(&[("birthdate", "sa1974-06")]).await,
        of(&["p1", "p2", "p4"])
    );
    assert_eq!(p(&[("birthdate", "eb1980")]).await, of(&["p1", "p3"]));
    assert_eq!(p(&[("birthdate", "ap2001-06-10")]).await, of(&["p4"]));
    assert_eq!(
        p(&[("birthdate", "1974,2001")]).await,
        of(&["p1", "p3", "p4"])
    );
    assert_eq!(
        p(&[("birthdate", "ge1974"), ("birthdate", "lt1980")]).await,
        of(&["p1", "p3"])
    );
    assert_eq!(p(&[("birthdate:missing", "true")]).await, of(&[]));
    let o = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Observation", pairs);
    assert_eq!(o(&[("date", "2020")]).await, of(&["o1", "o2"]));
    assert_eq!(o(&[("date", "2020-01-15T10:00:00Z")]).await, of(&["o1"]));
    assert_eq!(
        o(&[("date", "2020-01-15T10:00:00+00:00")]).await,
        of(&["o1"])
    );
    // o4 is a Period that started in 2019 and has not ended.
    assert_eq!(o(&[("date", "gt2025")]).await, of(&["o4"]));
    assert_eq!(o(&[("date", "lt2019-06")]).await, of(&["o4"]));
    assert_eq!(
        o(&[("date", "ge2020"), ("date", "lt2021")]).await,
        of(&["o1", "o2", "o4"])
    );
    assert_eq!(o(&[("date", "sa2020-06")]).await, of(&["o3"]));
    assert_eq!(o(&[("date", "eb2020-02")]).await, of(&["o1"]));
    assert_eq!(o(&[("date:missing", "true")]).await, of(&["o5", "o6"]));
    // _lastUpdated is a date parameter too.
    assert_eq!(
        p(&[("_lastUpdated", "gt2000-01-01")]).await,
        of(&["p1", "p2", "p3", "p4"])
    );
    assert_eq!(p(&[("_lastUpdated", "lt2000-01-01")]).await, of(&[]));
    // Both are answered from the resources table: exact instants, prefixes, :not,
    // :missing and sorting behave as for any token or date parameter.
    let read: Value = s
        .get("Patient/p2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let instant = read["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let at = |prefix: &str| format!("{prefix}{instant}");
    let exactly = set(&s, "Patient", &[("_lastUpdated", &at("eq"))]).await;
    assert!(exactly.contains("p2"), "{exactly:?}");
    let after = set(&s, "Patient", &[("_lastUpdated", &at("gt"))]).await;
    assert!(!after.contains("p2"), "{after:?}");
    let from = set(&s, "Patient", &[("_lastUpdated", &at("ge"))]).await;
    assert!(from.contains("p2"), "{from:?}");
    assert_eq!(p(&[("_id:not", "p1,p2")]).await, of(&["p3", "p4"]));
    assert_eq!(p(&[("_id", "|p3")]).await, of(&["p3"]));
    assert_eq!(p(&[("_id", "http://x|p3")]).await, of(&[]));
    assert_eq!(p(&[("_id:missing", "true")]).await, of(&[]));
    assert_eq!(
        p(&[("_lastUpdated:missing", "false")]).await,
        of(&["p1", "p2", "p3", "p4"])
    );
    let newest_first = search(&s, "Patient", &[("_sort", "-_lastUpdated,_id")]).await;
    let stamps: Vec<&str> = newest_first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["lastUpdated"].as_str().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted);
}

async fn numbers_quantities_composites_uris(s: TestServer) {
    fixtures(&s).await;
    for (id, p) in [("ra1", 0.25), ("ra2", 0.5), ("ra3", 0.8)] {
        put(
            &s,
            json!({
                "resourceType": "RiskAssessment", "id": id, "status": "final",
                "subject": {"reference": "Patient/p1"},
                "prediction": [{"probabilityDecimal": p}]
            }),
        )
        .await;
    }
    let r = |pairs: &'static [(&'static str, &'static str)]| set(&s, "RiskAssessment", pairs);
    assert_eq!(r(&[("probability", "0.5")]).await, of(&["ra2"]));
    assert_eq!(r(&[("probability", "0.50")]).await, of(&["ra2"]));
    assert_eq!(r(&[("probability", "0.7")]).await, of(&[]));
    assert_eq!(r(&[("probability", "1")]).await, of(&["ra2", "ra3"]));
    assert_eq!(r(&[("probability", "gt0.3")]).await, of(&["ra2", "ra3"]));
    assert_eq!(r(&[("probability", "le0.5")]).await, of(&["ra1", "ra2"]));
    assert_eq!(r(&[("probability", "ne0.5")]).await, of(&["ra1", "ra3"]));
    assert_eq!(r(&[("probability", "ap0.8")]).await, of(&["ra3"]));
    assert_eq!(r(&[("probability", "lt0.25,gt0.75")]).await, of(&["ra3"]));

    let o = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Observation", pairs);
    assert_eq!(o(&[("value-quantity", "120")]).await, of(&["o1"]));
    assert_eq!(o(&[("value-quantity", "gt100")]).await, of(&["o1", "o4"]));
    assert_eq!(
        o(&[("value-quantity", "lt100|http://unitsofmeasure.org|mm[Hg]")]).await,
        of(&["o2"])
    );
    assert_eq!(o(&[("value-quantity", "72.5||kg")]).await, of(&["o3"]));
    assert_eq!(o(&[("value-quantity", "150||lb")]).await, of(&["o4"]));
    assert_eq!(
        o(&[("value-quantity", "150|http://unitsofmeasure.org|lb")]).await,
        of(&[])
    );
    assert_eq!(o(&[("value-quantity", "le80")]).await, of(&["o2", "o3"]));
    assert_eq!(o(&[("value-quantity", "ap75")]).await, of(&["o2", "o3"]));
    assert_eq!(
        o(&[("value-quantity:missing", "true")]).await,
        of(&["o5", "o6"])
    );
    // Composites: both components from the same value.
    assert_eq!(
        o(&[("code-value-quantity", "http://loinc.org|8480-6$gt100")]).await,
        of(&["o1"])
    );
    assert_eq!(
        o(&[("code-value-quantity", "http://loinc.org|8462-4$gt100")]).await,
        of(&[])
    );
    assert_eq!(
        o(&[("code-value-quantity", "8462-4$lt100,29463-7$72.5")]).await,
        of(&["o2", "o3"])
    );
    assert_eq!(
        o(&[("code-value-quantity:missing", "false")]).await,
        of(&["o1", "o2", "o3", "o4"])
    );

    for (id, url) in [
        ("vs1", "http://example.org/fhir/ValueSet/a"),
        ("vs2", "http://example.org/fhir/ValueSet/a/b"),
        ("vs3", "http://example.org/other"),
    ] {
        put(
            &s,
            json!({"resourceType": "ValueSet", "id": id, "status": "active", "url": url}),
        )
        .await;
    }
    let v = |pairs: &'static [(&'static str, &'static str)]| set(&s, "ValueSet", pairs);
    assert_eq!(
        v(&[("url", "http://example.org/fhir/ValueSet/a")]).await,
        of(&["vs1"])
    );
    assert_eq!(
        v(&[("url", "http://example.org/fhir/ValueSet")]).await,
        of(&[])
    );
    assert_eq!(
        v(&[("url:below", "http://example.org/fhir/ValueSet/a")]).await,
        of(&["vs1", "vs2"])
    );
    assert_eq!(
        v(&[("url:below", "http://example.org/fhir")]).await,
        of(&["vs1", "vs2"])
    );
    assert_eq!(
        v(&[("url:below", "http://example.org/fhir/Value")]).await,
        of(&[])
    );
    assert_eq!(
        v(&[("url:above", "http://example.org/fhir/ValueSet/a/b/c")]).await,
        of(&["vs1", "vs2"])
    );
    assert_eq!(
        v(&[("url:above", "http://example.org/fhir/ValueSet/a")]).await,
        of(&["vs1"])
    );
}

async fn compartment_search(s: TestServer) {
    fixtures(&s).await;
    // Patient/p1's compartment: the Observations whose subject is p1, and p1 itself.
    assert_eq!(
        set(&s, "Patient/p1/Observation", &[]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(
        set(
            &s,
            "Patient/p1/Observation",
            &[("code", "http://loinc.org|8480-6")]
        )
        .await,
        of(&["o1"])
    );
    assert_eq!(set(&s, "Patient/p1/Patient", &[]).await, of(&["p1"]));
    assert_eq!(set(&s, "Patient/nobody/Observation", &[]).await, of(&[]));
    let bundle = search(&s, "Patient/p1/Observation", &[("_count", "1")]).await;
    assert!(link(&bundle, "self")
        .unwrap()
        .contains("/Patient/p1/Observation"));
    assert!(link(&bundle, "next")
        .unwrap()
        .contains("/Patient/p1/Observation?"));
    // Organizations are not in the Patient compartment.
    let res = s.get("Patient/p1/Organization").send().await.unwrap();
    assert_eq!(res.status(), 404);
    outcome(res).await;
    // The literal routes under an instance still win.
    let res = s.get("Patient/p1/_history").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn references_and_chains(s: TestServer) {
    fixtures(&s).await;
    assert_eq!(
        set(&s, "Observation", &[("subject", "Patient/p1")]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(
        set(&s, "Observation", &[("subject", "p2")]).await,
        of(&["o3"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient", "Patient/p3")]).await,
        of(&["o4"])
    );
    assert_eq!(
        set(&s, "Observation", &[("subject:Patient", "p1")]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(
        set(&s, "Observation", &[("subject", "Patient/p1,Patient/p2")]).await,
        of(&["o1", "o2", "o3"])
    );
    // An absolute URL under this server's base is a local reference...
    let local = format!("{}/Patient/p2", s.base);
    assert_eq!(
        set(&s, "Observation", &[("subject", local.as_str())]).await,
        of(&["o3"])
    );
    // ...and another server's is not.
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("subject", "http://other.org/fhir/Patient/p1")]
        )
        .await,
        of(&["o5"])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("subject:identifier", "http://hospital/mrn|999")]
        )
        .await,
        of(&["o6"])
    );
    assert_eq!(
        set(&s, "Observation", &[("subject:identifier", "999")]).await,
        of(&["o6"])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("subject:identifier", "http://other|999")]
        )
        .await,
        of(&[])
    );
    assert_eq!(
        set(&s, "Observation", &[("subject:missing", "true")]).await,
        of(&[])
    );
    // Chains, one and two levels.
    assert_eq!(
        set(&s, "Observation", &[("subject:Patient.family", "nunez")]).await,
        of(&["o3"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient.family", "chal")]).await,
        of(&["o1", "o2", "o4"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient.gender", "female")]).await,
        of(&["o3", "o4"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient.organization.name", "acme")]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("patient.organization.name", "beta,acme")]
        )
        .await,
        of(&["o1", "o2", "o3"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient.organization._id", "org2")]).await,
        of(&["o3"])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("patient.family", "chal"), ("patient.gender", "male")]
        )
        .await,
        of(&["o1", "o2"])
    );
    let p = set(&s, "Patient", &[("organization.name", "acme,beta")]).await;
    assert_eq!(p, of(&["p1", "p2"]));
    assert_eq!(
        set(&s, "Patient", &[("organization", "Organization/org1")]).await,
        of(&["p1"])
    );

    // `patient` is `subject` restricted to Patients, answered from the subject rows.
    assert_eq!(
        set(&s, "Observation", &[("patient", "p1")]).await,
        of(&["o1", "o2"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient:missing", "true")]).await,
        of(&["o6"])
    );
    assert_eq!(
        set(&s, "Observation", &[("patient:Patient", "p2")]).await,
        of(&["o3"])
    );
    assert_eq!(
        ids(
            &s,
            "Observation",
            &[("_sort", "patient"), ("patient:missing", "false")]
        )
        .await,
        ["o1", "o2", "o5", "o3", "o4"]
    );
    // A logical reference typed Patient counts as one; o6's, untyped, does not.
    put(
        &s,
        json!({"resourceType": "Observation", "id": "o7", "status": "final",
            "code": {"text": "Other"},
            "subject": {"type": "Patient",
                "identifier": {"system": "http://hospital/mrn", "value": "777"}}}),
    )
    .await;
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("patient:identifier", "http://hospital/mrn|777")]
        )
        .await,
        of(&["o7"])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("patient:identifier", "http://hospital/mrn|999")]
        )
        .await,
        of(&[])
    );
    assert_eq!(
        set(
            &s,
            "Observation",
            &[("subject:identifier", "http://hospital/mrn|999")]
        )
        .await,
        of(&["o6"])
    );
}

async fn reverse_chains(s: TestServer) {
    fixtures(&s).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Patient", pairs);
    assert_eq!(
        p(&[("_has:Observation:patient:code", "8480-6")]).await,
        of(&["p1"])
    );
    assert_eq!(
        p(&[("_has:Observation:subject:code:text", "body")]).await,
        of(&["p2", "p3"])
    );
    assert_eq!(
        p(&[("_has:Observation:patient:value-quantity", "gt100")]).await,
        of(&["p1", "p3"])
    );
    assert_eq!(
        p(&[
            ("_has:Observation:patient:code", "8480-6"),
            ("gender", "female")
        ])
        .await,
        of(&[])
    );
    // Nested: Organizations with a Patient who has a body weight Observation.
    assert_eq!(
        set(
            &s,
            "Organization",
            &[(
                "_has:Patient:organization:_has:Observation:patient:code",
                "29463-7"
            )]
        )
        .await,
        of(&["org2"])
    );
    assert_eq!(
        set(
            &s,
            "Organization",
            &[("_has:Patient:organization:name", "chal")]
        )
        .await,
        of(&["org1"])
    );
}

async fn includes(s: TestServer) {
    fixtures(&s).await;
    let b = search(
        &s,
        "Observation",
        &[
            ("code", "8480-6,8462-4"),
            ("_include", "Observation:patient"),
        ],
    )
    .await;
    assert_eq!(
        ids_with_mode(&b, "match")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        of(&["o1", "o2"])
    );
    assert_eq!(ids_with_mode(&b, "include"), ["p1"]);
    let entry = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .unwrap();
    assert_eq!(entry["fullUrl"], format!("{}/Patient/p1", s.base));

    let b = search(
        &s,
        "Observation",
        &[("_id", "o1"), ("_include", "Observation:subject:Patient")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "include"), ["p1"]);
    let b = search(
        &s,
        "Observation",
        &[("_id", "o1"), ("_include", "Observation:subject:Group")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "include"), Vec::<String>::new());
    // `*`: every reference; the subject and patient parameters find p1 once.
    let b = search(&s, "Observation", &[("_id", "o1"), ("_include", "*")]).await;
    assert_eq!(ids_with_mode(&b, "include"), ["p1"]);
    // A foreign reference includes nothing.
    let b = search(
        &s,
        "Observation",
        &[("_id", "o5"), ("_include", "Observation:subject")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "include"), Vec::<String>::new());

    let b = search(
        &s,
        "Patient",
        &[("_id", "p1"), ("_revinclude", "Observation:patient")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "match"), ["p1"]);
    assert_eq!(ids_with_mode(&b, "include"), ["o1", "o2"]);
    // Wildcards: every reference parameter of the type (`subject` and `patient` both find
    // o1 and o2, once each), or of every type.
    let b = search(
        &s,
        "Patient",
        &[("_id", "p1"), ("_revinclude", "Observation:*")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "include"), ["o1", "o2"]);
    let b = search(&s, "Organization", &[("_id", "org1"), ("_revinclude", "*")]).await;
    // The trail's AuditEvents name org1 too, once stored; they are not what is tested here.
    let included: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] != "AuditEvent")
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(included, ["Patient/p1"]);

    // :iterate follows included resources; without it, it stops after one step.
    let b = search(
        &s,
        "Observation",
        &[
            ("code", "8480-6"),
            ("_include", "Observation:patient"),
            ("_include", "Patient:organization"),
        ],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "include"), ["p1"]);
    let b = search(
        &s,
        "Observation",
        &[
            ("code", "8480-6"),
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:organization"),
        ],
    )
    .await;
    let included: BTreeSet<String> = ids_with_mode(&b, "include").into_iter().collect();
    assert_eq!(included, of(&["org1", "p1"]));

    // Never a match twice, never a match as an include, never an include twice.
    let b = search(
        &s,
        "Patient",
        &[
            ("family", "chal"),
            ("_revinclude", "Observation:patient"),
            ("_include:iterate", "Observation:patient"),
            ("_include:iterate", "Observation:subject"),
        ],
    )
    .await;
    let matches = ids_with_mode(&b, "match");
    assert_eq!(
        matches.iter().cloned().collect::<BTreeSet<_>>(),
        of(&["p1", "p3"])
    );
    let included = ids_with_mode(&b, "include");
    assert_eq!(included.len(), 3, "{included:?}");
    assert_eq!(
        included.into_iter().collect::<BTreeSet<_>>(),
        of(&["o1", "o2", "o4"])
    );
    // The total counts matches only.
    assert_eq!(b["total"], 2);
}

async fn sorting(s: TestServer) {
    fixtures(&s).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| ids(&s, "Patient", pairs);
    assert_eq!(p(&[("_sort", "family")]).await, ["p1", "p3", "p2", "p4"]);
    assert_eq!(p(&[("_sort", "-family")]).await, ["p4", "p2", "p3", "p1"]);
    assert_eq!(p(&[("_sort", "birthdate")]).await, ["p3", "p1", "p2", "p4"]);
    // Descending dates sort on where their range ends: 1974 ends after 1974-12-25.
    assert_eq!(
        p(&[("_sort", "-birthdate")]).await,
        ["p4", "p2", "p3", "p1"]
    );
    // Several keys; resources without a value sort last either way.
    assert_eq!(
        p(&[("_sort", "gender,-birthdate")]).await,
        ["p2", "p3", "p1", "p4"]
    );
    assert_eq!(
        p(&[("_sort", "-gender,birthdate")]).await,
        ["p1", "p3", "p2", "p4"]
    );
    assert_eq!(
        p(&[("_sort", "gender,_id")]).await,
        ["p2", "p3", "p1", "p4"]
    );
    assert_eq!(p(&[("_sort", "-_id")]).await, ["p4", "p3", "p2", "p1"]);
    let o = |pairs: &'static [(&'static str, &'static str)]| ids(&s, "Observation", pairs);
    assert_eq!(
        o(&[
            ("_sort", "value-quantity"),
            ("value-quantity:missing", "false")
        ])
        .await,
        ["o3", "o2", "o1", "o4"]
    );
    assert_eq!(
        o(&[("_sort", "-date"), ("date:missing", "false")]).await,
        ["o4", "o3", "o2", "o1"]
    );
    // Default: newest first.
    assert_eq!(p(&[]).await, ["p4", "p3", "p2", "p1"]);
    put(&s, json!({"resourceType": "Patient", "id": "p2", "gender": "female", "name": [{"family": "Núñez"}]})).await;
    assert_eq!(p(&[]).await, ["p2", "p4", "p3", "p1"]);
}

/// Follows `next` links from `first`, collecting match ids; runs `between` after the first
/// page.
async fn collect_pages(s: &TestServer, first: Value, count: usize) -> (Vec<String>, Vec<Value>) {
    let mut all = ids_with_mode(&first, "match");
    assert!(all.len() <= count);
    let mut pages = vec![first.clone()];
    let mut next = link(&first, "next");
    while let Some(url) = next {
        let b = get_bundle(s, &url).await;
        let page = ids_with_mode(&b, "match");
        assert!(page.len() <= count);
        all.extend(page);
        next = link(&b, "next");
        pages.push(b);
        assert!(pages.len() < 50, "paging does not end");
    }
    (all, pages)
}

async fn paging_under_concurrent_writes(s: TestServer) {
    for i in 0..10 {
        put(&s, json!({"resourceType": "Patient", "id": format!("pg{i:02}"), "name": [{"family": "Pager"}]})).await;
    }
    let originals: Vec<String> = (0..10).map(|i| format!("pg{i:02}")).collect();

    // Sorted by id: writes before and after the cursor while paging.
    let first = search(
        &s,
        "Patient",
        &[("family", "pager"), ("_sort", "_id"), ("_count", "3")],
    )
    .await;
    assert_eq!(ids_with_mode(&first, "match"), ["pg00", "pg01", "pg02"]);
    assert!(link(&first, "previous").is_none());
    let self_link = link(&first, "self").unwrap();
    assert!(
        self_link.contains("_count=3") && self_link.contains("family=pager"),
        "{self_link}"
    );
    for id in ["pg01a", "pg05a", "pg99"] {
        put(
            &s,
            json!({"resourceType": "Patient", "id": id, "name": [{"family": "Pager"}]}),
        )
        .await;
    }
    let (all, pages) = collect_pages(&s, first, 3).await;
    let mut expected: Vec<String> = originals.clone();
    expected.insert(6, "pg05a".into());
    expected.push("pg99".into());
    assert_eq!(
        all, expected,
        "created before the cursor: not shown; after: shown once"
    );
    // `previous` leads back to the entries just before the page, as they are now.
    let prev = link(&pages[1], "previous").unwrap();
    assert_eq!(
        ids_with_mode(&get_bundle(&s, &prev).await, "match"),
        ["pg01", "pg01a", "pg02"]
    );

    // Default order (newest first) while others create concurrently.
    let first = search(&s, "Patient", &[("family", "pager"), ("_count", "4")]).await;
    let before: BTreeSet<String> = ids(&s, "Patient", &[("family", "pager"), ("_count", "100")])
        .await
        .into_iter()
        .collect();
    assert_eq!(before.len(), 13);
    let writer = {
        let base = s.base.clone();
        let client = s.client.clone();
        tokio::spawn(async move {
            for i in 0..8 {
                let body = json!({"resourceType": "Patient", "id": format!("new{i}"), "name": [{"family": "Pager"}]});
                let res = client
                    .put(format!("{base}/Patient/new{i}"))
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    let (all, _) = collect_pages(&s, first, 4).await;
    writer.await.unwrap();
    let seen: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(seen.len(), all.len(), "an entry repeated: {all:?}");
    assert!(before.is_subset(&seen), "an entry was skipped: {all:?}");
    assert!(
        all.iter().all(|id| !id.starts_with("new")),
        "newer entries sort before the cursor: {all:?}"
    );

    // A cursor is tied to its order.
    let res = s
        .get("Patient?_sort=family&_cursor=%5B%22a%22%2C%22Patient%22%2C%22x%22%2C5%5D")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    outcome(res).await;
    let res = s.get("Patient?_cursor=garbage").send().await.unwrap();
    assert_eq!(res.status(), 400);
}

async fn totals_and_summary(s: TestServer) {
    fixtures(&s).await;
    let b = search(
        &s,
        "Patient",
        &[("family", "chal"), ("_total", "accurate"), ("_count", "1")],
    )
    .await;
    assert_eq!(b["total"], 2);
    assert_eq!(ids_with_mode(&b, "match").len(), 1);
    assert!(link(&b, "next").is_some());
    let b = search(&s, "Patient", &[("_total", "estimate"), ("_count", "1")]).await;
    assert_eq!(b["total"], 4);
    let b = search(&s, "Patient", &[("_total", "none")]).await;
    assert!(b.get("total").is_none());
    assert_eq!(ids_with_mode(&b, "match").len(), 4);
    // The first page holding everything knows its total.
    let b = search(&s, "Patient", &[("gender", "female")]).await;
    assert_eq!(b["total"], 2);
    let b = search(&s, "Patient", &[("family", "chal"), ("_summary", "count")]).await;
    assert_eq!(b["total"], 2);
    assert!(b.get("entry").is_none());
    let b = search(&s, "Observation", &[("_count", "0")]).await;
    assert_eq!(b["total"], 6);
    assert!(b.get("entry").is_none());

    let b = search(&s, "Patient", &[("_id", "p1"), ("_elements", "gender")]).await;
    let r = &b["entry"][0]["resource"];
    assert_eq!(r["gender"], "male");
    assert!(
        r.get("name").is_none() && r.get("birthDate").is_none(),
        "{r}"
    );
    let b = search(&s, "Observation", &[("_id", "o1"), ("_summary", "true")]).await;
    let r = &b["entry"][0]["resource"];
    assert_eq!(r["code"]["coding"][0]["code"], "8480-6");
    let b = search(
        &s,
        "Patient",
        &[("_id", "p1"), ("_summary", "data"), ("_pretty", "true")],
    )
    .await;
    assert_eq!(b["entry"][0]["resource"]["id"], "p1");
}

async fn handling_and_errors(s: TestServer) {
    fixtures(&s).await;
    // Lenient (the default): unknown parameters are ignored, left out of `self` and reported.
    let b = search(
        &s,
        "Patient",
        &[("family", "chal"), ("foo", "bar"), ("_sort", "nope,family")],
    )
    .await;
    assert_eq!(ids_with_mode(&b, "match"), ["p1", "p3"]);
    let self_link = link(&b, "self").unwrap();
    assert!(
        !self_link.contains("foo") && !self_link.contains("nope"),
        "{self_link}"
    );
    assert!(
        self_link.contains("family=chal") && self_link.contains("_sort=family"),
        "{self_link}"
    );
    let oo = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert_eq!(oo["resource"]["resourceType"], "OperationOutcome");
    assert!(oo["resource"].to_string().contains("foo"));

    // Strict: 400.
    for q in ["family=chal&foo=bar", "family:sounds=x", "_sort=nope"] {
        let res = s
            .get(&format!("Patient?{q}"))
            .header("Prefer", "handling=strict")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
        outcome(res).await;
    }
    let res = s
        .get("Patient?family=chal")
        .header("Prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Bad values are 400 in both modes.
    for q in [
        "Patient?birthdate=notadate",
        "Patient?birthdate=xx2020",
        "Patient?_count=abc",
        "Patient?gender:missing=maybe",
        "Observation?value-quantity=abc",
        "Observation?subject=Patient/a/b/c/d",
        "Observation?subject.family=x",
        "Patient?_total=sometimes",
        "Patient?_summary=bogus",
        "Patient?_has:Observation:patient=x",
        "Observation?code-value-quantity=8480-6",
        "ValueSet?url=not%20a%20uri",
    ] {
        let res = s.get(q).send().await.unwrap();
        assert_eq!(res.status(), 400, "{q}");
        outcome(res).await;
    }
    let res = s.get("NotAType?x=1").send().await.unwrap();
    assert_eq!(res.status(), 404);
}

async fn post_and_system_search(s: TestServer) {
    fixtures(&s).await;
    let res = s
        .client
        .post(s.url("Patient/_search?gender=female"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("family=chal&_sort=family")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let b: Value = res.json().await.unwrap();
    assert_eq!(ids_with_mode(&b, "match"), ["p3"]);
    let self_link = link(&b, "self").unwrap();
    assert!(
        self_link.starts_with(&format!("{}/Patient?", s.base)),
        "{self_link}"
    );
    let res = s
        .client
        .post(s.url("Patient/_search"))
        .header("Content-Type", "application/fhir+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    // System search with _type.
    let url = format!(
        "{}?{}",
        s.base,
        query(&[("_type", "Patient,Observation"), ("_id", "p1,o1,org1")])
    );
    let b = get_bundle(&s, &url).await;
    assert_eq!(
        ids_with_mode(&b, "match")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        of(&["p1", "o1"])
    );
    let url = format!("{}?{}", s.base, query(&[("_id", "p1,o1,org1")]));
    let b = get_bundle(&s, &url).await;
    assert_eq!(
        ids_with_mode(&b, "match")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        of(&["p1", "o1", "org1"])
    );
    let res = s
        .client
        .post(format!("{}/_search", s.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("_type=Organization&name=beta")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let b: Value = res.json().await.unwrap();
    assert_eq!(ids_with_mode(&b, "match"), ["org2"]);
    // System paging across types.
    let url = format!(
        "{}?{}",
        s.base,
        query(&[
            ("_type", "Patient,Organization"),
            ("_count", "2"),
            ("_sort", "_id")
        ])
    );
    let (all, _) = collect_pages(&s, get_bundle(&s, &url).await, 2).await;
    assert_eq!(all, ["org1", "org2", "p1", "p2", "p3", "p4"]);
}

async fn meta_parameters(s: TestServer) {
    put(&s, json!({
        "resourceType": "Patient", "id": "m1",
        "meta": {
            "tag": [{"system": "http://tags", "code": "vip"}],
            "profile": ["http://example.org/StructureDefinition/p"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "source": "http://src.example/a"
        }
    }))
    .await;
    put(&s, json!({"resourceType": "Patient", "id": "m2"})).await;
    let p = |pairs: &'static [(&'static str, &'static str)]| set(&s, "Patient", pairs);
    assert_eq!(p(&[("_tag", "http://tags|vip")]).await, of(&["m1"]));
    assert_eq!(p(&[("_tag:not", "vip")]).await, of(&["m2"]));
    assert_eq!(p(&[("_tag:missing", "true")]).await, of(&["m2"]));
    assert_eq!(
        p(&[("_profile", "http://example.org/StructureDefinition/p")]).await,
        of(&["m1"])
    );
    assert_eq!(p(&[("_security", "R")]).await, of(&["m1"]));
    assert_eq!(p(&[("_source", "http://src.example/a")]).await, of(&["m1"]));
    assert_eq!(p(&[("_id", "m2")]).await, of(&["m2"]));
}

async fn capability_statement_lists_search(s: TestServer) {
    let cs: Value = s
        .get("metadata")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest = &cs["rest"][0];
    assert!(rest["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == "search-system"));
    let patient = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    assert!(patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == "search-type"));
    let params = patient["searchParam"].as_array().unwrap();
    let family = params.iter().find(|p| p["name"] == "family").unwrap();
    assert_eq!(family["type"], "string");
    assert_eq!(
        family["definition"],
        "http://hl7.org/fhir/SearchParameter/individual-family"
    );
    for name in [
        "_id",
        "_lastUpdated",
        "birthdate",
        "organization",
        "identifier",
    ] {
        assert!(params.iter().any(|p| p["name"] == name), "{name} missing");
    }
    assert!(patient["searchInclude"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == "Patient:organization"));
}

backend_tests!(
    compartment_search,
    strings,
    tokens,
    dates,
    numbers_quantities_composites_uris,
    references_and_chains,
    reverse_chains,
    includes,
    sorting,
    paging_under_concurrent_writes,
    totals_and_summary,
    handling_and_errors,
    post_and_system_search,
    meta_parameters,
    capability_statement_lists_search,
);
