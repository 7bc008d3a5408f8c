//! Traces and metrics reach a real OTLP/HTTP receiver, and `GET /metrics` scrapes: the real
//! `fhir-notary` binary, configured on its command line, exports to a receiver this test
//! runs on loopback, which decodes every payload as the OTLP protobuf messages.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{Db, TestServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

/// What the receiver got, decoded.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

/// An OTLP/HTTP receiver on a loopback port: `POST /v1/traces` and `POST /v1/metrics` with
/// protobuf bodies, as a collector accepts them.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Received>>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn protobuf(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf")
}

async fn receive_traces(
    req: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Received>>,
) -> HttpResponse {
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) if protobuf(&req) => {
            received.lock().unwrap().traces.push(export);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        _ => HttpResponse::BadRequest().finish(),
    }
}

async fn receive_metrics(
    req: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Received>>,
) -> HttpResponse {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(export) if protobuf(&req) => {
            received.lock().unwrap().metrics.push(export);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        _ => HttpResponse::BadRequest().finish(),
    }
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let received = web::Data::new(Mutex::new(Received::default()));
        let shared = received.clone().into_inner();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(received.clone())
                        .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                        .route("/v1/traces", web::post().to(receive_traces))
                        .route("/v1/metrics", web::post().to(receive_metrics))
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).expect("hand over the handle");
                let _ = server.await;
            });
        });
        Receiver {
            port,
            received: shared,
            handle: rx.recv().expect("receiver started"),
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<Span> {
        let received = self.received.lock().unwrap();
        received
            .traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    fn metric_names(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .metrics
            .iter()
            .flat_map(|m| &m.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Whether a request-duration data point for `interaction` arrived.
    fn has_request_point(&self, interaction: &str) -> bool {
        let received = self.received.lock().unwrap();
        received
            .metrics
            .iter()
            .flat_map(|m| &m.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "http.server.request.duration")
            .filter_map(|m| match &m.data {
                Some(Data::Histogram(h)) => Some(h),
                _ => None,
            })
            .flat_map(|h| &h.data_points)
            .any(|p| {
                p.count > 0
                    && p.attributes.iter().any(|kv| {
                        kv.key == "fhir.interaction"
                            && kv.value.as_ref().and_then(|v| v.value.as_ref())
                                == Some(&AnyValue::StringValue(interaction.to_owned()))
                    })
            })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `fhir-notary serve` process; killed when dropped.
struct Node {
    child: Child,
    root: String,
    log: std::path::PathBuf,
    data: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(database_url: Option<&str>, dir: &Path, extra: &[&str]) -> Node {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fhir-notary"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--seal-interval-ms", "50", "--log-format", "json"])
            .args(extra);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start fhir-notary");
        Node {
            child,
            root: format!("http://127.0.0.1:{port}"),
            log,
            data: dir.join("data"),
        }
    }

    async fn ready(&self, client: &reqwest::Client) {
        for _ in 0..300 {
            if client
                .get(format!("{}/readyz", self.root))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fhir-notary did not become ready; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client carrying an admin token minted by `fhir-notary token` for this node (call
    /// once the node is ready: it created its signing key).
    fn client(&self) -> reqwest::Client {
        let out = Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
            .args(["token", "--role", "admin", "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("run fhir-notary token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        // No idle connections: waits in the tests outlast the server's keep-alive, and a
        // reused connection the server is closing fails the request.
        reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }
}

/// Polls `check` for up to 15 s; it says what is still missing.
async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let mut missing = String::new();
    for _ in 0..300 {
        match check() {
            Ok(()) => return,
            Err(m) => missing = m,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 15 s: {missing}");
}

fn check(found: bool, what: &str) -> Result<(), String> {
    found.then_some(()).ok_or_else(|| what.to_owned())
}

fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} kind={} trace={} span={} parent={}",
                s.name,
                s.kind,
                hex::encode(&s.trace_id),
                hex::encode(&s.span_id),
                hex::encode(&s.parent_span_id)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn traceparent_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The labels of a Prometheus sample line `name{a="x",b="y"} value`, if its name is `name`.
fn sample_has(line: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    line.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('{'))
        .and_then(|rest| rest.split_once('}'))
        .is_some_and(|(inside, _)| {
            let found: Vec<&str> = inside.split(',').collect();
            labels
                .iter()
                .all(|(k, v)| found.contains(&format!("{k}=\"{v}\"").as_str()))
        })
}

async fn spans_and_metrics_reach_the_collector(db: Db) {
    let receiver = Receiver::start();
    // PostgreSQL: a fresh database from the harness (its own server runs no sealer, so the
    // process under test seals). SQLite: the process's own file.
    let harness = match db {
        Db::Postgres => Some(TestServer::start_with(Db::Postgres, false).await),
        Db::Sqlite => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let endpoint = receiver.endpoint();
    let node = Node::start(
        harness.as_ref().map(|h| h.database_url.as_str()),
        dir.path(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otel-sampling-ratio",
            "1.0",
            "--metrics-interval-ms",
            "200",
            // Quieter logs must not cut traces short.
            "--log-level",
            "warn",
        ],
    );
    node.ready(&reqwest::Client::new()).await;
    let client = node.client();
    let base = format!("{}/fhir", node.root);

    // A write that continues the caller's trace.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let res = client
        .post(format!("{base}/Patient"))
        .header("Content-Type", "application/fhir+json")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .body(json!({"resourceType": "Patient", "name": [{"family": "Tracer"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let answered = traceparent_of(&res).unwrap_or_else(|| {
        panic!(
            "no traceparent in {:?}; log:\n{}",
            res.headers(),
            node.log()
        )
    });
    let parts: Vec<&str> = answered.split('-').collect();
    assert_eq!(parts.len(), 4, "{answered}");
    assert_eq!(
        parts[1], trace_id,
        "the response continues the caller's trace"
    );
    assert_ne!(parts[2], caller_span, "the server's span has its own id");
    assert_eq!(parts[3], "01", "sampled");
    let server_span = parts[2].to_owned();
    let patient: serde_json::Value = res.json().await.unwrap();
    let id = patient["id"].as_str().unwrap().to_owned();

    // A read without trace context starts a trace of its own.
    let res = client
        .get(format!("{base}/Patient/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let own = traceparent_of(&res).expect("a traceparent in the response");
    assert!(!own.contains(&trace_id), "{own}");
    let res = client
        .get(format!("{base}/Patient?family=Tracer"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The request span continues the caller's span; the write's database work and commit
    // are its children; the sealer's work arrives as its own span.
    let trace_bytes = hex::decode(&trace_id).unwrap();
    let caller_bytes = hex::decode(caller_span).unwrap();
    let server_bytes = hex::decode(&server_span).unwrap();
    eventually("the spans' arrival", || {
        let spans = receiver.spans();
        let request = spans.iter().any(|s| {
            s.trace_id == trace_bytes
                && s.span_id == server_bytes
                && s.parent_span_id == caller_bytes
                && s.kind == SpanKind::Server as i32
                && s.name == "POST /fhir/{type}"
        });
        let child = |name: &str| {
            spans.iter().any(|s| {
                s.trace_id == trace_bytes
                    && s.parent_span_id == server_bytes
                    && s.name == name
                    && s.kind == SpanKind::Client as i32
            })
        };
        let sealed = spans.iter().any(|s| s.name == "ledger.seal");
        let search = spans.iter().any(|s| s.name == "db.search");
        check(request, "the request span")
            .and(check(child("db.write"), "db.write under it"))
            .and(check(child("db.commit"), "db.commit under it"))
            .and(check(sealed, "ledger.seal"))
            .and(check(search, "db.search"))
            .map_err(|m| format!("{m}; spans:\n{}", describe(&spans)))
    })
    .await;

    // Metrics arrive over OTLP too.
    eventually("the metrics' arrival", || {
        let names = receiver.metric_names();
        let gauges = ["fhir_notary.ledger.height", "fhir_notary.db.pool.size"]
            .iter()
            .all(|n| names.iter().any(|m| m == n));
        check(receiver.has_request_point("create"), "create requests")
            .and(check(receiver.has_request_point("read"), "read requests"))
            .and(check(gauges, "the pool and ledger gauges"))
            .map_err(|m| format!("{m}; metrics: {names:?}"))
    })
    .await;

    // And Prometheus can scrape them.
    let res = client
        .get(format!("{}/metrics", node.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    let count = "http_server_request_duration_seconds_count";
    for (interaction, method, status) in [
        ("create", "POST", "201"),
        ("read", "GET", "200"),
        ("search-type", "GET", "200"),
    ] {
        let labels = [
            ("fhir_interaction", interaction),
            ("http_request_method", method),
            ("http_response_status_code", status),
        ];
        assert!(
            text.lines().any(|l| sample_has(l, count, &labels)),
            "no {count} for {labels:?} in:\n{text}"
        );
    }
    let pool = if db == Db::Postgres { "main" } else { "write" };
    assert!(
        text.lines()
            .any(|l| sample_has(l, "fhir_notary_db_pool_size", &[("pool", pool)])),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("fhir_notary_ledger_height")),
        "{text}"
    );
    assert!(
        !node.log().contains("cannot export telemetry"),
        "{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_spans_and_metrics_reach_the_collector() {
    spans_and_metrics_reach_the_collector(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_spans_and_metrics_reach_the_collector() {
    spans_and_metrics_reach_the_collector(Db::Postgres).await;
}

/// With a collector that is not there, the server says so once and serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_collector_is_logged_once() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        None,
        dir.path(),
        &["--otlp-endpoint", &endpoint, "--metrics-interval-ms", "100"],
    );
    node.ready(&reqwest::Client::new()).await;
    let client = node.client();
    for _ in 0..5 {
        let res = client
            .post(format!("{}/fhir/Patient", node.root))
            .header("Content-Type", "application/fhir+json")
            .body(json!({"resourceType": "Patient"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warning = "cannot export telemetry over OTLP";
    eventually("the warning", || {
        check(node.log().contains(warning), warning)
    })
    .await;
    // Several export rounds later, still one line.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = node.log();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(client
        .get(format!("{}/readyz", node.root))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200));
}

/// Without telemetry configured nothing is propagated, and `/metrics` still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_but_metrics_scrape() {
    let server = TestServer::start(Db::Sqlite).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let res = server
        .get("Patient?family=nobody")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(traceparent_of(&res), None);
    let text = server
        .client
        .get(format!("{}/metrics", server.root))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| sample_has(
            l,
            "http_server_request_duration_seconds_count",
            &[
                ("fhir_interaction", "search-type"),
                ("http_response_status_code", "200")
            ]
        )),
        "{text}"
    );
}
