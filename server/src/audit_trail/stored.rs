//! The trail's events made ready to store straight from their typed form: the stored
//! text, the content hash and the index rows the generic path
//! ([`PreparedResource::new`]) makes from a parsed resource, without building a
//! `serde_json::Value`, canonicalizing it or evaluating FHIRPath over it.
//!
//! The generic path spent about 50 µs of CPU per event, most of it allocating and freeing
//! the JSON tree, its canonical copy and the FHIRPath results; the trail prepares one event
//! per request, so that was a fifth of an audited read's cost. Here an event is read back
//! borrowing from the text the middleware sent, each member is serialized once, and the
//! stored and canonical texts are those pieces in two orders.
//!
//! Two things stand in for the generic path and are checked against it by the tests below,
//! over every kind of event [`super::event`] makes: the event types list their members in
//! name order (so their serialization is already canonical), and [`index_values`] gives
//! each search parameter's values from the typed members.

use std::ops::Range;

use fhir::search::{
    literal_reference, normalize, DateRange, IndexValue, ReferenceValue, StringValue, TokenValue,
};
use time::OffsetDateTime;

use super::event::{Coding, Event, Who};
use super::Queued;
use crate::store::{Backend, IndexRows, NewResource, PreparedCreates, PreparedResource};
use crate::store::{StoreError, StoreResult};

/// `batch` made ready to write in one transaction on `backend`.
pub(super) fn prepare(backend: Backend, batch: &[Queued]) -> StoreResult<PreparedCreates> {
    PreparedCreates::build(backend, |last_updated| {
        let stamp = to_json(&fhir::primitives::format_instant(last_updated))?;
        batch
            .iter()
            .map(|queued| prepare_one(queued, &stamp, last_updated))
            .collect()
    })
}

/// `queued` made ready; `stamp` is `last_updated` as a JSON string.
fn prepare_one(
    queued: &Queued,
    stamp: &str,
    last_updated: OffsetDateTime,
) -> StoreResult<PreparedResource> {
    match serde_json::from_str::<Event<'_>>(&queued.json) {
        Ok(event) if event.resource_type == "AuditEvent" => typed(&event, &queued.id, stamp),
        // Not an event as `event()` writes them (the types deny unknown members, so
        // nothing would be lost reading one as such): stored like any other resource.
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "an AuditEvent is not in the trail's form; storing it as it is");
            }
            let resource = serde_json::from_str(&queued.json)
                .map_err(|e| StoreError::Corrupt(format!("an AuditEvent does not parse: {e}")))?;
            PreparedResource::new(
                &mut NewResource {
                    resource_type: "AuditEvent".to_owned(),
                    id: queued.id.clone(),
                    resource,
                },
                last_updated,
            )
        }
    }
}

/// `event` stored as `AuditEvent/{id}` version 1, last updated at `stamp` (a JSON
/// string).
fn typed(event: &Event<'_>, id: &str, stamp: &str) -> StoreResult<PreparedResource> {
    let mut members = Members::default();
    members.add("action", &event.action)?;
    members.add("agent", &event.agent)?;
    if !event.entity.is_empty() {
        members.add("entity", &event.entity)?;
    }
    members.add("outcome", &event.outcome)?;
    members.add("outcomeDesc", &event.outcome_desc)?;
    members.add("recorded", &event.recorded)?;
    members.add("source", &event.source)?;
    members.add("subtype", &event.subtype)?;
    members.add("type", &event.type_)?;
    let id_json = to_json(id)?;
    // As `stamp()` writes a resource: `resourceType`, `id` and `meta` first.
    let content = members.object(format!(
        "{{\"resourceType\":\"AuditEvent\",\"id\":{id_json},\"meta\":{{\"versionId\":\"1\",\"lastUpdated\":{stamp}}}"
    ));
    // Canonical: every member, in name order.
    members.raw("id", &id_json);
    members.raw(
        "meta",
        &format!("{{\"lastUpdated\":{stamp},\"versionId\":\"1\"}}"),
    );
    members.raw("resourceType", "\"AuditEvent\"");
    members.sort();
    let canonical = members.object(String::from("{"));
    Ok(PreparedResource {
        resource_type: "AuditEvent".to_owned(),
        id: id.to_owned(),
        hash: ledger::canonical::content_hash_of_canonical(&canonical),
        content,
        index: IndexRows::collect(fhir::search::r4_search(), "AuditEvent", id, |param| {
            index_values(event, &param.code)
        }),
    })
}

