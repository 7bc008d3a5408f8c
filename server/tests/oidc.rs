//! oidc mode against a real OpenID provider (npm `oidc-provider`, started on loopback by
//! this test): discovery, JWKS and client-credentials tokens end to end, on SQLite and
//! PostgreSQL, and hostile tokens — bad signature, wrong `aud`/`iss`, expired, not yet
//! valid, `alg: none`, HMAC keyed with the public key, unknown `kid`, a key swapped under
//! the provider's `kid` — each refused with 401.
//!
//! The provider is installed with npm into `$FHIR_NOTARY_OIDC_PROVIDER_DIR` (default
//! `~/.cache/fhir-notary/oidc-provider`) when missing, so re-runs start at once; Node.js
//! and npm must be installed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{client_with, Db, TestServer};
use serde_json::{json, Value};

const PROVIDER_VERSION: &str = "9.13.3";

fn provider_dir() -> PathBuf {
    std::env::var_os("FHIR_NOTARY_OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/fhir-notary/oidc-provider")
        })
}

/// Installs oidc-provider (once) and puts the provider script beside it, where Node's ESM
/// resolution finds the package.
fn install() -> PathBuf {
    // Both tests of this binary may get here at once: one npm install at a time.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = provider_dir();
    std::fs::create_dir_all(&dir).expect("create the provider directory");
    let installed = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{PROVIDER_VERSION}\"")));
    if !installed {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("oidc-provider@{PROVIDER_VERSION}"))
            .status()
            .expect("npm must be installed to run the OpenID provider test");
        assert!(status.success(), "npm install oidc-provider failed");
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs"),
        dir.join("provider.mjs"),
    )
    .expect("copy provider.mjs");
    dir
}

/// A running provider; killed on drop.
struct OpenIdProvider {
    child: Child,
    issuer: String,
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider() -> OpenIdProvider {
    let dir = install();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node must be installed to run the OpenID provider test");
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.trim() == "READY");
    assert!(ready, "the OpenID provider did not start");
    OpenIdProvider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    }
}

impl OpenIdProvider {
    /// A client-credentials access token.
    async fn token(&self, client: &str, scope: &str) -> String {
        let res = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&scope={scope}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "token request for {client}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["scope"], scope, "granted scopes");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn forge(&self, kind: &str) -> String {
        reqwest::get(format!("{}/forge/{kind}", self.issuer))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn oidc_end_to_end(db: Db) {
    let op = start_provider();
    let mut args = server::config::AuthArgs::dev();
    args.auth_mode = server::config::AuthMode::Oidc;
    args.auth_issuer = Some(op.issuer.clone());
    let server = TestServer::start_with_auth(db, args).await;
    let anonymous = client_with(None);

    // Discovery: the SMART configuration and CapabilityStatement name the provider.
    let smart: Value = anonymous
        .get(format!(
            "{}/fhir/.well-known/smart-configuration",
            server.root
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(smart["issuer"], op.issuer);
    assert_eq!(smart["token_endpoint"], format!("{}/token", op.issuer));
    assert_eq!(smart["jwks_uri"], format!("{}/jwks", op.issuer));
    let cs: Value = anonymous
        .get(server.url("metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cs["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
        format!("{}/token", op.issuer)
    );
    // This server publishes no keys of its own in oidc mode.
    let res = anonymous
        .get(format!("{}/.well-known/jwks.json", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // A backend service (role system) writes with its scopes.
    let backend = client_with(Some(&op.token("backend", "system/*.cruds").await));
    let res = backend
        .put(server.url("Patient/pat-oidc"))
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "pat-oidc"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = backend
        .put(server.url("Patient/someone-else"))
        .header("Content-Type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "someone-else"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Narrower scopes, narrower access.
    let reader = client_with(Some(&op.token("backend", "system/Patient.r").await));
    assert_eq!(
        reader
            .get(server.url("Patient/pat-oidc"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reader
            .get(server.url("Patient"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // A practitioner client: its fhirUser is the ledger's actor.
    let ward = client_with(Some(&op.token("ward", "user/*.cruds").await));
    let res = ward
        .post(server.url("Observation"))
        .header("Content-Type", "application/fhir+json")
        .body(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                "subject": {"reference": "Patient/pat-oidc"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let n = server
        .count("SELECT COUNT(*) AS n FROM ledger_entries WHERE actor = 'Practitioner/ward-1'")
        .await;
    assert_eq!(n, 1);

    // A patient app: its own compartment only.
    let patient = client_with(Some(
        &op.token("patient-app", "launch/patient patient/*.rs").await,
    ));
    let own = patient.get(server.url("Observation")).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let bundle: Value = own.json().await.unwrap();
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(1));
    for (path, status) in [("Patient/pat-oidc", 200), ("Patient/someone-else", 403)] {
        let res = patient.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), status, "{path}");
    }

    // Hostile tokens. The forging is sound: a forged *valid* token is accepted.
    let valid = op.forge("valid").await;
    let res = client_with(Some(&valid))
        .get(server.url("Patient/pat-oidc"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut bad_signature = valid.clone();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    let mut hostile = vec![("bad-signature".to_owned(), bad_signature)];
    for kind in [
        "wrong-aud",
        "wrong-iss",
        "expired",
        "not-yet-valid",
        "unknown-kid",
        "swapped-key",
        "alg-none",
        "hmac-with-public-key",
    ] {
        hostile.push((kind.to_owned(), op.forge(kind).await));
    }
    // And a token of this server's own dev mode, which oidc mode does not trust.
    let dev = TestServer::start(Db::Sqlite).await;
    hostile.push((
        "dev-token".into(),
        dev.token(server::auth::Role::Admin, None, None),
    ));
    for (kind, token) in hostile {
        let res = client_with(Some(&token))
            .get(server.url("Patient/pat-oidc"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{kind} was not refused");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{kind}: {challenge}");
        let body = common::outcome(res).await;
        let text = body.to_string();
        assert!(!text.contains("-----BEGIN"), "{kind}: key material leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_oidc_end_to_end() {
    oidc_end_to_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_oidc_end_to_end() {
    oidc_end_to_end(Db::Postgres).await;
}
