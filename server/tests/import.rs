//! `fhir-notary import` and transaction Bundles on real Synthea data (the small copy in
//! `tests/data/synthea`), on SQLite and PostgreSQL: everything loads, references point at
//! the right resources, the ledger audits clean, bad NDJSON records are reported and
//! skipped, and an interrupted import resumes without loading anything twice.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use serde_json::{json, Value};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthea")
}

fn sample(prefix: &str) -> PathBuf {
    std::fs::read_dir(sample_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}*"))
}

/// Runs `fhir-notary import` against the test server's database: (success, stdout).
fn import(s: &TestServer, args: &[&Path], extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fhir-notary"));
    cmd.arg("import");
    cmd.args(["--database-url", &s.database_url])
        .arg("--data-dir")
        .arg(&s.data_dir)
        .args(extra)
        .args(args);
    let out = cmd.output().expect("run fhir-notary import");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), format!("{stdout}\n{stderr}"))
}

async fn search(s: &TestServer, query: &str) -> Value {
    let res = s.get(query).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

async fn total(s: &TestServer, query: &str) -> u64 {
    let sep = if query.contains('?') { '&' } else { '?' };
    search(s, &format!("{query}{sep}_summary=count")).await["total"]
        .as_u64()
        .unwrap()
}

async fn synthea_sample_imports_and_resolves(s: TestServer) {
    let hospitals = sample("0-hospital");
    let practitioners = sample("0-practitioner");
    let dir = sample_dir();
    let (ok, out) = import(&s, &[&hospitals, &practitioners, &dir], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("0 failure(s)"), "{out}");
    // 194 + 194 + 195 + 195 from the batches, 66 + 146 from the transactions.
    assert_eq!(s.count("SELECT COUNT(*) AS n FROM resources").await, 990);
    assert_eq!(
        s.count("SELECT COUNT(*) AS n FROM ledger_entries").await,
        990
    );
    assert_eq!(total(&s, "Patient").await, 2);
    assert_eq!(total(&s, "Practitioner").await, 195);

    // Every reference of every Encounter points at a resource that exists.
    let encounters = search(&s, "Encounter?_count=500").await;
    let mut checked = 0;
    for entry in encounters["entry"].as_array().unwrap() {
        let e = &entry["resource"];
        for reference in [
            &e["subject"]["reference"],
            &e["participant"][0]["individual"]["reference"],
            &e["serviceProvider"]["reference"],
            &e["location"][0]["location"]["reference"],
        ] {
            let Some(r) = reference.as_str() else {
                continue;
            };
            assert!(!r.contains('?') && !r.starts_with("urn:"), "unresolved {r}");
            assert_eq!(s.get(r).send().await.unwrap().status(), 200, "{r}");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} references checked");
    // Searchable by those references, chains included.
    let patient = &search(&s, "Patient").await["entry"][0]["resource"];
    let pid = patient["id"].as_str().unwrap();
    assert!(total(&s, &format!("Observation?subject=Patient/{pid}")).await > 0);
    assert!(
        total(
            &s,
            "Encounter?participant:Practitioner.identifier=http://hl7.org/fhir/sid/us-npi|"
        )
        .await
            > 0
    );

    // Importing again loads nothing twice.
    let (ok, out) = import(&s, &[&hospitals, &practitioners, &dir], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("0 resources"), "{out}");
    assert_eq!(s.count("SELECT COUNT(*) AS n FROM resources").await, 990);

    s.wait_sealed().await;
    let (ok, report) = s.audit();
    assert!(ok, "{report}");
}

async fn synthea_transactions_over_http(s: TestServer) {
    for prefix in ["0-hospital", "0-practitioner", "8a4c9c04", "8708d3e1"] {
        let file = std::fs::File::open(sample(prefix)).unwrap();
        let bundle: Value = serde_json::from_reader(bzip2::read::BzDecoder::new(file)).unwrap();
        let res = s.post_json("", &bundle).send().await.unwrap();
        assert_eq!(res.status(), 200, "{prefix}");
        let body: Value = res.json().await.unwrap();
        let statuses = body["entry"].as_array().unwrap().iter();
        for e in statuses {
            let status = e["response"]["status"].as_str().unwrap();
            assert!(
                status == "201 Created" || status == "200 OK",
                "{prefix}: {e}"
            );
        }
    }
    assert_eq!(s.count("SELECT COUNT(*) AS n FROM resources").await, 990);
    // The batches' conditional creates are idempotent.
    let file = std::fs::File::open(sample("0-practitioner")).unwrap();
    let bundle: Value = serde_json::from_reader(bzip2::read::BzDecoder::new(file)).unwrap();
    let res = s.post_json("", &bundle).send().await.unwrap();
    let body: Value = res.json().await.unwrap();
    let created = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["response"]["status"] == "201 Created")
        .count();
    // Only the PractitionerRoles (no ifNoneExist) are created again.
    assert_eq!(created, 195);
}

fn ndjson(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for line in lines {
        writeln!(gz, "{line}").unwrap();
    }
    gz.finish().unwrap();
    path
}

async fn ndjson_bad_records_are_skipped_and_imports_resume(s: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..10)
        .map(|i| json!({"resourceType": "Patient", "id": format!("nd-{i}"), "name": [{"family": format!("F{i}")}]}).to_string())
        .collect();
    lines[3] = "{not json".into();
    lines[6] = json!({"resourceType": "Patient", "id": "nd-6", "birthDate": "soon"}).to_string();
    let path = ndjson(dir.path(), "patients.ndjson.gz", &lines);
    let (ok, out) = import(&s, &[&path], &["--chunk", "4"]);
    assert!(!ok, "bad records must fail the run: {out}");
    assert!(out.contains("record 4: not valid JSON"), "{out}");
    assert!(out.contains("record 7: 400"), "{out}");
    assert!(out.contains("8 resources"), "{out}");
    assert_eq!(total(&s, "Patient").await, 8);
    assert_eq!(search(&s, "Patient/nd-9").await["name"][0]["family"], "F9");

    // An import interrupted after 5 of 12 records: the next run loads only the rest.
    let more: Vec<String> = (0..12)
        .map(|i| json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("o{i}")}}).to_string())
        .collect();
    let path = ndjson(dir.path(), "observations.ndjson.gz", &more);
    let key = std::fs::canonicalize(&path).unwrap().display().to_string();
    s.tamper(&format!(
        "INSERT INTO import_progress (source, position, finished, updated_at) VALUES ('{key}', 5, 0, 0)"
    ))
    .await;
    let (ok, out) = import(&s, &[&path], &["--chunk", "4"]);
    assert!(ok, "{out}");
    assert_eq!(total(&s, "Observation").await, 7);
    assert_eq!(total(&s, "Observation?code:text=o4").await, 0);
    assert_eq!(total(&s, "Observation?code:text=o5").await, 1);
    // Finished files are skipped; --restart loads them again (these have no ids).
    let (ok, out) = import(&s, &[&path], &[]);
    assert!(ok && out.contains("1 already done"), "{out}");
    let (ok, _) = import(&s, &[&path], &["--restart"]);
    assert!(ok);
    assert_eq!(total(&s, "Observation").await, 19);
}

backend_tests!(
    synthea_sample_imports_and_resolves,
    synthea_transactions_over_http,
    ndjson_bad_records_are_skipped_and_imports_resume,
);
