//! The AuditEvent trail: one FHIR R4 AuditEvent per request to `/fhir` and `/ledger`
//! (reads, searches, history, writes, ledger reads and proofs, refused tokens, denials), in
//! the spirit of IHE BALP: `agent` from the token (fhirUser, `sub`, role, client address),
//! `entity` the resource touched (and the Patient in context), `action`, `outcome`, and
//! `source` this server.
//!
//! Handlers tell the trail what the URL cannot ([`touch`]): the versions a request read or
//! wrote (a create's new id, each entry of a transaction) and the Patients whose records
//! they belong to (a search names the Patients of the resources it returned), so an auditor
//! can search the trail by patient for every access to that patient's record.
//!
//! Recording stays off the request path: [`middleware`] builds the event (module `event`)
//! as JSON text after the response is ready and hands it to a bounded channel;
//! [`AuditWriter::run`] takes whatever has queued (up to [`BATCH`], [`WRITERS`] batches at
//! once) and stores each batch in one transaction through the ordinary store write path, so
//! AuditEvents are versioned, indexed for search and notarized in the ledger like every
//! resource. A batch is made ready from the events' own types (module `stored`), which
//! gives what the generic preparation of a parsed resource would, for a fraction of the
//! CPU. Nothing is dropped: when the channel is full the request waits for room; a failed
//! batch is retried; [`AuditTrail::shutdown`] (after the HTTP server has stopped) writes
//! what is still queued before the process exits. The API refuses to create, update or
//! delete AuditEvents for everyone ([`crate::auth`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::auth::{Principal, Refused};
use crate::http::request_id::RequestId;
use crate::http::AppState;
use crate::store::{PreparedCreates, Store, StoreError, VersionRecord, WriteContext};

mod event;
mod stored;

use event::{event, Seen};

/// Events queued before a request has to wait for the writer. With the batches in flight,
/// at most `CAPACITY + WRITERS * BATCH` (9,216) events are held in memory, not yet stored.
pub const CAPACITY: usize = 5120;
/// Most events stored in one transaction. Under a steady load the queue always holds a
/// full batch, so this is the size of nearly every transaction. Big ones pay off on SQLite:
/// a commit writes every page it changed in full, and read events of the same Patients
/// change the same pages of the reference indexes. From 512 to 2,048 the bytes written per
/// event fell from ~33 to ~24 KB and sustained audited reads rose 11–14 %
/// (`docs/benchmarks.md`).
pub const BATCH: usize = 2048;
/// Longest an event waits for others to share its transaction.
pub const LINGER: Duration = Duration::from_millis(20);
/// Most transactions of AuditEvents in flight at once.
pub const WRITERS: usize = 2;
/// The ledger actor of the trail's own writes.
pub const ACTOR: &str = "fhir-notary/audit";

/// The sending side, shared by every request.
#[derive(Clone, Debug)]
pub struct AuditTrail {
    tx: mpsc::Sender<String>,
    stop: Arc<Notify>,
    done: Arc<Notify>,
}

/// The background task that stores queued events.
#[derive(Debug)]
pub struct AuditWriter {
    rx: mpsc::Receiver<String>,
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

