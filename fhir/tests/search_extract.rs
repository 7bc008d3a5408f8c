//! Index extraction over real data: the Synthea fixture extracts without errors, and chosen
//! resources give the values written out below (not computed by the code under test).

use std::collections::HashMap;
use std::time::Instant;

use fhir::search::{
    extract, r4_search, DateRange, Decimal, IndexValue, QuantityValue, ReferenceValue, StringValue,
    TokenValue,
};
use serde_json::{json, Value};
use time::macros::datetime;

/// The fixture's resources, with `urn:uuid:` references rewritten to `Type/id` as the
/// server's transaction processing does before storing them.
fn synthea() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/synthea-bundle.json"
    ))
    .unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let mut text = text;
    for e in entries {
        let (full, r) = (e["fullUrl"].as_str().unwrap(), &e["resource"]);
        let local = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        text = text.replace(&format!("\"{full}\""), &format!("\"{local}\""));
    }
    let bundle: Value = serde_json::from_str(&text).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn values(resource: &Value) -> HashMap<&'static str, Vec<IndexValue>> {
    let mut out: HashMap<&str, Vec<IndexValue>> = HashMap::new();
    for e in extract(r4_search(), resource).unwrap() {
        out.entry(e.param).or_default().push(e.value);
    }
    out
}

fn string(exact: &str, normalized: &str) -> IndexValue {
    IndexValue::String(StringValue {
        exact: exact.into(),
        normalized: normalized.into(),
    })
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token(TokenValue {
        system: system.map(Into::into),
        code: code.map(Into::into),
        text: text.map(Into::into),
        identifier_type: vec![],
    })
}

fn reference(ty: &str, id: &str) -> IndexValue {
    IndexValue::Reference(ReferenceValue {
        target_type: Some(ty.into()),
        id: Some(id.into()),
        ..ReferenceValue::default()
    })
}

fn quantity(text: &str, value: f64, unit: &str) -> IndexValue {
    IndexValue::Quantity(QuantityValue {
        value: Decimal {
            text: text.into(),
            value,
        },
        comparator: None,
        system: Some("http://unitsofmeasure.org".into()),
        code: Some(unit.into()),
        unit: Some(unit.into()),
    })
}

fn loinc(code: &str, display: &str) -> IndexValue {
    token(Some("http://loinc.org"), Some(code), Some(display))
}

#[test]
fn every_synthea_resource_extracts() {
    let resources = synthea();
    assert_eq!(resources.len(), 66);
    let mut total = 0;
    for r in &resources {
        let entries = extract(r4_search(), r).unwrap_or_else(|e| panic!("{}: {e}", r["id"]));
        assert!(entries.iter().any(|e| e.param == "_id"), "{}", r["id"]);
        total += entries.len();
    }
    println!("{total} index values from {} resources", resources.len());
}

