//! The AuditEvent trail's cost in the store alone, without HTTP: prepares (from their JSON,
//! as the middleware queues them) and writes batches of AuditEvents shaped like the ones a
//! read records, as the trail does, one batch at a time, and prints the time per event and
//! the percentiles of a batch's write.
//!
//!     cargo run --release -p fhir-notary --example trail_write -- [DATABASE_URL] [BATCHES]
//!
//! Without a URL it writes a fresh SQLite file in a temporary directory; with one it
//! migrates that database (use an empty one) and writes into it. `BATCHES` (default 100)
//! batches of [`server::audit_trail::BATCH`] events.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server::audit_trail::BATCH;
use server::store::{Store, WriteContext};

/// An AuditEvent as the trail records one for `GET /fhir/Patient/{id}` by an admin token.
fn read_event(patient: &str, recorded: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": recorded,
        "outcome": "0",
        "outcomeDesc": format!(
            "GET /fhir/Patient/{patient} answered 200; request {}",
            uuid::Uuid::new_v4()
        ),
        "agent": [{
            "requestor": true,
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient"
            }]},
            "who": {"identifier": {"value": "admin"}, "display": "admin"},
            "altId": "admin",
            "role": [{"text": "admin"}],
            "network": {"address": "127.0.0.1", "type": "2"}
        }],
        "source": {
            "observer": {"display": "FHIR Notary"},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server"
            }]
        },
        "entity": [
            {
                "what": {"reference": format!("Patient/{patient}/_history/1")},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object"
                }
            },
            {
                "what": {"reference": format!("Patient/{patient}")},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person"
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient"
                }
            }
        ]
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().filter(|s| !s.is_empty());
    let batches: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("BATCHES must be a number, not {n:?}"))?,
        None => 100,
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(url.as_deref(), dir.path(), 4).await?;
    store.migrate().await?;
    println!(
        "{} batches of {BATCH} read AuditEvents into {}",
        batches,
        url.as_deref().unwrap_or("a fresh SQLite file")
    );

    let (mut prepare, mut write) = (Duration::ZERO, Duration::ZERO);
    let mut writes = Vec::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let recorded = fhir::primitives::format_instant(time::OffsetDateTime::now_utc());
        let batch: Vec<String> = (0..BATCH)
            .map(|_| read_event(&uuid::Uuid::new_v4().to_string(), &recorded).to_string())
            .collect();
        let t = Instant::now();
        let prepared = server::audit_trail::prepare(store.backend(), batch)?;
        prepare += t.elapsed();
        let t = Instant::now();
        let mut tx = store
            .begin(WriteContext {
                actor: server::audit_trail::ACTOR.into(),
                request_id: format!("trail-write-{b}"),
            })
            .await?;
        tx.create_prepared(&prepared).await?;
        tx.commit().await?;
        let took = t.elapsed();
        write += took;
        writes.push(took);
    }
    let elapsed = started.elapsed();
    let events = (batches * BATCH) as f64;
    writes.sort();
    println!(
        "{:.0} events/s; per event: prepare {:.1} µs, write {:.1} µs",
        events / elapsed.as_secs_f64(),
        prepare.as_secs_f64() * 1e6 / events,
        write.as_secs_f64() * 1e6 / events,
    );
    println!(
        "batch write ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&writes, 0.50),
        percentile(&writes, 0.95),
        percentile(&writes, 0.99),
        percentile(&writes, 1.0),
    );
    Ok(())
}
