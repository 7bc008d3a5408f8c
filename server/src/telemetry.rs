//! Traces and metrics with OpenTelemetry: spans exported over OTLP/HTTP (protobuf) when an
//! endpoint is configured, and metrics both pushed over OTLP and scraped by Prometheus at
//! `GET /metrics`. `docs/observability.md` lists every span and metric.
//!
//! Spans are `tracing` spans; the `tracing-opentelemetry` layer that [`crate::logging`]
//! installs with [`Telemetry::tracer`] turns them into OpenTelemetry spans. The request
//! span (the server span, continuing the caller's W3C trace context) is opened in
//! [`crate::http::request_id`]; the storage layer opens `db.*` spans, the sealer
//! `ledger.seal`, and the audit writer [`audit_write_span`].
//!
//! Metrics are process-wide, like the Prometheus registry a scrape reads, so the
//! instruments live in a static: the middleware, the store and the sealer record into them
//! without a handle threaded through every layer. Until [`init`] runs they record into a
//! provider with only the Prometheus reader, so an app started without `serve` (the tests)
//! still answers `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use time::OffsetDateTime;

use crate::config::TelemetryArgs;
use crate::store::Store;

/// The instrumentation scope name of every span and metric.
const SCOPE: &str = "fhir-notary";

/// How long one OTLP export may take, retries included; shutdown waits at most this long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`init`] set up; shut it down before the process exits so buffered spans and the
/// last metrics reach the collector.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: SdkMeterProvider,
}

impl Telemetry {
    /// The tracer for the `tracing-opentelemetry` layer, when traces are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.tracer_provider.as_ref().map(|p| p.tracer(SCOPE))
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "could not flush the last spans");
            }
        }
        if let Err(e) = self.meter_provider.shutdown() {
            tracing::debug!(error = %e, "could not flush the last metrics");
        }
    }
}

/// Sets up the process's traces and metrics from the configuration. Nothing is sent
/// anywhere without an OTLP endpoint; with one, an unreachable collector is logged once
/// (see [`OtlpClient`]) and the server carries on. Call once, before the first request.
pub fn init(args: &TelemetryArgs) -> Result<Telemetry, String> {
    let resource = Resource::builder()
        .with_service_name(args.otel_service_name.clone())
        .build();
    let interval = Duration::from_millis(args.metrics_interval_ms);
    let mut tracer_provider = None;
    let mut otlp_metrics = None;
    if let Some(endpoint) = &args.otlp_endpoint {
        let client = OtlpClient::new(endpoint)?;
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/metrics"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the OTLP metric exporter: {e}"))?;
        tracer_provider = Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    args.otel_sampling_ratio,
                ))))
                .with_resource(resource.clone())
                .build(),
        );
        otlp_metrics = Some(
            PeriodicReader::builder(metrics)
                .with_interval(interval)
                .build(),
        );
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    let metrics = Metrics::build(resource, otlp_metrics, interval);
    let meter_provider = metrics.provider.clone();
    METRICS
        .set(metrics)
        .map_err(|_| "telemetry was set up twice".to_owned())?;
    Ok(Telemetry {
        tracer_provider,
        meter_provider,
    })
}

/// The instruments. Names follow the OpenTelemetry semantic conventions where one exists;
/// Prometheus sees them with dots as underscores and the unit as a suffix
/// (`http.server.request.duration` in seconds → `http_server_request_duration_seconds`).
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    sample_interval: Duration,
    request_duration: Histogram<f64>,
    pool_size: Gauge<u64>,
    pool_idle: Gauge<u64>,
    ledger_height: Gauge<u64>,
    ledger_pending: Gauge<u64>,
    ledger_oldest_pending_age: Gauge<f64>,
    sealed_entries: Counter<u64>,
    audit_backlog: Gauge<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's instruments (a Prometheus-only set when [`init`] has not run).
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        Metrics::build(
            Resource::builder().with_service_name(SCOPE).build(),
            None,
            Duration::from_secs(10),
        )
    })
}

