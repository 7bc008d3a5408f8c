//! Test harness: starts the real server (the same `server::start` production runs) on a
//! loopback port, over a fresh SQLite file or a fresh PostgreSQL database, and talks to it
//! over HTTP. `backend_tests!` runs each test on both backends.
//!
//! Tokens are required on `/fhir` and `/ledger`: `client` carries an admin token (dev mode,
//! the server's own key) in its default headers; [`TestServer::token`] and
//! [`TestServer::client_with`] give tokens and clients for other roles, scopes and patients.
//!
//! PostgreSQL comes from `FHIR_NOTARY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts a throwaway server
//! when none is reachable. A test never skips for want of PostgreSQL: it fails saying so.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use server::auth::{Auth, MintRequest, Role};
use server::config::AuthArgs;
use server::store::Store;
use server::AppState;
use sqlx::AnyPool;

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running server and a client for it.
pub struct TestServer {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub client: reqwest::Client,
    pub db: Db,
    /// The database URL the server uses (for tests that inspect or tamper with it).
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Token validation as the server does it; mints tokens for tests.
    pub auth: Auth,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    pg_database: Option<String>,
    _dir: tempfile::TempDir,
}

pub fn admin_postgres_url() -> String {
    std::env::var("FHIR_NOTARY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(url: &str, db: &str) -> String {
    let (head, _) = url
        .rsplit_once('/')
        .expect("a PostgreSQL URL ends with /database");
    format!("{head}/{db}")
}

async fn admin_pool() -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = admin_postgres_url();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}). Run the tests with scripts/test, which \
                 starts a throwaway PostgreSQL, or set FHIR_NOTARY_TEST_POSTGRES_URL."
            )
        })
}

impl TestServer {
    /// Starts a server over a fresh database of the given kind, sealing every 50 ms.
    pub async fn start(db: Db) -> TestServer {
        Self::start_full(db, true, false, AuthArgs::dev()).await
    }

    /// Starts a server checking tokens as `auth` says (e.g. oidc mode); `client` then carries
    /// no token unless the mode is dev.
    pub async fn start_with_auth(db: Db, auth: AuthArgs) -> TestServer {
        Self::start_full(db, true, false, auth).await
    }

    /// Starts a server that records the AuditEvent trail, as production does. (The other
    /// suites leave it off: they count ledger entries, versions and history entries of
    /// their own writes, which the trail's writes would add to.)
    pub async fn start_audited(db: Db) -> TestServer {
        Self::start_full(db, true, true, AuthArgs::dev()).await
    }

    /// Starts a server; without `seal`, no sealer runs (entries stay pending).
    pub async fn start_with(db: Db, seal: bool) -> TestServer {
        Self::start_full(db, seal, false, AuthArgs::dev()).await
    }

    async fn start_full(db: Db, seal: bool, audited: bool, auth_args: AuthArgs) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg_database) = match db {
            Db::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = format!("notary_test_{}", uuid::Uuid::new_v4().simple());
                let pool = admin_pool().await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                pool.close().await;
                (with_database(&admin_postgres_url(), &name), Some(name))
            }
        };
        let data_dir = dir.path().join("data");
        let auth = Auth::from_args(&auth_args, &data_dir)
            .await
            .expect("auth set-up");
        let server_auth = auth.clone();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, rx) = mpsc::channel();
        let url = database_url.clone();
        let data = data_dir.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let store = Store::open(Some(&url), &data, 8).await.expect("open store");
                store.migrate().await.expect("migrate");
                let key = server::notary::key::load_or_create(&data.join("ledger.key"))
                    .expect("ledger key");
                let seal_interval = Duration::from_millis(50);
                let sealer = server::notary::sealer::Sealer {
                    store: store.clone(),
                    members: vec![key.public_key()],
                    key,
                    interval: seal_interval,
                    max_entries: 1000,
                };
                if seal {
                    actix_web::rt::spawn(sealer.run());
                }
                let (audit, writer) = server::audit_trail::AuditTrail::new(store.clone());
                actix_web::rt::spawn(writer.run());
                let state = AppState {
                    auth: server_auth,
                    audit: audited.then(|| audit.clone()),
                    store,
                    base_url: None,
                    max_body_bytes: 1024 * 1024,
                    seal_interval,
                };
                let server = server::start(listener, state, 2, Duration::from_secs(5))
                    .expect("start server");
                tx.send(server.handle())
                    .expect("hand over the server handle");
                let _ = server.await;
                audit.shutdown().await;
            });
        });
        let handle = rx.recv().expect("server started");
        let root = format!("http://127.0.0.1:{port}");
        let admin = auth.is_dev().then(|| mint(&auth, Role::Admin, None, None));
        TestServer {
            base: format!("{root}/fhir"),
            root,
            client: client_with(admin.as_deref()),
            db,
            database_url,
            data_dir,
            auth,
            handle,
            thread: Some(thread),
            pg_database,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(path))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// Creates a resource and returns the stored body.
    pub async fn create(&self, body: serde_json::Value) -> serde_json::Value {
        let rt = body["resourceType"]
            .as_str()
            .expect("resourceType")
            .to_owned();
        let res = self.post_json(&rt, &body).send().await.expect("POST");
        assert_eq!(
            res.status(),
            201,
            "create failed: {}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("created body")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only waits for completion.
        drop(self.handle.stop(true));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(name) = self.pg_database.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let pool = admin_pool().await;
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                });
            })
            .join();
        }
    }
}