fn to_json(value: &(impl serde::Serialize + ?Sized)) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("an AuditEvent does not serialize: {e}")))
}

/// An object's members, each serialized once into one buffer.
#[derive(Default)]
struct Members {
    text: String,
    spans: Vec<(&'static str, Range<usize>)>,
}

impl Members {
    fn add(
        &mut self,
        name: &'static str,
        value: &(impl serde::Serialize + ?Sized),
    ) -> StoreResult<()> {
        self.raw(name, &to_json(value)?);
        Ok(())
    }

    fn raw(&mut self, name: &'static str, json: &str) {
        let start = self.text.len();
        self.text.push_str(json);
        self.spans.push((name, start..self.text.len()));
    }

    /// In name order; member names here are ASCII, where RFC 8785's UTF-16 order is
    /// byte order.
    fn sort(&mut self) {
        self.spans.sort_by_key(|(name, _)| *name);
    }

    /// `head` (an object's opening, perhaps with members already) followed by the
    /// members in their current order and the closing brace.
    fn object(&self, mut out: String) -> String {
        out.reserve(self.text.len() + 16 * self.spans.len());
        let mut first = out.ends_with('{');
        for (name, span) in &self.spans {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            out.push_str(&self.text[span.clone()]);
        }
        out.push('}');
        out
    }
}

/// The values of the AuditEvent search parameter `code` in `event`, as
/// `fhir::search::extract_param` gives them for the event's JSON. Parameters on elements
/// the trail never writes (`agent-name`, `entity-name`, `policy`, `site`, `_tag`, …) have
/// none; `source` has none because `source.observer` is a display only.
fn index_values(event: &Event<'_>, code: &str) -> Vec<IndexValue> {
    let agents = || event.agent.iter();
    let entities = || event.entity.iter();
    match code {
        "action" => vec![code_token(&event.action)],
        "address" => agents()
            .filter_map(|a| a.network.as_ref())
            .map(|n| IndexValue::String(StringValue::new(&n.address)))
            .collect(),
        "agent" => agents().filter_map(|a| who(&a.who)).collect(),
        "agent-role" => agents()
            .flat_map(|a| a.role.iter().flatten())
            .map(|role| {
                IndexValue::Token(TokenValue {
                    text: Some(normalize(&role.text)),
                    ..TokenValue::default()
                })
            })
            .collect(),
        "altid" => agents()
            .filter_map(|a| a.alt_id.as_deref())
            .map(code_token)
            .collect(),
        "date" => fhir::primitives::parse_date_time_range(&event.recorded)
            .map(|(start, end)| {
                IndexValue::Date(DateRange {
                    start: Some(start),
                    end: Some(end),
                })
            })
            .into_iter()
            .collect(),
        "entity" => entities()
            .filter_map(|e| e.what.as_ref())
            .map(|what| IndexValue::Reference(literal_reference(&what.reference)))
            .collect(),
        "entity-role" => entities()
            .filter_map(|e| e.role.as_ref())
            .map(coding_token)
            .collect(),
        "entity-type" => entities().map(|e| coding_token(&e.type_)).collect(),
        "outcome" => vec![code_token(&event.outcome)],
        "subtype" => event.subtype.iter().map(coding_token).collect(),
        "type" => vec![coding_token(&event.type_)],
        _ => Vec::new(),
    }
}

fn code_token(code: &str) -> IndexValue {
    IndexValue::Token(TokenValue {
        code: Some(code.to_owned()),
        ..TokenValue::default()
    })
}

fn coding_token(coding: &Coding<'_>) -> IndexValue {
    IndexValue::Token(TokenValue {
        system: Some(coding.system.to_string()),
        code: Some(coding.code.to_string()),
        text: coding.display.as_deref().map(normalize),
        identifier_type: Vec::new(),
    })
}

/// `agent.who` as a reference value: its literal reference, or its identifier; none for a
/// display alone.
fn who(who: &Who<'_>) -> Option<IndexValue> {
    let mut r = who
        .reference
        .as_deref()
        .map(literal_reference)
        .unwrap_or_default();
    if let Some(identifier) = &who.identifier {
        r.identifier = Some((None, Some(identifier.value.to_string())));
    }
    (r != ReferenceValue::default()).then_some(IndexValue::Reference(r))
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;
    use serde_json::Value;

    use super::super::event::{event, Seen};
    use super::super::{with_ids, Touched};
    use super::*;
    use crate::auth::{Auth, MintRequest, Principal, Role};
    use crate::config::AuthArgs;
    use crate::store::{VersionRecord, WriteMethod};

    /// Principals from real dev-mode tokens: `(role, sub, patient, fhirUser)`.
    async fn principals(specs: &[(Role, &str, Option<&str>, Option<&str>)]) -> Vec<Principal> {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::from_args(&AuthArgs::dev(), dir.path()).await.unwrap();
        let mut out = Vec::new();
        for (role, subject, patient, fhir_user) in specs {
            let token = auth
                .mint(&MintRequest {
                    role: *role,
                    subject: (*subject).to_owned(),
                    patient: patient.map(str::to_owned),
                    fhir_user: fhir_user.map(str::to_owned),
                    scope: None,
                    ttl: std::time::Duration::from_secs(60),
                })
                .unwrap();
            out.push(
                auth.authenticate(Some(&format!("Bearer {token}")))
                    .await
                    .unwrap(),
            );
        }
        out
    }

    fn record(resource_type: &str, id: &str, version: i64, content: Value) -> VersionRecord {
        VersionRecord {
            seq: 1,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version,
            method: WriteMethod::Update,
            last_updated: OffsetDateTime::UNIX_EPOCH,
            content: Some(content.to_string()),
        }
    }

    /// The JSON of one event of every kind the middleware records.
    async fn events() -> Vec<String> {
        let p = principals(&[
            (Role::Admin, "admin", None, None),
            (Role::Patient, "pat-1", Some("p1"), Some("Patient/p1")),
            (
                Role::Practitioner,
                "dr-7",
                None,
                Some("https://ehr.example/fhir/Practitioner/7"),
            ),
            (Role::Auditor, "Zoë \"the\" \\auditor\\ \u{7}\t", None, None),
            (
                Role::System,
                "client-9",
                None,
                Some("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            ),
        ])
        .await;
        let observation = |id: &str, patient: &str| {
            serde_json::json!({"resourceType": "Observation", "id": id, "status": "final",
                "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}})
        };
        let mut read = Touched::default();
        read.version(&record(
            "Patient",
            "p1",
            1,
            serde_json::json!({"resourceType": "Patient", "id": "p1"}),
        ));
        let mut search = Touched::default();
        search.patients_of(&record("Observation", "o1", 1, observation("o1", "p1")));
        search.patients_of(&record("Observation", "o2", 3, observation("o2", "p2")));
        let mut transaction = Touched::default();
        transaction.version(&record("Observation", "o1", 2, observation("o1", "p1")));
        transaction.version(&record(
            "Patient",
            "p3",
            1,
            serde_json::json!({"resourceType": "Patient", "id": "p3"}),
        ));
        transaction.version(&record("Observation", "o9", 1, observation("o9", "p3")));
        transaction.interaction("transaction");
        let seen = |method: &'static Method,
                    path: &'static str,
                    query: &'static str,
                    status: u16,
                    principal: Option<&'static Principal>,
                    touched: Option<&'static Touched>| Seen {
            method,
            path,
            query,
            address: principal.map(|_| "127.0.0.1"),
            status,
            principal,
            refused: status == 401,
            request_id: principal.map(|_| "0f8a-request"),
            touched,
        };
        let p: &'static [Principal] = Vec::leak(p);
        let (read, search, transaction): (&'static Touched, &'static Touched, &'static Touched) = (
            Box::leak(Box::new(read)),
            Box::leak(Box::new(search)),
            Box::leak(Box::new(transaction)),
        );
        static GET: Method = Method::GET;
        static POST: Method = Method::POST;
        static DELETE: Method = Method::DELETE;
        [
            seen(&GET, "/fhir/Patient/p1", "", 200, Some(&p[0]), Some(read)),
            seen(
                &GET,
                "/fhir/Observation",
                "subject=Patient/p1&code=x&_count=2",
                200,
                Some(&p[1]),
                Some(search),
            ),
            seen(
                &GET,
                "/fhir/Patient/p1/Observation",
                "",
                200,
                Some(&p[1]),
                Some(search),
            ),
            seen(&POST, "/fhir", "", 200, Some(&p[2]), Some(transaction)),
            seen(&GET, "/fhir/Observation", "", 403, Some(&p[1]), None),
            seen(&GET, "/fhir/Patient/p1", "", 401, None, None),
            seen(&GET, "/fhir/Patient", "name=%22x%22", 200, None, None),
            seen(
                &GET,
                "/ledger/proof/Patient/p1/1",
                "",
                200,
                Some(&p[3]),
                None,
            ),
            seen(&GET, "/ledger/blocks", "", 200, Some(&p[3]), None),
            seen(&DELETE, "/fhir/Observation/o1", "", 204, Some(&p[4]), None),
            seen(
                &GET,
                "/fhir/Observation/o1/_history/2",
                "",
                200,
                Some(&p[4]),
                None,
            ),
        ]
        .iter()
        .map(|s| serde_json::to_string(&event(s)).unwrap())
        .collect()
    }

    #[actix_web::test]
    async fn typed_preparation_matches_the_generic_one() {
        let batch = with_ids(events().await);
        let now = OffsetDateTime::now_utc();
        let stamp = to_json(&fhir::primitives::format_instant(now)).unwrap();
        for queued in &batch {
            let event: Event<'_> = serde_json::from_str(&queued.json)
                .unwrap_or_else(|e| panic!("{e}: {}", queued.json));
            let typed = typed(&event, &queued.id, &stamp).unwrap();
            let generic = PreparedResource::new(
                &mut NewResource {
                    resource_type: "AuditEvent".into(),
                    id: queued.id.clone(),
                    resource: serde_json::from_str(&queued.json).unwrap(),
                },
                now,
            )
            .unwrap();
            assert_eq!(typed.content, generic.content);
            assert_eq!(typed.hash, generic.hash, "{}", typed.content);
            assert_eq!(typed.index, generic.index, "{}", typed.content);
            assert!(typed.index.len() >= 8, "{:?}", typed.index);
        }
    }

    #[test]
    fn an_event_in_another_form_is_stored_as_it_is() {
        let json = r#"{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"recorded":"2026-12-06T10:00:00Z","agent":[{"requestor":true,"name":"n"}],"source":{"observer":{"display":"x"}}}"#;
        let batch = with_ids(vec![json.to_owned()]);
        let now = OffsetDateTime::now_utc();
        let stamp = to_json(&fhir::primitives::format_instant(now)).unwrap();
        let prepared = prepare_one(&batch[0], &stamp, now).unwrap();
        let stored: Value = serde_json::from_str(&prepared.content).unwrap();
        assert_eq!(stored["agent"][0]["name"], "n");
        assert_eq!(stored["id"], batch[0].id.as_str());
    }
}
