//! Notarization over HTTP and against the database, on SQLite and PostgreSQL: every write
//! gets an entry sealed into a signed block; proofs verify offline and break when touched;
//! the audit passes on an untouched database and names every kind of tampering.

mod common;

use common::TestServer;
use serde_json::{json, Value};

fn patient(family: &str) -> Value {
    json!({ "resourceType": "Patient", "name": [{ "family": family }], "gender": "female" })
}

/// Creates a patient, updates it and deletes another: five versions in all.
async fn write_some(s: &TestServer) -> (String, String) {
    let a = s.create(patient("Chalmers")).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let mut changed = a.clone();
    changed["gender"] = json!("male");
    assert_eq!(
        s.put_json(&format!("Patient/{a_id}"), &changed)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let b = s.create(patient("Windsor")).await;
    let b_id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.delete(&format!("Patient/{b_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    s.create(patient("Other")).await;
    s.wait_sealed().await;
    (a_id, b_id)
}

async fn fetch_proof(s: &TestServer, path: &str) -> (reqwest::StatusCode, String) {
    let res = s
        .client
        .get(format!("{}/ledger/proof/{path}", s.root))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn every_write_is_sealed_into_a_signed_chain(s: TestServer) {
    let (a_id, _) = write_some(&s).await;
    let head: Value = s
        .client
        .get(format!("{}/ledger/head", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(head["sealedEntries"], 5, "{head}");
    assert_eq!(head["pendingEntries"], 0);
    assert_eq!(head["signer"], hex::encode(s.public_key()));

    let genesis: Value = s
        .client
        .get(format!("{}/ledger/blocks/0", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(genesis["header"]["members"][0], hex::encode(s.public_key()));
    let listed: Value = s
        .client
        .get(format!("{}/ledger/blocks?from=0", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let blocks = listed["blocks"].as_array().unwrap();
    assert_eq!(blocks.len() as u64, head["height"].as_u64().unwrap() + 1);
    for pair in blocks.windows(2) {
        assert_eq!(
            pair[1]["header"]["prevHash"], pair[0]["blockHash"],
            "chain link"
        );
    }
    let (status, _) = fetch_proof(&s, &format!("Patient/{a_id}/2")).await;
    assert_eq!(status, 200);
    let (status, _) = fetch_proof(&s, &format!("Patient/{a_id}/9")).await;
    assert_eq!(status, 404);
    let res = s
        .client
        .get(format!("{}/ledger/blocks/999", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

async fn a_proof_verifies_offline_and_any_flipped_byte_breaks_it(s: TestServer) {
    let (a_id, _) = write_some(&s).await;
    let (status, text) = fetch_proof(&s, &format!("Patient/{a_id}/2")).await;
    assert_eq!(status, 200, "{text}");
    let key = s.public_key();
    let proof: ledger::proof::Proof = serde_json::from_str(&text).unwrap();
    ledger::proof::verify(&proof, &key).expect("the proof verifies");
    let resource: Value = s
        .get(&format!("Patient/{a_id}/_history/2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ledger::proof::verify_content(&proof, &resource)
        .expect("the served version is the notarized one");
    let other: Value = s
        .get(&format!("Patient/{a_id}/_history/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ledger::proof::verify_content(&proof, &other).is_err());

    // Through the CLI, offline: the proof file and the key, nothing else.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proof.json");
    std::fs::write(&file, &text).unwrap();
    let cli = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
            .args(["ledger", "verify-proof"])
            .arg(file)
            .args(["--public-key", &hex::encode(key)])
            .output()
            .unwrap()
    };
    let out = cli(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK:"));

    // Flip each hex digit of every hash, key and signature in the file, in turn.
    let bytes = text.as_bytes();
    let mut flipped = 0;
    let mut i = 0;
    while i < bytes.len() {
        let in_hex_run = bytes[i].is_ascii_hexdigit()
            && bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count()
                >= 64;
        if in_hex_run {
            let run = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            for j in (i..i + run).step_by(7) {
                let mut copy = bytes.to_vec();
                copy[j] = if copy[j] == b'0' { b'1' } else { b'0' };
                let tampered = String::from_utf8(copy).unwrap();
                let rejected = match serde_json::from_str::<ledger::proof::Proof>(&tampered) {
                    Err(_) => true,
                    Ok(p) => ledger::proof::verify(&p, &key).is_err(),
                };
                assert!(rejected, "flipping byte {j} went unnoticed");
                flipped += 1;
            }
            i += run;
        } else {
            i += 1;
        }
    }
    assert!(flipped > 50, "only {flipped} flips tried");
    // And a changed field outside the hashes: the recorded actor.
    let forged = text.replace("\"test-admin\"", "\"someone-else\"");
    assert_ne!(forged, text);
    std::fs::write(&file, &forged).unwrap();
    let out = cli(&file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does NOT verify"));
    // A different trusted key refuses the proof.
    let wrong = ledger::block::NodeKey::from_seed([7u8; 32]).public_key();
    assert!(ledger::proof::verify(&proof, &wrong).is_err());
}

async fn an_untouched_database_audits_clean(s: TestServer) {
    write_some(&s).await;
    let (ok, out) = s.audit();
    assert!(ok, "{out}");
    assert!(
        out.contains("5 versions") && out.contains("0 finding(s)"),
        "{out}"
    );
}

async fn content_changed_by_sql_is_named(s: TestServer) {
    let (a_id, _) = write_some(&s).await;
    let n = s
        .tamper(&format!(
            "UPDATE resource_versions SET content = REPLACE(content, 'Chalmers', 'Chalmerz') \
             WHERE resource_type = 'Patient' AND id = '{a_id}' AND version = 1"
        ))
        .await;
    assert_eq!(n, 1);
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "FINDING: Patient/{a_id} version 1: its content differs"
        )),
        "{out}"
    );
    assert_eq!(out.matches("FINDING").count(), 1, "{out}");
}

async fn a_deleted_history_row_is_named(s: TestServer) {
    let (a_id, _) = write_some(&s).await;
    s.tamper(&format!("DELETE FROM resource_versions WHERE resource_type = 'Patient' AND id = '{a_id}' AND version = 1"))
        .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "Patient/{a_id} version 1, which is no longer stored"
        )),
        "{out}"
    );
}

async fn a_version_without_an_entry_is_named(s: TestServer) {
    write_some(&s).await;
    s.tamper(
        "INSERT INTO resource_versions (resource_type, id, version, method, last_updated, content) \
         VALUES ('Patient', 'smuggled', 1, 'POST', 0, '{\"resourceType\":\"Patient\",\"id\":\"smuggled\"}')",
    )
    .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains("FINDING: Patient/smuggled version 1: has no ledger entry"),
        "{out}"
    );
}

async fn an_edited_entry_is_named(s: TestServer) {
    let (a_id, _) = write_some(&s).await;
    s.tamper(&format!(
        "UPDATE ledger_entries SET actor = 'mallory' WHERE resource_type = 'Patient' AND id = '{a_id}' AND version = 2"
    ))
    .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains(&format!("for Patient/{a_id} version 2")) && out.contains("entry edited"),
        "{out}"
    );
}

async fn an_entry_hash_rewritten_with_its_content_is_still_caught(s: TestServer) {
    // An attacker who changes the content and recomputes the entry's hash still breaks the
    // sealed leaf.
    let (a_id, _) = write_some(&s).await;
    let original: Value = s
        .get(&format!("Patient/{a_id}/_history/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut forged = original.clone();
    forged["name"][0]["family"] = json!("Forged");
    let hash = hex::encode(ledger::canonical::content_hash(&forged).unwrap());
    s.tamper(&format!(
        "UPDATE resource_versions SET content = '{}' WHERE resource_type = 'Patient' AND id = '{a_id}' AND version = 1",
        forged.to_string().replace('\'', "''")
    ))
    .await;
    s.tamper(&format!(
        "UPDATE ledger_entries SET content_hash = '{hash}' WHERE resource_type = 'Patient' AND id = '{a_id}' AND version = 1"
    ))
    .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains(&format!("for Patient/{a_id} version 1")) && out.contains("entry edited"),
        "{out}"
    );
}

async fn edited_removed_and_reordered_blocks_are_named(s: TestServer) {
    // Several blocks: seal after each write.
    for i in 0..3 {
        s.create(patient(&format!("P{i}"))).await;
        s.wait_sealed().await;
    }
    let head: Value = s
        .client
        .get(format!("{}/ledger/head", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let height = head["height"].as_i64().unwrap();
    assert!(height >= 3, "{head}");

    s.tamper("UPDATE ledger_blocks SET header = REPLACE(header, '\"entryCount\":1', '\"entryCount\":2') WHERE height = 1")
        .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(
        out.contains("block 1: the stored block hash does not match its header"),
        "{out}"
    );

    // Reordering: swap blocks 1 and 2.
    s.tamper("UPDATE ledger_blocks SET height = -1 WHERE height = 1")
        .await;
    s.tamper("UPDATE ledger_blocks SET height = 1 WHERE height = 2")
        .await;
    s.tamper("UPDATE ledger_blocks SET height = 2 WHERE height = -1")
        .await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(out.contains("does not follow block"), "{out}");

    // Removal.
    s.tamper("DELETE FROM ledger_blocks WHERE height = 2").await;
    let (ok, out) = s.audit();
    assert!(!ok);
    assert!(out.contains("block 2 is missing"), "{out}");
}

async fn unsealed_versions_answer_202_with_a_retry_hint(s: TestServer) {
    // Another server over the same database that does not seal: its entries wait.
    let quiet = TestServer::start_with(common::Db::Sqlite, false).await;
    let created = quiet.create(patient("Fresh")).await;
    let id = created["id"].as_str().unwrap();
    let res = quiet
        .client
        .get(format!("{}/ledger/proof/Patient/{id}/1", quiet.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.headers().contains_key("retry-after"));
    let oo: Value = res.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let res = quiet
        .client
        .get(format!("{}/ledger/head", quiet.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "no genesis block without a sealer");

    // With a sealer, the same kind of write becomes provable.
    let created = s.create(patient("Fresh")).await;
    let id = created["id"].as_str().unwrap();
    s.wait_sealed().await;
    let res = s
        .client
        .get(format!("{}/ledger/proof/Patient/{id}/1", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn a_refused_write_leaves_no_entry(s: TestServer) {
    s.create(patient("Kept")).await;
    let created = s.create(patient("Versioned")).await;
    let id = created["id"].as_str().unwrap();
    let res = s
        .put_json(&format!("Patient/{id}"), &created)
        .header("If-Match", "W/\"5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    s.wait_sealed().await;
    let head: Value = s
        .client
        .get(format!("{}/ledger/head", s.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(head["sealedEntries"], 2, "{head}");
    let (ok, out) = s.audit();
    assert!(ok, "{out}");
}

backend_tests!(
    every_write_is_sealed_into_a_signed_chain,
    a_proof_verifies_offline_and_any_flipped_byte_breaks_it,
    an_untouched_database_audits_clean,
    content_changed_by_sql_is_named,
    a_deleted_history_row_is_named,
    a_version_without_an_entry_is_named,
    an_edited_entry_is_named,
    an_entry_hash_rewritten_with_its_content_is_still_caught,
    edited_removed_and_reordered_blocks_are_named,
    unsealed_versions_answer_202_with_a_retry_hint,
    a_refused_write_leaves_no_entry,
);