impl Metrics {
    fn build(
        resource: Resource,
        otlp: Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>,
        sample_interval: Duration,
    ) -> Metrics {
        let registry = prometheus::Registry::new();
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        // A fresh registry has nothing the exporter's collector could clash with; should it
        // fail anyway, metrics still go over OTLP and `/metrics` answers empty.
        match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
        {
            Ok(prometheus) => builder = builder.with_reader(prometheus),
            Err(e) => tracing::error!(error = %e, "cannot set up the Prometheus exporter"),
        }
        if let Some(otlp) = otlp {
            builder = builder.with_reader(otlp);
        }
        let provider = builder.build();
        let meter = provider.meter(SCOPE);
        Metrics {
            registry,
            sample_interval,
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP requests, by FHIR interaction and status.")
                .with_boundaries(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            pool_size: meter
                .u64_gauge("fhir_notary.db.pool.size")
                .with_description("Open database connections, by pool.")
                .build(),
            pool_idle: meter
                .u64_gauge("fhir_notary.db.pool.idle")
                .with_description("Idle database connections, by pool.")
                .build(),
            ledger_height: meter
                .u64_gauge("fhir_notary.ledger.height")
                .with_description("Height of the newest sealed ledger block.")
                .build(),
            ledger_pending: meter
                .u64_gauge("fhir_notary.ledger.pending_entries")
                .with_description("Ledger entries waiting to be sealed.")
                .build(),
            ledger_oldest_pending_age: meter
                .f64_gauge("fhir_notary.ledger.oldest_pending_age")
                .with_unit("s")
                .with_description("Age of the oldest entry waiting to be sealed (0 when none).")
                .build(),
            sealed_entries: meter
                .u64_counter("fhir_notary.ledger.sealed_entries")
                .with_description("Ledger entries sealed into blocks by this process.")
                .build(),
            audit_backlog: meter
                .u64_gauge("fhir_notary.audit.backlog")
                .with_description("AuditEvents waiting to be written.")
                .build(),
            provider,
        }
    }

    /// Records one handled request.
    pub fn record_request(&self, interaction: &'static str, method: &str, status: u16, secs: f64) {
        self.request_duration.record(
            secs,
            &[
                KeyValue::new("fhir.interaction", interaction),
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        );
    }

    /// Records a block sealed by this process.
    pub fn record_sealed(&self, height: u64, entries: u64) {
        self.sealed_entries.add(entries, &[]);
        self.ledger_height.record(height, &[]);
    }

    /// Sets the number of AuditEvents waiting to be written; the audit writer calls this
    /// whenever its queue changes.
    pub fn set_audit_backlog(&self, waiting: u64) {
        self.audit_backlog.record(waiting, &[]);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn prometheus_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot encode the metrics");
                String::new()
            })
    }

    /// Samples what only the database knows (pool use, ledger height and lag) now.
    async fn sample(&self, store: &Store) {
        for pool in store.pool_usage() {
            let attrs = [KeyValue::new("pool", pool.name)];
            self.pool_size.record(u64::from(pool.size), &attrs);
            self.pool_idle.record(pool.idle as u64, &attrs);
        }
        match store.ledger_lag().await {
            Ok(lag) => {
                if let Some(height) = lag.height {
                    self.ledger_height.record(height, &[]);
                }
                self.ledger_pending.record(lag.pending, &[]);
                let age = lag.oldest_pending.map_or(0.0, |t| {
                    (OffsetDateTime::now_utc() - t).as_seconds_f64().max(0.0)
                });
                self.ledger_oldest_pending_age.record(age, &[]);
            }
            Err(e) => tracing::debug!(error = %e, "cannot sample the ledger lag"),
        }
    }
}

/// Samples the database-derived gauges every metrics interval, until the runtime stops.
pub async fn sample_store(store: Store) {
    let metrics = metrics();
    loop {
        metrics.sample(&store).await;
        tokio::time::sleep(metrics.sample_interval).await;
    }
}

/// Sets the audit backlog gauge: see [`Metrics::set_audit_backlog`].
pub fn set_audit_backlog(waiting: u64) {
    metrics().set_audit_backlog(waiting);
}

/// The span around writing one AuditEvent: instrument the write with it
/// (`write.instrument(telemetry::audit_write_span("read"))`) so it shows as a child of the
/// request that caused it.
pub fn audit_write_span(action: &str) -> tracing::Span {
    tracing::info_span!("audit.write", otel.kind = "internal", audit.action = %action)
}