    /// Queues `event` (an AuditEvent's JSON), waiting for room when the queue is full.
    pub async fn record(&self, event: String) {
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
    /// pace with reads on a database that takes concurrent writers. A batch is written once
    /// it is full or its first event has waited [`LINGER`]: a transaction costs the
    /// database about as much as dozens of events, so a steady stream is stored in few.
    ///
    /// While a batch lingers the writer does not listen to the queue: events wait there
    /// and are taken when the batch is due. Listening meant a thread wake-up for every
    /// event sent, on both sides of the queue. Under a backlog nothing lingers: the queue
    /// then holds a full batch whenever the writer looks, and a full batch goes at once.
    pub async fn run(mut self) {
        use futures_util::StreamExt;
        use tokio::time::Instant;
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut batch = Vec::with_capacity(BATCH);
        let mut due: Option<Instant> = None;
        loop {
            let free = in_flight.len() < WRITERS;
            if free && due.is_some_and(|d| d <= Instant::now()) {
                while batch.len() < BATCH {
                    match self.rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
            }
            if free && (batch.len() >= BATCH || due.is_some_and(|d| d <= Instant::now())) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                due = None;
                in_flight.push(store_batch(self.store.clone(), with_ids(full), false));
                continue;
            }
            let room = BATCH.saturating_sub(batch.len());
            tokio::select! {
                biased;
                () = self.stop.notified() => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if free && due.is_some() => {}
                n = self.rx.recv_many(&mut batch, room), if batch.is_empty() => {
                    if n == 0 {
                        break;
                    }
                    due.get_or_insert_with(|| Instant::now() + LINGER);
                }
            }
        }
        self.rx.close();
        while in_flight.next().await.is_some() {}
        loop {
            let room = BATCH.saturating_sub(batch.len());
            self.rx.recv_many(&mut batch, room).await;
            if batch.is_empty() {
                break;
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            store_batch(self.store.clone(), with_ids(full), true).await;
        }
        self.done.notify_one();
    }
}

/// A queued event (its JSON) and the id it is stored under: assigned once, so a retry
/// writes the same event.
#[derive(Debug, Clone)]
struct Queued {
    id: String,
    json: String,
}

/// Writes `batch` in one transaction, retrying until it is stored (a bounded number of
/// times while shutting down, when there is no one left to wait for the database). The
/// first retries come quickly: a broken pooled connection fails at once and is discarded,
/// and the next attempt takes another.
async fn store_batch(store: Store, batch: Vec<Queued>, shutting_down: bool) {
    const QUICK: u32 = 64;
    // Parsed and prepared before the transaction, once: SQLite's write lock is held only
    // for the statements, and retries do not redo the work. That takes milliseconds of CPU
    // per batch, done on a blocking thread: on the trail's own thread it would keep the
    // statements of the batches in flight waiting. The parsed events are dropped there
    // too, on the thread that allocated them.
    let lost = batch.len();
    let first = batch.first().map(|q| q.id.clone());
    let backend = store.backend();
    let prepared = tokio::task::spawn_blocking(move || stored::prepare(backend, &batch)).await;
    let prepared = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(e)) => {
            tracing::error!(error = %e, lost, "AuditEvents could not be prepared");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, lost, "preparing AuditEvents failed");
            return;
        }
    };
    let mut delay = Duration::from_millis(100);
    for attempt in 1u32.. {
        // A commit reported as failed may have been applied all the same (the connection
        // broke after the database committed): the batch's ids tell, so a retry never
        // stores an event twice.
        if attempt > 1 && stored(&store, first.as_deref()).await {
            break;
        }
        match write(&store, &prepared).await {
            Ok(()) => break,
            Err(e) if shutting_down && attempt >= QUICK + 5 => {
                tracing::error!(error = %e, lost, "AuditEvents could not be stored at shutdown");
                break;
            }
            Err(e) if attempt <= QUICK => {
                tracing::debug!(error = %e, attempt, "storing AuditEvents failed; retrying");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, events = lost, "storing AuditEvents failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `events` with their ids. Version 7 UUIDs grow with time, so the trail's inserts land at
/// the end of each id-keyed index instead of on random pages.
fn with_ids(events: Vec<String>) -> Vec<Queued> {
    events
        .into_iter()
        .map(|json| Queued {
            id: uuid::Uuid::now_v7().to_string(),
            json,
        })
        .collect()
}

/// `events` (AuditEvents' JSON, as the middleware queues them) made ready to be written
/// in one transaction, with new ids, as the trail prepares a batch; for measuring the
/// trail's cost without HTTP (`examples/trail_write.rs`).
pub fn prepare(
    backend: crate::store::Backend,
    events: Vec<String>,
) -> Result<PreparedCreates, StoreError> {
    stored::prepare(backend, &with_ids(events))
}

/// Whether the batch whose first event has id `first`, written in one transaction, is
/// stored.
async fn stored(store: &Store, first: Option<&str>) -> bool {
    let Some(first) = first else {
        return true;
    };
    matches!(
        store.read_version("AuditEvent", first, 1).await,
        Ok(Some(_))
    )
}

async fn write(store: &Store, prepared: &PreparedCreates) -> Result<(), StoreError> {
    let mut tx = store
        .begin(WriteContext {
            actor: ACTOR.to_owned(),
            request_id: format!("audit-{}", uuid::Uuid::new_v4()),
        })
        .await?;
    // One statement for the whole batch on PostgreSQL (versions, ledger entries, pointers)
    // and one for its index rows: the trail's cost is per batch, not per event.
    tx.create_prepared(prepared).await?;
    tx.commit().await
}

/// What a request touched beyond what its URL says, as its handler reported it.
#[derive(Debug, Default)]
pub struct Touched {
    /// `Type/id/_history/v` of each version read or written, in order.
    versions: Vec<String>,
    /// Ids of the Patients whose compartments hold what was read or written.
    patients: BTreeSet<String>,
    /// The interaction, when the URL alone cannot tell (`batch` or `transaction`).
    interaction: Option<&'static str>,
}

impl Touched {
    /// A version read or written: named as an entity, its Patients as well.
    pub fn version(&mut self, record: &VersionRecord) {
        self.versions.push(format!(
            "{}/{}/_history/{}",
            record.resource_type, record.id, record.version
        ));
        self.patients_of(record);
    }

    /// The Patients of a version a search returned: a search's event names its query and
    /// these Patients rather than every resource of the page.
    pub fn patients_of(&mut self, record: &VersionRecord) {
        let Some(text) = record.content.as_deref() else {
            return;
        };
        // A Patient names itself: no need to parse it (the Patients its links point to are
        // not part of its record).
        if record.resource_type == "Patient" {
            self.patients.insert(record.id.clone());
            return;
        }
        // Stored versions are valid JSON; one that is not is reported by the read itself.
        if let Ok(resource) = serde_json::from_str::<Value>(text) {
            self.patients
                .extend(fhir::compartment::patient_compartment().patients(&resource));
        }
    }

    /// The interaction, for a request its URL does not identify.
    pub fn interaction(&mut self, code: &'static str) {
        self.interaction = Some(code);
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Touched) {
        self.versions.extend(other.versions);
        self.patients.extend(other.patients);
        self.interaction = other.interaction.or(self.interaction);
    }
}

/// Lets `note` add to what the current request touched; does nothing (and parses nothing)
/// when the trail is off.
pub fn touch(req: &HttpRequest, state: &AppState, note: impl FnOnce(&mut Touched)) {
    if state.audit.is_none() {
        return;
    }
    let mut ext = req.extensions_mut();
    match ext.get_mut::<Touched>() {
        Some(touched) => note(touched),
        None => {
            let mut touched = Touched::default();
            note(&mut touched);
            ext.insert(touched);
        }
    }
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
            let seen = Seen {
                method: &method,
                path: &path,
                query: &query,
                address: address.as_deref(),
                status: res.status().as_u16(),
                principal: ext.get::<Principal>(),
                refused: ext.get::<Refused>().is_some(),
                request_id: request_id.as_deref(),
                touched: ext.get::<Touched>(),
            };
            serde_json::to_string(&event(&seen))
        };
        match event {
            Ok(event) => trail.record(event).await,
            Err(e) => tracing::error!(error = %e, "an AuditEvent could not be serialized"),
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;

    use super::*;

    #[actix_web::test]
    async fn a_batch_stored_despite_a_reported_failure_is_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path(), 2).await.unwrap();
        store.migrate().await.unwrap();
        let seen = |path| Seen {
            method: &Method::GET,
            path,
            query: "",
            address: None,
            status: 200,
            principal: None,
            refused: false,
            request_id: None,
            touched: None,
        };
        let json = |path| serde_json::to_string(&event(&seen(path))).unwrap();
        let batch = with_ids(vec![json("/fhir/Patient/p1"), json("/fhir/Patient/p2")]);
        write(&store, &stored::prepare(store.backend(), &batch).unwrap())
            .await
            .unwrap();
        // As after a commit the database applied but the connection reported as failed:
        // the retry finds the batch stored (its first write fails on the existing ids).
        store_batch(store.clone(), batch.clone(), false).await;
        assert_eq!(store.ledger_pending().await.unwrap(), 2);
        for item in &batch {
            assert!(store
                .read_version("AuditEvent", &item.id, 1)
                .await
                .unwrap()
                .is_some());
        }
    }
}
