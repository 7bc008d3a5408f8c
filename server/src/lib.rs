//! FHIR Notary's server: the FHIR R4 REST API over SQLite or PostgreSQL.
//!
//! # Layout
//! - [`audit_trail`]: an AuditEvent per request, stored in batches off the request path.
//! - [`auth`]: bearer tokens, SMART scopes, the role policy, the Patient compartment.
//! - [`config`]: the command line (and `FHIR_NOTARY_*` environment), typed and checked.
//! - [`cli`]: what each subcommand does; `main.rs` only calls [`cli::main`].
//! - [`http`]: the actix application ([`http::app`]), handlers, errors as OperationOutcome.
//! - [`store`]: the storage API in FHIR's terms over both databases.
//! - [`import`]: `fhir-notary import`, bulk loading through the API's own Bundle processing.
//! - [`notary`]: the node key, the block sealer, the full audit, proof verification.
//! - [`logging`]: log output setup.
//! - [`telemetry`]: OpenTelemetry traces and metrics, the Prometheus scrape.
//!
//! Tests drive [`http::app`] through [`start`] on a loopback port: the same code production
//! runs.

pub mod audit_trail;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod import;
pub mod logging;
pub mod notary;
pub mod store;
pub mod telemetry;

use std::net::TcpListener;
use std::time::Duration;

pub use http::{app, AppState};

/// Starts serving `state` on an already-bound listener and returns the running server,
/// which stops gracefully (in-flight requests finish) on SIGTERM, ctrl-c or its handle's
/// `stop(true)`. Must be called inside an actix system.
pub fn start(
    listener: TcpListener,
    state: AppState,
    workers: usize,
    shutdown_timeout: Duration,
) -> std::io::Result<actix_web::dev::Server> {
    let mut server = actix_web::HttpServer::new(move || app(state.clone()))
        .shutdown_timeout(shutdown_timeout.as_secs())
        .listen(listener)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
