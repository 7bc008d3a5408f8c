//! Two `fhir-notary` processes on one PostgreSQL: both serve the same data, exactly one
//! seals, and when the sealing one is killed the other takes over and the chain continues
//! without a gap.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Db, TestServer};
use serde_json::{json, Value};

struct Node {
    child: Child,
    root: String,
    log: std::path::PathBuf,
}

fn start_node(database_url: &str, dir: &Path, name: &str, key_file: &Path) -> Node {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(dir.join(name))
        .arg("--ledger-key-file")
        .arg(key_file)
        // This test counts the ledger entries of its own writes; the AuditEvent trail's
        // writes would add to them.
        .args(["--audit", "false"])
        .args([
            "--seal-interval-ms",
            "50",
            "--log-level",
            "info",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start fhir-notary");
    Node {
        child,
        root: format!("http://127.0.0.1:{port}"),
        log,
    }
}

impl Node {
    fn is_sealer(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("this process is the ledger sealer")
    }
}

async fn ready(client: &reqwest::Client, node: &Node) {
    for _ in 0..200 {
        if client
            .get(format!("{}/readyz", node.root))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} did not become ready", node.root);
}

async fn create(client: &reqwest::Client, node: &Node, family: &str) -> String {
    let res = client
        .post(format!("{}/fhir/Patient", node.root))
        .header("Content-Type", "application/fhir+json")
        .body(json!({ "resourceType": "Patient", "name": [{ "family": family }] }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn all_sealed(client: &reqwest::Client, node: &Node) -> Value {
    for _ in 0..200 {
        let res = client
            .get(format!("{}/ledger/head", node.root))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let head: Value = res.json().await.unwrap();
            if head["pendingEntries"] == 0 {
                return head;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entries were not sealed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_one_sealer_and_a_takeover() {
    let harness = TestServer::start_with(Db::Postgres, false).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("shared-ledger.key");
    server::notary::key::load_or_create(&key_file).unwrap();
    // In dev mode, nodes that share a database share the token key too (like the ledger key).
    let token = common::cli_token(&dir.path().join("a"), "admin");
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    std::fs::copy(dir.path().join("a/auth.key"), dir.path().join("b/auth.key")).unwrap();
    let client = common::client_with(Some(&token));
    let mut a = start_node(&harness.database_url, dir.path(), "a", &key_file);
    let mut b = start_node(&harness.database_url, dir.path(), "b", &key_file);
    ready(&client, &a).await;
    ready(&client, &b).await;

    // Both serve the same data.
    let from_a = create(&client, &a, "ViaA").await;
    let from_b = create(&client, &b, "ViaB").await;
    for node in [&a, &b] {
        for id in [&from_a, &from_b] {
            let res = client
                .get(format!("{}/fhir/Patient/{id}", node.root))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    }
    all_sealed(&client, &a).await;
    assert!(a.is_sealer() ^ b.is_sealer(), "exactly one process seals");

    // Kill the sealer; the survivor takes over and the chain goes on.
    let (dead, survivor) = if a.is_sealer() {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.child.kill().unwrap();
    let _ = dead.child.wait();
    for i in 0..5 {
        create(&client, survivor, &format!("After{i}")).await;
    }
    let head = all_sealed(&client, survivor).await;
    assert_eq!(head["sealedEntries"], 7, "{head}");
    assert!(survivor.is_sealer(), "the survivor took over sealing");

    let blocks: Value = client
        .get(format!("{}/ledger/blocks?from=0", survivor.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let blocks = blocks["blocks"].as_array().unwrap();
    for (i, pair) in blocks.windows(2).enumerate() {
        assert_eq!(pair[1]["header"]["height"], i as u64 + 1);
        assert_eq!(pair[1]["header"]["prevHash"], pair[0]["blockHash"]);
        let end = pair[0]["header"]["firstIndex"].as_u64().unwrap()
            + pair[0]["header"]["entryCount"].as_u64().unwrap();
        assert_eq!(
            pair[1]["header"]["firstIndex"], end,
            "no gap in the entry range"
        );
    }
    for node in [&mut a, &mut b] {
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    let (ok, out) = harness.audit();
    assert!(ok, "{out}");
}