#[test]
fn synthea_patient() {
    let resources = synthea();
    let v = values(&resources[0]);
    assert_eq!(
        v["_id"],
        [token(
            None,
            Some("8a4c9c04-1524-9f1c-d65b-9b17e4520fef"),
            None
        )]
    );
    assert_eq!(v["family"], [string("O'Hara248", "o'hara248")]);
    assert_eq!(v["given"], [string("Zandra428", "zandra428")]);
    assert_eq!(
        v["name"],
        [
            string("O'Hara248", "o'hara248"),
            string("Zandra428", "zandra428")
        ]
    );
    assert_eq!(v["gender"], [token(None, Some("female"), None)]);
    assert_eq!(
        v["birthdate"],
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2021-04-03 0:00 UTC)),
            end: Some(datetime!(2021-04-04 0:00 UTC)),
        })]
    );
    assert_eq!(v["address-city"], [string("Amherst", "amherst")]);
    assert_eq!(v["address-state"], [string("MA", "ma")]);
    assert_eq!(v["phone"], [token(None, Some("555-590-5437"), None)]);
    let mr = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR");
    let ss = ("http://terminology.hl7.org/CodeSystem/v2-0203", "SS");
    let id = |system: &str, value: &str, text: Option<&str>, ty: Option<(&str, &str)>| {
        IndexValue::Token(TokenValue {
            system: Some(system.into()),
            code: Some(value.into()),
            text: text.map(Into::into),
            identifier_type: ty
                .map(|(s, c)| (Some(s.to_owned()), Some(c.to_owned())))
                .into_iter()
                .collect(),
        })
    };
    assert_eq!(
        v["identifier"],
        [
            id(
                "https://github.com/synthetichealth/synthea",
                "8a4c9c04-1524-9f1c-d65b-9b17e4520fef",
                None,
                None
            ),
            id(
                "http://hospital.smarthealthit.org",
                "8a4c9c04-1524-9f1c-d65b-9b17e4520fef",
                Some("medical record number"),
                Some(mr)
            ),
            id(
                "http://hl7.org/fhir/sid/us-ssn",
                "999-12-2220",
                Some("social security number"),
                Some(ss)
            ),
        ]
    );
    assert_eq!(
        v["_profile"],
        [IndexValue::Uri(
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient".into()
        )]
    );
    assert_eq!(
        v["language"],
        [
            token(Some("urn:ietf:bcp:47"), Some("en-US"), Some("english")),
            token(None, None, Some("english")),
        ]
    );
    assert_eq!(v["deceased"], [token(None, Some("false"), None)]);
    assert!(!v.contains_key("death-date"));
}

#[test]
fn synthea_blood_pressure() {
    let resources = synthea();
    let bp = resources
        .iter()
        .find(|r| r["id"] == "71599c70-7605-ba53-dd9a-c6ed352f9c8d")
        .unwrap();
    let v = values(bp);
    assert_eq!(
        v["code"],
        [
            loinc("85354-9", "blood pressure"),
            token(None, None, Some("blood pressure"))
        ]
    );
    assert_eq!(
        v["date"],
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2021-04-03 08:03:00 +02:00)),
            end: Some(datetime!(2021-04-03 08:03:01 +02:00)),
        })]
    );
    let patient = reference("Patient", "8a4c9c04-1524-9f1c-d65b-9b17e4520fef");
    assert_eq!(v["patient"], std::slice::from_ref(&patient));
    assert_eq!(v["subject"], [patient]);
    assert_eq!(
        v["encounter"],
        [reference(
            "Encounter",
            "679146c3-fb51-ce39-1072-c7d04108fddd"
        )]
    );
    assert!(!v.contains_key("value-quantity"));
    let diastolic = loinc("8462-4", "diastolic blood pressure");
    let systolic = loinc("8480-6", "systolic blood pressure");
    let text = |t: &str| token(None, None, Some(t));
    let (q83, q118) = (
        quantity("83", 83.0, "mm[Hg]"),
        quantity("118", 118.0, "mm[Hg]"),
    );
    assert_eq!(v["component-value-quantity"], [q83.clone(), q118.clone()]);
    assert_eq!(
        v["component-code-value-quantity"],
        [
            IndexValue::Composite(vec![diastolic.clone(), q83.clone()]),
            IndexValue::Composite(vec![text("diastolic blood pressure"), q83.clone()]),
            IndexValue::Composite(vec![systolic.clone(), q118.clone()]),
            IndexValue::Composite(vec![text("systolic blood pressure"), q118.clone()]),
        ]
    );
    // combo-*: the Observation itself (no value) and each component.
    assert_eq!(v["combo-code"].len(), 6);
    assert_eq!(v["combo-code-value-quantity"].len(), 4);
}

#[test]
fn synthea_body_weight_keeps_the_decimal() {
    let resources = synthea();
    let weight = resources
        .iter()
        .find(|r| r["code"]["coding"][0]["code"] == "29463-7")
        .unwrap();
    let v = values(weight);
    assert_eq!(v["value-quantity"], [quantity("4.5", 4.5, "kg")]);
    assert_eq!(
        v["code-value-quantity"],
        [
            IndexValue::Composite(vec![
                loinc("29463-7", "body weight"),
                quantity("4.5", 4.5, "kg")
            ]),
            IndexValue::Composite(vec![
                token(None, None, Some("body weight")),
                quantity("4.5", 4.5, "kg")
            ]),
        ]
    );
}

