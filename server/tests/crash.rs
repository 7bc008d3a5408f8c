//! Crash safety of the real binary, on SQLite and PostgreSQL: `kill -9` during a write load;
//! after a restart every acknowledged write is there with its ledger entry, the audit
//! passes and sealing resumes.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Db, TestServer};
use serde_json::json;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(database_url: &str, data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--seal-interval-ms", "100", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fhir-notary")
}

async fn wait_ready(client: &reqwest::Client, root: &str) {
    for _ in 0..200 {
        if let Ok(res) = client.get(format!("{root}/readyz")).send().await {
            if res.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

async fn kill_during_writes_loses_nothing_acknowledged(harness: TestServer) {
    // The harness only provides a fresh database; the server under test is the binary.
    let database_url = harness.database_url.clone();
    let data_dir = harness.data_dir.join("crash");
    let port = free_port();
    let root = format!("http://127.0.0.1:{port}");
    let client = common::client_with(Some(&common::cli_token(&data_dir, "admin")));
    let mut child = spawn_server(&database_url, &data_dir, port);
    wait_ready(&client, &root).await;

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, root, acknowledged) = (client.clone(), root.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let body = json!({ "resourceType": "Patient", "name": [{ "family": format!("W{w}-{i}") }] });
                    let res = client
                        .post(format!("{root}/fhir/Patient"))
                        .header("Content-Type", "application/fhir+json")
                        .header("Prefer", "return=minimal")
                        .body(body.to_string())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let location = r.headers()["location"].to_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push(location);
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "too little load before the kill: {}",
        acknowledged.len()
    );

    let port = free_port();
    let root = format!("http://127.0.0.1:{port}");
    let mut child = spawn_server(&database_url, &data_dir, port);
    wait_ready(&client, &root).await;
    for location in &acknowledged {
        let path = location.split("/fhir/").nth(1).unwrap();
        let res = client
            .get(format!("{root}/fhir/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged {location} is gone");
        let id = path.split('/').nth(1).unwrap();
        let proof = client
            .get(format!("{root}/ledger/proof/Patient/{id}/1"))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(proof.status().as_u16(), 200 | 202),
            "{location} has no ledger entry"
        );
    }
    // Sealing resumes: every acknowledged write gets sealed (its proof answers 200, not
    // 202). The ledger's pending count is no measure here: each request of this loop
    // records an AuditEvent, which stays pending until the next seal.
    let mut unsealed: Vec<&String> = acknowledged.iter().collect();
    for _ in 0..100 {
        let mut still = Vec::new();
        for location in unsealed {
            let id = location
                .split("/fhir/Patient/")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            let proof = client
                .get(format!("{root}/ledger/proof/Patient/{id}/1"))
                .send()
                .await
                .unwrap();
            if proof.status() != 200 {
                still.push(location);
            }
        }
        unsealed = still;
        if unsealed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("stop");
    let _ = child.wait();
    assert!(
        unsealed.is_empty(),
        "sealing did not resume after the restart: {} acknowledged writes unsealed",
        unsealed.len()
    );
    let (ok, out) = harness.audit();
    assert!(ok, "{out}");
}

// The harness server only provides the fresh database and must not seal itself: the binary
// under test is the one sealer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_during_writes_loses_nothing_acknowledged() {
    kill_during_writes_loses_nothing_acknowledged(TestServer::start_with(Db::Sqlite, false).await)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_during_writes_loses_nothing_acknowledged() {
    kill_during_writes_loses_nothing_acknowledged(TestServer::start_with(Db::Postgres, false).await)
        .await
}
