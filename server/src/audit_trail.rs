//! The AuditEvent trail: one FHIR R4 AuditEvent per request to `/fhir` and `/ledger`
//! (reads, searches, history, writes, ledger reads and proofs, refused tokens, denials), in
//! the spirit of IHE BALP: `agent` from the token (fhirUser, `sub`, role, client address),
//! `entity` the resource touched (and the Patient in context), `action`, `outcome`, and
//! `source` this server.
//!
//! Recording stays off the request path: [`middleware`] builds the event after the response
//! is ready and hands it to a bounded channel; [`AuditWriter::run`] takes whatever has
//! queued (up to [`BATCH`], [`WRITERS`] batches at once) and stores each batch in one
//! transaction through the ordinary store
//! write path, so AuditEvents are versioned, indexed for search and notarized in the ledger
//! like every resource. Nothing is dropped: when the channel is full the request waits for
//! room; a failed batch is retried; [`AuditTrail::shutdown`] (after the HTTP server has
//! stopped) writes what is still queued before the process exits. The API refuses to
//! create, update or delete AuditEvents for everyone ([`crate::auth`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use base64::Engine;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Notify};

use crate::auth::{Principal, Refused};
use crate::http::request_id::RequestId;
use crate::http::AppState;
use crate::store::{Store, WriteContext};

/// Events queued before a request has to wait for the writer.
pub const CAPACITY: usize = 8192;
/// Most events stored in one transaction.
pub const BATCH: usize = 512;
/// Most transactions of AuditEvents in flight at once.
pub const WRITERS: usize = 4;
/// The ledger actor of the trail's own writes.
pub const ACTOR: &str = "fhir-notary/audit";

/// The sending side, shared by every request.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    tx: mpsc::Sender<Value>,
    stop: Arc<Notify>,
    done: Arc<Notify>,
}

/// The background task that stores queued events.
#[derive(Debug)]
pub struct AuditWriter {
    rx: mpsc::Receiver<Value>,
    store: Store,
    stop: Arc<Notify>,
    done: Arc<Notify>,
}

impl AuditTrail {
    /// A trail writing into `store`; run the returned writer (e.g. `rt::spawn(w.run())`).
    pub fn new(store: Store) -> (AuditTrail, AuditWriter) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let stop = Arc::new(Notify::new());
        let done = Arc::new(Notify::new());
        (
            AuditTrail {
                tx,
                stop: Arc::clone(&stop),
                done: Arc::clone(&done),
            },
            AuditWriter {
                rx,
                store,
                stop,
                done,
            },
        )
    }

    /// Queues `event`, waiting for room when the queue is full.
    pub async fn record(&self, event: Value) {
        if self.tx.send(event).await.is_err() {
            tracing::error!("an AuditEvent arrived after the trail was shut down");
        }
    }

    /// Stops taking events and returns once every queued one is stored.
    pub async fn shutdown(&self) {
        let done = self.done.notified();
        self.stop.notify_one();
        done.await;
    }
}

impl AuditWriter {
    /// Stores queued events in batches until [`AuditTrail::shutdown`], then drains. Up to
    /// [`WRITERS`] batches are written at once (separate transactions), so the trail keeps
    /// pace with reads on a database that takes concurrent writers.
    pub async fn run(mut self) {
        use futures_util::StreamExt;
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                () = self.stop.notified() => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                n = self.rx.recv_many(&mut batch, BATCH), if in_flight.len() < WRITERS => {
                    if n == 0 {
                        break;
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    in_flight.push(store_batch(self.store.clone(), full, false));
                }
            }
        }
        self.rx.close();
        while in_flight.next().await.is_some() {}
        while self.rx.recv_many(&mut batch, BATCH).await > 0 {
            let full = std::mem::take(&mut batch);
            store_batch(self.store.clone(), full, true).await;
        }
        self.done.notify_one();
    }
}

