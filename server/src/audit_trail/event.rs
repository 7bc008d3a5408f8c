//! What an AuditEvent of the trail says: [`event`] builds one from what the middleware
//! saw of a request ([`Seen`]: method, path, query, status, the token's principal, what
//! the handler touched), classifying the request by its method and path. The types below
//! serialize to the AuditEvent's JSON, which the middleware queues, and read it back
//! where the trail prepares a batch ([`super::stored`]).

use std::borrow::Cow;
use std::collections::BTreeSet;

use actix_web::http::Method;
use base64::Engine;
use time::OffsetDateTime;

use super::Touched;
use crate::auth::Principal;

/// What the middleware saw of one request.
pub(super) struct Seen<'a> {
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) query: &'a str,
    pub(super) address: Option<&'a str>,
    pub(super) status: u16,
    pub(super) principal: Option<&'a Principal>,
    pub(super) refused: bool,
    pub(super) request_id: Option<&'a str>,
    pub(super) touched: Option<&'a Touched>,
}

/// The AuditEvent for one request, as a typed value that serializes to its JSON: the
/// middleware sends that text, built with a handful of allocations, instead of a
/// `serde_json::Value` (a map allocation and a hash per member, all freed on another
/// thread); the trail parses it where it prepares the batch.
pub(super) fn event<'a>(seen: &'a Seen<'a>) -> Event<'a> {
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
/// back, borrowing from that text, where the trail prepares a batch ([`super::stored`]).
///
/// Every struct below lists its members in name order (after `resourceType` here): the
/// canonical form a content hash is computed from (RFC 8785) orders members by name, so
/// [`super::stored`] writes that form straight from these members as serde writes them.
/// The test `stored::tests::typed_preparation_matches_the_generic_one` checks it over
/// every kind of event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event<'a> {
    #[serde(borrow)]
    pub(super) resource_type: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) action: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) agent: [Agent<'a>; 1],
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub(super) entity: Vec<Entity<'a>>,
    #[serde(borrow)]
    pub(super) outcome: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) outcome_desc: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) recorded: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) source: Source<'a>,
    #[serde(borrow)]
    pub(super) subtype: [Coding<'a>; 1],
    #[serde(borrow, rename = "type")]
    pub(super) type_: Coding<'a>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Coding<'a> {
    #[serde(borrow)]
    pub(super) code: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) display: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) system: Cow<'a, str>,
}

impl<'a> Coding<'a> {
    pub(super) fn new(system: &'a str, code: &'a str, display: Option<&'a str>) -> Self {
        Coding {
            code: code.into(),
            display: display.map(Cow::Borrowed),
            system: system.into(),
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Concept<'a> {
    #[serde(borrow)]
    pub(super) coding: [Coding<'a>; 1],
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub(super) struct Agent<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) alt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) network: Option<Network<'a>>,
    pub(super) requestor: bool,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<[Text<'a>; 1]>,
    #[serde(borrow, rename = "type")]
    pub(super) type_: Concept<'a>,
    #[serde(borrow)]
    pub(super) who: Who<'a>,
}

/// `agent.who`: a reference (the token's `fhirUser`), an identifier (its `sub`) or only
/// a display (no token).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Who<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) display: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) identifier: Option<Identifier<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) reference: Option<Cow<'a, str>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Identifier<'a> {
    #[serde(borrow)]
    pub(super) value: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Text<'a> {
    #[serde(borrow)]
    pub(super) text: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Network<'a> {
    #[serde(borrow)]
    pub(super) address: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    pub(super) type_: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Source<'a> {
    #[serde(borrow)]
    pub(super) observer: Display<'a>,
    #[serde(borrow, rename = "type")]
    pub(super) type_: [Coding<'a>; 1],
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Display<'a> {
    #[serde(borrow)]
    pub(super) display: Cow<'a, str>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entity<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) query: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<Coding<'a>>,
    #[serde(borrow, rename = "type")]
    pub(super) type_: Coding<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(super) what: Option<Reference<'a>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reference<'a> {
    #[serde(borrow)]
    pub(super) reference: Cow<'a, str>,
}

/// What a request's method and path address.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Addressed {
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
    use serde_json::{json, Value};

    use super::*;
    use crate::store::VersionRecord;

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
