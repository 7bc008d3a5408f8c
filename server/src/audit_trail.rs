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
//! Recording stays off the request path: [`middleware`] builds the event (as JSON text)
//! after the response is ready and hands it to a bounded channel; [`AuditWriter::run`]
//! takes whatever has queued (up to [`BATCH`], [`WRITERS`] batches at once) and stores
//! each batch in one transaction through the ordinary store write path, so AuditEvents
//! are versioned, indexed for search and notarized in the ledger like every resource. A
//! batch is made ready from the events' own types ([`stored`]), which gives what the
//! generic preparation of a parsed resource would, for a fraction of the CPU. Nothing is dropped: when the channel is full the request waits for
//! room; a failed batch is retried; [`AuditTrail::shutdown`] (after the HTTP server has
//! stopped) writes what is still queued before the process exits. The API refuses to
//! create, update or delete AuditEvents for everyone ([`crate::auth`]).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use base64::Engine;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Notify};

use crate::auth::{Principal, Refused};
use crate::http::request_id::RequestId;
use crate::http::AppState;
use crate::store::{PreparedCreates, Store, StoreError, VersionRecord, WriteContext};

mod stored;

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
    touched: Option<&'a Touched>,
}

/// The AuditEvent for one request, as a typed value that serializes to its JSON: the
/// middleware sends that text, built with a handful of allocations, instead of a
/// `serde_json::Value` (a map allocation and a hash per member, all freed on another
/// thread); the trail parses it where it prepares the batch.
fn event<'a>(seen: &'a Seen<'a>) -> Event<'a> {
    let mut addressed = classify(seen.method, seen.path);
    if let Some(code) = seen.touched.and_then(|t| t.interaction) {
        addressed.interaction = code;
    }
    let outcome = match seen.status {
        s if s < 400 => "0",
        s if s < 500 => "4",
        _ => "8",
    };
    let mut agent = Agent {
        requestor: true,
        type_: Concept {
            coding: [Coding::new(
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "IRCP",
                Some("information recipient"),
            )],
        },
        who: Who {
            display: Some("anonymous".into()),
            ..Who::default()
        },
        alt_id: None,
        role: None,
        network: seen.address.map(|address| Network {
            address: address.into(),
            type_: "2".into(),
        }),
    };
    if let Some(p) = seen.principal {
        agent.who = match &p.fhir_user {
            Some(u) => Who {
                reference: Some(u.as_str().into()),
                ..Who::default()
            },
            None => Who {
                identifier: Some(Identifier {
                    value: p.subject.as_str().into(),
                }),
                display: Some(p.subject.as_str().into()),
                ..Who::default()
            },
        };
        // Only the token's subject is known of the user (`name` would repeat it, and
        // every element costs index rows on each event).
        agent.alt_id = Some(p.subject.as_str().into());
        agent.role = p.role.map(|role| {
            [Text {
                text: role.as_str().into(),
            }]
        });
    }
    let object = |reference: String| Entity {
        what: Some(Reference {
            reference: reference.into(),
        }),
        type_: Coding::new(ENTITY_TYPE, "2", Some("System Object")),
        role: None,
        query: None,
    };
    let mut entity = Vec::new();
    // The versions the handler read or wrote say more than the URL (a create's new id, a
    // transaction's entries); the URL's target stands in when there are none (a denial).
    match seen.touched.filter(|t| !t.versions.is_empty()) {
        Some(t) => entity.extend(t.versions.iter().cloned().map(object)),
        None => entity.extend(addressed.target.clone().map(object)),
    }
    let mut patients: BTreeSet<&str> = BTreeSet::new();
    patients.extend(seen.principal.and_then(|p| p.patient.as_deref()));
    patients.extend(addressed.patient.as_deref());
    if let Some(t) = seen.touched {
        patients.extend(t.patients.iter().map(String::as_str));
    }
    entity.extend(patients.into_iter().map(|id| Entity {
        what: Some(Reference {
            reference: format!("Patient/{id}").into(),
        }),
        type_: Coding::new(ENTITY_TYPE, "1", Some("Person")),
        role: Some(Coding::new(OBJECT_ROLE, "1", Some("Patient"))),
        query: None,
    }));
    if !seen.query.is_empty() {
        entity.push(Entity {
            what: None,
            type_: Coding::new(ENTITY_TYPE, "2", Some("System Object")),
            role: Some(Coding::new(OBJECT_ROLE, "24", Some("Query"))),
            query: Some(
                base64::engine::general_purpose::STANDARD
                    .encode(seen.query)
                    .into(),
            ),
        });
    }
    let mut description = format!("{} {} answered {}", seen.method, seen.path, seen.status);
    if seen.refused {
        description.push_str(" (access token refused)");
    } else if seen.status == 403 {
        description.push_str(" (denied by the access policy)");
    }
    if let Some(id) = seen.request_id {
        description.push_str("; request ");
        description.push_str(id);
    }
    let system = if addressed.interaction.starts_with("ledger-") {
        "urn:fhir-notary:interaction"
    } else {
        "http://hl7.org/fhir/restful-interaction"
    };
    Event {
        resource_type: "AuditEvent".into(),
        type_: Coding::new(
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            Some("RESTful Operation"),
        ),
        subtype: [Coding::new(system, addressed.interaction, None)],
        action: addressed.action.into(),
        recorded: fhir::primitives::format_instant(OffsetDateTime::now_utc()).into(),
        outcome: outcome.into(),
        outcome_desc: description.into(),
        agent: [agent],
        source: Source {
            observer: Display {
                display: "FHIR Notary".into(),
            },
            type_: [Coding::new(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                Some("Application Server"),
            )],
        },
        entity,
    }
}

