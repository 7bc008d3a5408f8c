//! A span per request and a request id, taken from the client's `X-Request-Id` when it is a
//! sensible token or made fresh, echoed in the response and available to handlers (the
//! ledger records it with every write).
//!
//! The span is the OpenTelemetry server span: it continues the trace of an incoming W3C
//! `traceparent`/`tracestate` and the response carries its own `traceparent`, so callers
//! can find the server's part of their trace. Each request is also counted and timed in
//! [`crate::telemetry`] by FHIR interaction and status.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The request id of the request being handled, stored in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const HEADER: &str = "x-request-id";

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The middleware: wraps the rest of the chain in a `request` span.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %req.path(),
        request_id = %id,
        status = tracing::field::Empty,
        otel.kind = "server",
        otel.name = %method,
        otel.status_code = tracing::field::Empty,
        http.route = tracing::field::Empty,
    );
    let caller = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    if caller.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed, and then there is no trace
        // to continue.
        let _ = span.set_parent(caller);
    }
    let started = Instant::now();
    // A panic below is a bug; the client still gets an OperationOutcome, not a dropped
    // connection, and the panic is logged with the request it happened in.
    let outcome = AssertUnwindSafe(next.call(req).instrument(span.clone()))
        .catch_unwind()
        .await;
    let mut res = match outcome {
        Ok(res) => res?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            crate::telemetry::metrics().record_request(
                "unknown",
                method.as_str(),
                500,
                started.elapsed().as_secs_f64(),
            );
            return Err(
                super::error::ApiError::Internal(format!("handler panicked: {what}")).into(),
            );
        }
    };
    let status = res.status().as_u16();
    let route = res.request().match_pattern();
    crate::telemetry::metrics().record_request(
        crate::telemetry::interaction(method.as_str(), route.as_deref()),
        method.as_str(),
        status,
        started.elapsed().as_secs_f64(),
    );
    span.record("status", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let cx = span.context();
    if let Some(route) = &route {
        span.record("http.route", route.as_str());
        // The OpenTelemetry span has started by now, so its name is set on it directly.
        cx.span().update_name(format!("{method} {route}"));
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(res.headers_mut()));
    });
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "handled"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(res)
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes W3C trace context into response headers.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` when there is none; leave it out.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