/// The FHIR interaction a request was, from its method and the route pattern that matched
/// (`None` when no route did): the `fhir.interaction` label of the request metrics.
pub fn interaction(method: &str, pattern: Option<&str>) -> &'static str {
    let Some(pattern) = pattern else {
        return "unknown";
    };
    if let Some(rest) = pattern.strip_prefix("/fhir") {
        return match (method, rest) {
            ("GET", "/metadata") => "capabilities",
            ("GET", "" | "/") | ("POST", "/_search") => "search-system",
            ("POST", "" | "/") => "transaction",
            ("GET", "/_history") => "history-system",
            ("GET", "/{type}") | ("POST", "/{type}/_search") => "search-type",
            ("POST", "/{type}") => "create",
            ("GET", "/{type}/_history") => "history-type",
            ("GET", "/{type}/{id}") => "read",
            ("PUT", "/{type}/{id}") => "update",
            ("PATCH", "/{type}/{id}") => "patch",
            ("DELETE", "/{type}/{id}") => "delete",
            ("GET", "/{type}/{id}/_history") => "history-instance",
            ("GET", "/{type}/{id}/_history/{vid}") => "vread",
            (_, r) if r.contains("$") => "operation",
            _ => "other",
        };
    }
    match pattern {
        p if p.starts_with("/ledger") => "ledger",
        p if p.starts_with("/audit") => "audit",
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// The exporters' HTTP client: reqwest, driven by a runtime of its own because the SDK
/// exports from plain threads (its batch span processor and periodic metric reader).
/// It logs the first failure of an outage and the recovery, not every failed export.
#[derive(Debug, Clone)]
struct OtlpClient(Arc<OtlpClientInner>);

#[derive(Debug)]
struct OtlpClientInner {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    endpoint: String,
    failing: AtomicBool,
}

impl OtlpClient {
    fn new(endpoint: &str) -> Result<OtlpClient, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the telemetry export runtime: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the telemetry export thread: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the OTLP HTTP client: {e}"))?;
        Ok(OtlpClient(Arc::new(OtlpClientInner {
            client,
            runtime: handle,
            endpoint: endpoint.to_owned(),
            failing: AtomicBool::new(false),
        })))
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.0.client.clone();
        let exchange = async move {
            let res = client.execute(request).await?;
            let status = res.status();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = self.0.runtime.spawn(exchange).await??;
        Ok(Response::builder().status(status).body(body)?)
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = self.send(request).await;
        let problem = match &result {
            Ok(res) if res.status().is_success() => None,
            Ok(res) => Some(format!("the collector answered {}", res.status())),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(problem) if !self.0.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    endpoint = %self.0.endpoint,
                    error = %problem,
                    "cannot export telemetry over OTLP; the server carries on and keeps trying \
                     (logged once until it works again)"
                );
            }
            None if self.0.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.0.endpoint, "telemetry export over OTLP works again");
            }
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::interaction;

    #[test]
    fn interactions_follow_the_routes() {
        let cases = [
            ("GET", Some("/fhir/{type}/{id}"), "read"),
            ("GET", Some("/fhir/{type}/{id}/_history/{vid}"), "vread"),
            ("GET", Some("/fhir/{type}"), "search-type"),
            ("POST", Some("/fhir/{type}/_search"), "search-type"),
            ("POST", Some("/fhir/{type}"), "create"),
            ("PUT", Some("/fhir/{type}/{id}"), "update"),
            ("DELETE", Some("/fhir/{type}/{id}"), "delete"),
            (
                "GET",
                Some("/fhir/{type}/{id}/_history"),
                "history-instance",
            ),
            ("GET", Some("/fhir/_history"), "history-system"),
            ("GET", Some("/fhir/metadata"), "capabilities"),
            ("GET", Some("/ledger/proof/{type}/{id}/{version}"), "ledger"),
            ("GET", Some("/metrics"), "metrics"),
            ("GET", None, "unknown"),
        ];
        for (method, pattern, expected) in cases {
            assert_eq!(
                interaction(method, pattern),
                expected,
                "{method} {pattern:?}"
            );
        }
    }
}