const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// An AuditEvent as [`event`] makes them. Serialized as the middleware sends it; read
/// back, borrowing from that text, where the trail prepares a batch ([`stored`]).
///
/// Every struct below lists its members in name order (after `resourceType` here): the
/// canonical form a content hash is computed from (RFC 8785) orders members by name, so
/// [`stored`] writes that form straight from these members as serde writes them. The test
/// `stored::tests::typed_preparation_matches_the_generic_one` checks it over every kind of
/// event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow)]
    resource_type: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    agent: [Agent<'a>; 1],
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    entity: Vec<Entity<'a>>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow)]
    outcome_desc: Cow<'a, str>,
    #[serde(borrow)]
    recorded: Cow<'a, str>,
    #[serde(borrow)]
    source: Source<'a>,
    #[serde(borrow)]
    subtype: [Coding<'a>; 1],
    #[serde(borrow, rename = "type")]
    type_: Coding<'a>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Coding<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    display: Option<Cow<'a, str>>,
    #[serde(borrow)]
    system: Cow<'a, str>,
}

impl<'a> Coding<'a> {
    fn new(system: &'a str, code: &'a str, display: Option<&'a str>) -> Self {
        Coding {
            code: code.into(),
            display: display.map(Cow::Borrowed),
            system: system.into(),
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Concept<'a> {
    #[serde(borrow)]
    coding: [Coding<'a>; 1],
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct Agent<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    alt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
    requestor: bool,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    role: Option<[Text<'a>; 1]>,
    #[serde(borrow, rename = "type")]
    type_: Concept<'a>,
    #[serde(borrow)]
    who: Who<'a>,
}

/// `agent.who`: a reference (the token's `fhirUser`), an identifier (its `sub`) or only
/// a display (no token).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Who<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    display: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    reference: Option<Cow<'a, str>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Identifier<'a> {
    #[serde(borrow)]
    value: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Text<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Network<'a> {
    #[serde(borrow)]
    address: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    type_: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Source<'a> {
    #[serde(borrow)]
    observer: Display<'a>,
    #[serde(borrow, rename = "type")]
    type_: [Coding<'a>; 1],
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Display<'a> {
    #[serde(borrow)]
    display: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entity<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    query: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(borrow, rename = "type")]
    type_: Coding<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    what: Option<Reference<'a>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Reference<'a> {
    #[serde(borrow)]
    reference: Cow<'a, str>,
}

/// What a request's method and path address.
#[derive(Debug, PartialEq, Eq)]
struct Addressed {
    /// A `restful-interaction` code, or `ledger-read`/`ledger-proof`.
    interaction: &'static str,
    /// The AuditEvent action code.
    action: &'static str,
    /// The resource (or type) addressed.
    target: Option<String>,
    /// The Patient the path names (a Patient's own URL, or a compartment search).
    patient: Option<String>,
}

/// The interaction, action, target and Patient of a request, from its method and path.
fn classify(method: &Method, path: &str) -> Addressed {
    let addressed = |interaction, action, target: Option<String>| Addressed {
        interaction,
        action,
        patient: target
            .as_deref()
            .and_then(|t| t.strip_prefix("Patient/"))
            .and_then(|rest| rest.split('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        target,
    };
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
        return addressed(code, "R", target);
    }
    let segs: Vec<&str> = path
        .strip_prefix("/fhir")
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if segs.iter().any(|s| s.starts_with('$')) {
        return addressed("operation", "E", None);
    }
    let is_get = method == Method::GET;
    let (code, action, target) = match (segs.as_slice(), method) {
        ([], m) if m == Method::POST => ("transaction", "E", None),
        ([], _) | (["_search"], _) => ("search-system", "E", None),
        (["_history"], _) => ("history-system", "R", None),
        ([t], m) if m == Method::POST => ("create", "C", Some((*t).to_owned())),
        ([t], m) if m == Method::PUT => ("update", "U", Some((*t).to_owned())),
        ([t], m) if m == Method::PATCH => ("patch", "U", Some((*t).to_owned())),
        ([t], m) if m == Method::DELETE => ("delete", "D", Some((*t).to_owned())),
        ([t], _) => ("search-type", "E", Some((*t).to_owned())),
        ([t, "_search"], _) => ("search-type", "E", Some((*t).to_owned())),
        ([t, "_history"], _) => ("history-type", "R", Some((*t).to_owned())),
        ([t, id], m) if m == Method::PUT => ("update", "U", Some(format!("{t}/{id}"))),
        ([t, id], m) if m == Method::PATCH => ("patch", "U", Some(format!("{t}/{id}"))),
        ([t, id], m) if m == Method::DELETE => ("delete", "D", Some(format!("{t}/{id}"))),
        ([t, id], _) if is_get => ("read", "R", Some(format!("{t}/{id}"))),
        ([t, id, "_history"], _) => ("history-instance", "R", Some(format!("{t}/{id}"))),
        ([t, id, "_history", v], _) => ("vread", "R", Some(format!("{t}/{id}/_history/{v}"))),
        (["Patient", id, t], _) if is_get => {
            return Addressed {
                interaction: "search-type",
                action: "E",
                target: Some((*t).to_owned()),
                patient: Some((*id).to_owned()),
            };
        }
        _ => ("operation", "E", None),
    };
    addressed(code, action, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            let e = serde_json::to_value(event(&Seen {
                method: &method,
                path,
                query: "a=b",
                address: Some("127.0.0.1"),
                status,
                principal: None,
                refused: status == 401,
                request_id: Some("r1"),
                touched: None,
            }))
            .unwrap();
            fhir::validate::validate_resource(fhir::definitions::r4(), &e)
                .unwrap_or_else(|err| panic!("{path}: {err:?}\n{e}"));
        }
    }

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

    #[test]
    fn touched_versions_and_patients_become_entities() {
        let record = |ty: &str, id: &str, content: Value| VersionRecord {
            seq: 1,
            resource_type: ty.to_owned(),
            id: id.to_owned(),
            version: 2,
            method: crate::store::WriteMethod::Update,
            last_updated: OffsetDateTime::UNIX_EPOCH,
            content: Some(content.to_string()),
        };
        let mut touched = Touched::default();
        touched.version(&record(
            "Observation",
            "o1",
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"text": "x"}, "subject": {"reference": "Patient/p9"}}),
        ));
        touched.patients_of(&record(
            "Patient",
            "p3",
            json!({"resourceType": "Patient", "id": "p3"}),
        ));
        touched.interaction("batch");
        let e = serde_json::to_value(event(&Seen {
            method: &Method::POST,
            path: "/fhir",
            query: "",
            address: None,
            status: 200,
            principal: None,
            refused: false,
            request_id: None,
            touched: Some(&touched),
        }))
        .unwrap();
        fhir::validate::validate_resource(fhir::definitions::r4(), &e)
            .unwrap_or_else(|err| panic!("{err:?}\n{e}"));
        assert_eq!(e["subtype"][0]["code"], "batch");
        let named: Vec<&str> = e["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["what"]["reference"].as_str())
            .collect();
        assert_eq!(
            named,
            ["Observation/o1/_history/2", "Patient/p3", "Patient/p9"]
        );
    }

    #[test]
    fn requests_are_classified() {
        let a = classify(&Method::GET, "/fhir/Patient/p1/_history/3");
        assert_eq!((a.interaction, a.action), ("vread", "R"));
        assert_eq!(a.target.as_deref(), Some("Patient/p1/_history/3"));
        assert_eq!(a.patient.as_deref(), Some("p1"));
        let a = classify(&Method::POST, "/fhir/Patient/_search");
        assert_eq!(
            (a.interaction, a.action, a.target.as_deref(), a.patient),
            ("search-type", "E", Some("Patient"), None)
        );
        let a = classify(&Method::GET, "/fhir/Patient/p7/Observation");
        assert_eq!(
            (a.interaction, a.target.as_deref(), a.patient.as_deref()),
            ("search-type", Some("Observation"), Some("p7"))
        );
        let a = classify(&Method::POST, "/fhir");
        assert_eq!((a.interaction, a.target), ("transaction", None));
        let a = classify(&Method::PUT, "/fhir/Patient");
        assert_eq!((a.interaction, a.action), ("update", "U"));
        let a = classify(&Method::GET, "/fhir/Patient/$everything");
        assert_eq!(a.interaction, "operation");
        let a = classify(&Method::POST, "/fhir/$validate");
        assert_eq!((a.interaction, a.target), ("operation", None));
        let a = classify(&Method::GET, "/ledger/blocks/3");
        assert_eq!((a.interaction, a.target), ("ledger-read", None));
    }
}