/// Writes `batch` in one transaction, retrying until it is stored (a bounded number of
/// times while shutting down, when there is no one left to wait for the database). The
/// first retries come quickly: at shutdown, pooled connections opened by the stopped HTTP
/// workers fail at once and are discarded one by one, and a fresh connection succeeds.
async fn store_batch(store: Store, batch: Vec<Value>, shutting_down: bool) {
    const QUICK: u32 = 64;
    let mut delay = Duration::from_millis(100);
    for attempt in 1u32.. {
        match write(&store, &batch).await {
            Ok(()) => break,
            Err(e) if shutting_down && attempt >= QUICK + 5 => {
                tracing::error!(error = %e, lost = batch.len(), "AuditEvents could not be stored at shutdown");
                break;
            }
            Err(e) if attempt <= QUICK => {
                tracing::debug!(error = %e, attempt, "storing AuditEvents failed; retrying");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, events = batch.len(), "storing AuditEvents failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn write(store: &Store, batch: &[Value]) -> Result<(), crate::store::StoreError> {
    let mut tx = store
        .begin(WriteContext {
            actor: ACTOR.to_owned(),
            request_id: format!("audit-{}", uuid::Uuid::new_v4()),
        })
        .await?;
    // One statement for the whole batch on PostgreSQL (versions, ledger entries, pointers)
    // and one for its index rows: the trail's cost is per batch, not per event.
    let items = batch
        .iter()
        .map(|event| crate::store::NewResource {
            resource_type: "AuditEvent".to_owned(),
            id: uuid::Uuid::new_v4().to_string(),
            resource: event.clone(),
        })
        .collect();
    tx.create_many(items).await?;
    tx.commit().await
}

/// Whether requests to `path` are audited: the FHIR API and the ledger, but not the
/// CapabilityStatement and discovery documents.
fn audited(path: &str) -> bool {
    crate::auth::needs_token(path)
}

/// Records an AuditEvent for every audited request, after its response is ready.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if !audited(req.path()) {
        return next.call(req).await;
    }
    let trail = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.audit.clone());
    let method = req.method().clone();
    let path = req.path().to_owned();
    let query = req.query_string().to_owned();
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let res = next.call(req).await?;
    if let Some(trail) = trail {
        let event = {
            let ext = res.request().extensions();
            let request_id = ext.get::<RequestId>().map(|r| r.0.clone());
            event(&Seen {
                method: &method,
                path: &path,
                query: &query,
                address: address.as_deref(),
                status: res.status().as_u16(),
                principal: ext.get::<Principal>(),
                refused: ext.get::<Refused>().is_some(),
                request_id: request_id.as_deref(),
            })
        };
        trail.record(event).await;
    }
    Ok(res)
}

/// What the middleware saw of one request.
struct Seen<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    address: Option<&'a str>,
    status: u16,
    principal: Option<&'a Principal>,
    refused: bool,
    request_id: Option<&'a str>,
}

/// The AuditEvent for one request.
fn event(seen: &Seen<'_>) -> Value {
    let (interaction, action, target) = classify(seen.method, seen.path);
    let outcome = match seen.status {
        s if s < 400 => "0",
        s if s < 500 => "4",
        _ => "8",
    };
    let mut agent = json!({
        "requestor": true,
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP",
            "display": "information recipient",
        }]},
    });
    match seen.principal {
        Some(p) => {
            agent["who"] = match &p.fhir_user {
                Some(u) => json!({ "reference": u }),
                None => json!({ "identifier": { "value": p.subject }, "display": p.subject }),
            };
            agent["altId"] = json!(p.subject);
            agent["name"] = json!(p.subject);
            if let Some(role) = p.role {
                agent["role"] = json!([{ "text": role.as_str() }]);
            }
        }
        None => {
            agent["who"] = json!({ "display": "anonymous" });
        }
    }
    if let Some(a) = seen.address {
        agent["network"] = json!({ "address": a, "type": "2" });
    }
    let mut entity = Vec::new();
    if let Some(t) = &target {
        entity.push(json!({
            "what": { "reference": t },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "2", "display": "System Object" },
        }));
    }
    let patient = seen
        .principal
        .and_then(|p| p.patient.as_deref())
        .map(|id| format!("Patient/{id}"))
        .or_else(|| {
            target
                .as_deref()
                .filter(|t| t.starts_with("Patient/"))
                .map(|t| t.split('/').take(2).collect::<Vec<_>>().join("/"))
        });
    if let Some(p) = patient {
        entity.push(json!({
            "what": { "reference": p },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient" },
        }));
    }
    if !seen.query.is_empty() {
        entity.push(json!({
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "2", "display": "System Object" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "24", "display": "Query" },
            "query": base64::engine::general_purpose::STANDARD.encode(seen.query),
        }));
    }
    let mut description = format!("{} {} answered {}", seen.method, seen.path, seen.status);
    if seen.refused {
        description.push_str(" (access token refused)");
    } else if seen.status == 403 {
        description.push_str(" (denied by the access policy)");
    }
    if let Some(id) = seen.request_id {
        description.push_str(&format!("; request {id}"));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [interaction],
        "action": action,
        "recorded": fhir::primitives::format_instant(OffsetDateTime::now_utc()),
        "outcome": outcome,
        "outcomeDesc": description,
        "agent": [agent],
        "source": {
            "site": "FHIR Notary",
            "observer": { "display": "FHIR Notary" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
    });
    if !entity.is_empty() {
        event["entity"] = Value::Array(entity);
    }
    event
}

