//! The search index is written with every version, in the same transaction, on SQLite and
//! PostgreSQL: rows follow the current version, vanish on delete, never appear for a refused
//! write, and `fhir-notary reindex` rebuilds them.

mod common;

use common::TestServer;
use serde_json::{json, Value};

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{ "family": family, "given": ["Zoë"] }],
        "gender": "female",
        "birthDate": "1974-12-25",
        "identifier": [{ "system": "http://example.org/mrn", "value": "MRN-1" }]
    })
}

async fn rows(s: &TestServer, table: &str, id: &str, extra: &str) -> i64 {
    s.count(&format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE resource_type = 'Patient' AND id = '{id}' {extra}"
    ))
    .await
}

async fn index_rows_follow_the_current_version(s: TestServer) {
    let created = s.create(patient("Chalmers")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        rows(
            &s,
            "search_string",
            &id,
            "AND param = 'family' AND normalized = 'chalmers' AND exact = 'Chalmers'"
        )
        .await,
        1
    );
    assert_eq!(
        rows(
            &s,
            "search_string",
            &id,
            "AND param = 'given' AND normalized = 'zoe'"
        )
        .await,
        1
    );
    assert_eq!(
        rows(
            &s,
            "search_token",
            &id,
            "AND param = 'gender' AND code = 'female'"
        )
        .await,
        1
    );
    assert_eq!(
        rows(
            &s,
            "search_token",
            &id,
            "AND param = 'identifier' AND system = 'http://example.org/mrn' AND code = 'MRN-1'"
        )
        .await,
        1
    );
    assert_eq!(
        rows(&s, "search_date", &id, "AND param = 'birthdate'").await,
        1
    );
    // `_id` and `_lastUpdated` are read from the resources table, not from index rows.
    assert_eq!(
        rows(&s, "search_token", &id, "AND param = '_id'").await
            + rows(&s, "search_date", &id, "AND param = '_lastUpdated'").await,
        0
    );

    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("Windsor");
    let res = s
        .put_json(&format!("Patient/{id}"), &changed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        rows(
            &s,
            "search_string",
            &id,
            "AND param = 'family' AND normalized = 'chalmers'"
        )
        .await,
        0
    );
    assert_eq!(
        rows(
            &s,
            "search_string",
            &id,
            "AND param = 'family' AND normalized = 'windsor'"
        )
        .await,
        1
    );
    assert_eq!(
        rows(&s, "search_token", &id, "AND param = 'gender'").await,
        1,
        "no duplicate rows after an update"
    );

    assert_eq!(
        s.delete(&format!("Patient/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    for table in [
        "search_string",
        "search_token",
        "search_date",
        "search_reference",
    ] {
        assert_eq!(
            rows(&s, table, &id, "").await,
            0,
            "{table} keeps rows of a deleted resource"
        );
    }
}

async fn a_refused_write_leaves_no_index_rows(s: TestServer) {
    let created = s.create(patient("Kept")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("Refused");
    let res = s
        .put_json(&format!("Patient/{id}"), &changed)
        .header("If-Match", "W/\"9\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    assert_eq!(
        rows(&s, "search_string", &id, "AND normalized = 'refused'").await,
        0
    );
    assert_eq!(
        rows(
            &s,
            "search_string",
            &id,
            "AND param = 'family' AND normalized = 'kept'"
        )
        .await,
        1
    );
}

async fn composites_and_references_are_indexed(s: TestServer) {
    let p = s.create(patient("Subject")).await;
    let pid = p["id"].as_str().unwrap();
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "85354-9" }] },
        "subject": { "reference": format!("Patient/{pid}") },
        "component": [
            { "code": { "coding": [{ "system": "http://loinc.org", "code": "8480-6" }] },
              "valueQuantity": { "value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
            { "code": { "coding": [{ "system": "http://loinc.org", "code": "8462-4" }] },
              "valueQuantity": { "value": 80, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }
        ]
    });
    let created = s.create(obs).await;
    let oid = created["id"].as_str().unwrap();
    let refs = |param: &str| {
        format!(
            "SELECT COUNT(*) AS n FROM search_reference WHERE resource_type = 'Observation' \
             AND id = '{oid}' AND param = '{param}' AND target_type = 'Patient' \
             AND target_id = '{pid}'"
        )
    };
    assert_eq!(s.count(&refs("subject")).await, 1);
    // `patient` is `subject` restricted to Patients: searches read the subject row.
    assert_eq!(s.count(&refs("patient")).await, 0);
    assert_eq!(
        found(&s, &format!("Observation?patient={pid}")).await,
        [oid]
    );
    // component-code-value-quantity: code 8480-6 and value 120 share a group.
    let n = s
        .count(&format!(
            "SELECT COUNT(*) AS n FROM search_token t JOIN search_quantity q \
               ON q.resource_type = t.resource_type AND q.id = t.id AND q.grp = t.grp \
             WHERE t.resource_type = 'Observation' AND t.id = '{oid}' \
               AND t.param = 'component-code-value-quantity$0' AND t.code = '8480-6' \
               AND q.param = 'component-code-value-quantity$1' AND q.value = 120"
        ))
        .await;
    assert_eq!(n, 1);
}

/// Runs `fhir-notary reindex` with `args` against the server's database.
fn reindex(s: &TestServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .arg("reindex")
        .args(args)
        .args(["--database-url", &s.database_url])
        .output()
        .unwrap()
}

/// The ids a search finds.
async fn found(s: &TestServer, query: &str) -> Vec<String> {
    let res = s.get(query).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    let bundle: Value = res.json().await.unwrap();
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A database indexed before `Observation.patient` was answered from `subject` holds
/// `patient` rows of its own: searches still read them, and `reindex` replaces them.
async fn rows_of_a_derived_parameter_still_answer_until_reindexed(s: TestServer) {
    let pid = s.create(patient("Subject")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let obs = json!({
        "resourceType": "Observation", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8480-6" }] },
        "subject": { "reference": format!("Patient/{pid}") }
    });
    let oid = s.create(obs).await["id"].as_str().unwrap().to_owned();
    // Only a `patient` row left, as if the `subject` row had never been written.
    let renamed = s
        .tamper(&format!(
            "UPDATE search_reference SET param = 'patient' \
             WHERE resource_type = 'Observation' AND id = '{oid}' AND param = 'subject'"
        ))
        .await;
    assert_eq!(renamed, 1);
    let query = format!("Observation?patient=Patient/{pid}");
    assert_eq!(found(&s, &query).await, std::slice::from_ref(&oid));
    assert!(found(&s, &format!("Observation?subject={pid}"))
        .await
        .is_empty());

    let out = reindex(&s, &["--type", "Observation"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let params = s
        .count(&format!(
            "SELECT COUNT(*) AS n FROM search_reference \
             WHERE resource_type = 'Observation' AND id = '{oid}' AND param = 'patient'"
        ))
        .await;
    assert_eq!(params, 0);
    assert_eq!(found(&s, &query).await, std::slice::from_ref(&oid));
    assert_eq!(
        found(&s, &format!("Observation?subject={pid}")).await,
        [oid]
    );
}

async fn reindex_rebuilds_what_was_lost(s: TestServer) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            s.create(patient(&format!("Family{i}"))).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let before = s.count("SELECT COUNT(*) AS n FROM search_string").await;
    assert!(before >= 14);
    s.tamper("DELETE FROM search_string").await;
    s.tamper("DELETE FROM search_token WHERE param = 'gender'")
        .await;
    let out = reindex(&s, &["--batch", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("7 resources reindexed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        s.count("SELECT COUNT(*) AS n FROM search_string").await,
        before
    );
    assert_eq!(
        s.count("SELECT COUNT(*) AS n FROM search_token WHERE param = 'gender'")
            .await,
        7
    );
    let out = reindex(&s, &["--type", "NotAType"]);
    assert!(!out.status.success());
}

backend_tests!(
    index_rows_follow_the_current_version,
    a_refused_write_leaves_no_index_rows,
    composites_and_references_are_indexed,
    rows_of_a_derived_parameter_still_answer_until_reindexed,
    reindex_rebuilds_what_was_lost,
);