impl TestServer {
    /// The node's ledger public key.
    pub fn public_key(&self) -> [u8; 32] {
        server::notary::key::load_or_create(&self.data_dir.join("ledger.key"))
            .expect("ledger key")
            .public_key()
    }

    /// Waits until every ledger entry is sealed.
    pub async fn wait_sealed(&self) {
        for _ in 0..200 {
            let res = self
                .client
                .get(format!("{}/ledger/head", self.root))
                .send()
                .await
                .expect("head");
            if res.status() == 200 {
                let head: serde_json::Value = res.json().await.expect("head JSON");
                if head["pendingEntries"] == 0 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the ledger did not seal within 5 s");
    }

    /// Runs SQL directly against the server's database, behind the API's back.
    pub async fn tamper(&self, sql: &str) -> u64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url)
            .await
            .expect("connect for tampering");
        let n = sqlx::query(sql)
            .execute(&pool)
            .await
            .expect("tamper")
            .rows_affected();
        pool.close().await;
        n
    }

    /// Runs a `SELECT COUNT(*) AS n …` directly against the server's database.
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url)
            .await
            .expect("connect for counting");
        let n: i64 = sqlx::query(sql)
            .fetch_one(&pool)
            .await
            .expect("count")
            .try_get("n")
            .expect("n");
        pool.close().await;
        n
    }

    /// Runs `fhir-notary ledger audit` on the server's database: (success, stdout).
    pub fn audit(&self) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
            .args(["ledger", "audit", "--database-url", &self.database_url])
            .output()
            .expect("run fhir-notary ledger audit");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

fn mint(auth: &Auth, role: Role, patient: Option<&str>, scope: Option<&str>) -> String {
    auth.mint(&MintRequest {
        role,
        subject: format!("test-{}", role.as_str()),
        patient: patient.map(str::to_owned),
        fhir_user: None,
        scope: scope.map(str::to_owned),
        ttl: Duration::from_secs(3600),
    })
    .expect("mint a token")
}

/// A token printed by `fhir-notary token --role <role>` with the dev key in `data_dir`
/// (which it creates when missing), for tests that run the binary.
pub fn cli_token(data_dir: &std::path::Path, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
        .args(["token", "--role", role])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run fhir-notary token");
    assert!(
        out.status.success(),
        "fhir-notary token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("token is text")
        .trim()
        .to_owned()
}

/// A client sending `token` (none: no Authorization header) with every request.
pub fn client_with(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().expect("header value"),
        );
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestServer {
    /// A token for `role`, with the role's default scopes unless `scope` is given.
    pub fn token(&self, role: Role, patient: Option<&str>, scope: Option<&str>) -> String {
        mint(&self.auth, role, patient, scope)
    }

    /// A client for `role` (see [`Self::token`]).
    pub fn client_as(&self, role: Role, patient: Option<&str>) -> reqwest::Client {
        client_with(Some(&self.token(role, patient, None)))
    }
}

/// The body of an OperationOutcome response, checked to be one.
pub async fn outcome(res: reqwest::Response) -> serde_json::Value {
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/fhir+json"), "content type {ct}");
    let body: serde_json::Value = res.json().await.expect("JSON body");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body
}

/// Defines `mod sqlite` and `mod postgres`, each with one `#[tokio::test]` per named test
/// function `async fn name(server: TestServer)` of the enclosing module. With `audited:`
/// first, the servers record the AuditEvent trail.
#[macro_export]
macro_rules! backend_tests {
    (audited: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestServer::start_audited($crate::common::Db::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestServer::start_audited($crate::common::Db::Postgres).await).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestServer::start($crate::common::Db::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestServer::start($crate::common::Db::Postgres).await).await
                }
            )*
        }
    };
}