/// The interaction (a `restful-interaction` Coding), the AuditEvent action code and the
/// resource reference a request addresses.
fn classify(method: &Method, path: &str) -> (Value, &'static str, Option<String>) {
    let rest =
        |code: &str| json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": code });
    if let Some(ledger) = path.strip_prefix("/ledger") {
        let target = ledger.strip_prefix("/proof/").map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            match parts.as_slice() {
                [t, id, v] => format!("{t}/{id}/_history/{v}"),
                _ => p.to_owned(),
            }
        });
        let code = if target.is_some() {
            "ledger-proof"
        } else {
            "ledger-read"
        };
        return (
            json!({ "system": "urn:fhir-notary:interaction", "code": code }),
            "R",
            target,
        );
    }
    let segs: Vec<&str> = path
        .strip_prefix("/fhir")
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_get = method == Method::GET;
    let (code, action, target): (&str, &str, Option<String>) = match (segs.as_slice(), method) {
        ([], _) | (["_search"], _) => ("search-system", "E", None),
        (["_history"], _) => ("history-system", "R", None),
        ([t], m) if m == Method::POST => ("create", "C", Some((*t).to_owned())),
        ([t], _) => ("search-type", "E", Some((*t).to_owned())),
        ([t, "_search"], _) => ("search-type", "E", Some((*t).to_owned())),
        ([t, "_history"], _) => ("history-type", "R", Some((*t).to_owned())),
        ([t, id], m) if m == Method::PUT => ("update", "U", Some(format!("{t}/{id}"))),
        ([t, id], m) if m == Method::PATCH => ("patch", "U", Some(format!("{t}/{id}"))),
        ([t, id], m) if m == Method::DELETE => ("delete", "D", Some(format!("{t}/{id}"))),
        ([t, id], _) if is_get => ("read", "R", Some(format!("{t}/{id}"))),
        ([t, id, "_history"], _) => ("history-instance", "R", Some(format!("{t}/{id}"))),
        ([t, id, "_history", v], _) => ("vread", "R", Some(format!("{t}/{id}/_history/{v}"))),
        _ => ("operation", "E", None),
    };
    (rest(code), action, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_r4_audit_events() {
        for (method, path, status) in [
            (Method::GET, "/fhir/Patient/p1", 200),
            (Method::GET, "/fhir/Observation", 403),
            (Method::POST, "/fhir/Observation", 201),
            (Method::DELETE, "/fhir/Observation/o1", 204),
            (Method::GET, "/fhir/Observation/o1/_history/2", 401),
            (Method::GET, "/ledger/proof/Patient/p1/1", 200),
        ] {
            let e = event(&Seen {
                method: &method,
                path,
                query: "a=b",
                address: Some("127.0.0.1"),
                status,
                principal: None,
                refused: status == 401,
                request_id: Some("r1"),
            });
            fhir::validate::validate_resource(fhir::definitions::r4(), &e)
                .unwrap_or_else(|err| panic!("{path}: {err:?}\n{e}"));
        }
    }

    #[test]
    fn requests_are_classified() {
        let (i, a, t) = classify(&Method::GET, "/fhir/Patient/p1/_history/3");
        assert_eq!((i["code"].as_str(), a), (Some("vread"), "R"));
        assert_eq!(t.as_deref(), Some("Patient/p1/_history/3"));
        let (i, a, t) = classify(&Method::POST, "/fhir/Patient/_search");
        assert_eq!(
            (i["code"].as_str(), a, t.as_deref()),
            (Some("search-type"), "E", Some("Patient"))
        );
        let (i, _, t) = classify(&Method::GET, "/ledger/blocks/3");
        assert_eq!((i["code"].as_str(), t), (Some("ledger-read"), None));
    }
}
