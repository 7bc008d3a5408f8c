//! `GET /metrics`: every metric in the Prometheus text exposition format 0.0.4, for a
//! Prometheus scrape. Public like the health checks: it carries counts and timings, no
//! resource content.

use actix_web::http::header;
use actix_web::HttpResponse;

/// `GET /metrics`: 200 with `text/plain; version=0.0.4`.
pub async fn scrape() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(crate::telemetry::metrics().prometheus_text())
}