#[test]
fn synthea_encounter() {
    let resources = synthea();
    let enc = resources
        .iter()
        .find(|r| r["resourceType"] == "Encounter")
        .unwrap();
    let v = values(enc);
    assert_eq!(
        v["class"],
        [token(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            Some("AMB"),
            None
        )]
    );
    let npi = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999982469";
    let conditional = IndexValue::Reference(ReferenceValue {
        target_type: Some("Practitioner".into()),
        url: Some(npi.into()),
        ..ReferenceValue::default()
    });
    assert_eq!(v["practitioner"], std::slice::from_ref(&conditional));
    assert_eq!(v["participant"], [conditional]);
    assert_eq!(
        v["patient"],
        [reference("Patient", "8a4c9c04-1524-9f1c-d65b-9b17e4520fef")]
    );
    assert_eq!(
        v["date"],
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2021-04-03 08:03:00 +02:00)),
            end: Some(datetime!(2021-04-03 08:18:01 +02:00)),
        })]
    );
}

#[test]
fn condition_and_medication_request_by_hand() {
    let condition = json!({
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2019-05"
    });
    let v = values(&condition);
    assert_eq!(
        v["code"],
        [token(
            Some("http://snomed.info/sct"),
            Some("44054006"),
            Some("diabetes")
        )]
    );
    assert_eq!(
        v["onset-date"],
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2019-05-01 0:00 UTC)),
            end: Some(datetime!(2019-06-01 0:00 UTC)),
        })]
    );
    assert_eq!(v["patient"], [reference("Patient", "p1")]);
    assert!(!v.contains_key("onset-age"));

    let by_code = json!({
        "resourceType": "MedicationRequest",
        "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]},
        "subject": {"reference": "Patient/p1"}
    });
    let v = values(&by_code);
    assert_eq!(
        v["code"],
        [token(
            Some("http://www.nlm.nih.gov/research/umls/rxnorm"),
            Some("314076"),
            None
        )]
    );
    assert!(!v.contains_key("medication"));

    let by_ref = json!({
        "resourceType": "MedicationRequest",
        "status": "active", "intent": "order",
        "medicationReference": {"reference": "Medication/m1"},
        "subject": {"reference": "Group/g1"}
    });
    let v = values(&by_ref);
    assert_eq!(v["medication"], [reference("Medication", "m1")]);
    assert!(!v.contains_key("code"));
    assert_eq!(v["subject"], [reference("Group", "g1")]);
    assert!(!v.contains_key("patient"), "a Group is no patient");
}

/// Extraction speed over the fixture: `cargo test -p notary-fhir --release --test
/// search_extract -- --ignored --nocapture`.
#[test]
#[ignore]
fn extraction_speed() {
    let resources = synthea();
    let start = Instant::now();
    let registry = r4_search();
    println!("registry built in {:?} (once per process)", start.elapsed());
    let rounds = 200;
    let start = Instant::now();
    let mut values = 0;
    for _ in 0..rounds {
        for r in &resources {
            values += extract(registry, r).unwrap().len();
        }
    }
    let elapsed = start.elapsed();
    let n = (rounds * resources.len()) as f64;
    println!(
        "{n} resources in {elapsed:?}: {:.1} µs/resource, {:.0} resources/s, {} values/resource",
        elapsed.as_secs_f64() * 1e6 / n,
        n / elapsed.as_secs_f64(),
        values / (rounds * resources.len())
    );
    for ty in [
        "Patient",
        "Observation",
        "Encounter",
        "Claim",
        "ExplanationOfBenefit",
    ] {
        let r = resources.iter().find(|r| r["resourceType"] == ty).unwrap();
        let start = Instant::now();
        for _ in 0..2000 {
            extract(registry, r).unwrap();
        }
        println!(
            "  {ty}: {:.1} µs",
            start.elapsed().as_secs_f64() * 1e6 / 2000.0
        );
    }
}
