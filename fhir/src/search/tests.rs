use std::collections::BTreeSet;
use std::io::Read;

use serde_json::{json, Value};

use super::*;
use crate::definitions::{self, R4_SEARCH_PARAMETERS_GZ};
use crate::fhirpath;

fn all_definitions() -> Vec<Value> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(R4_SEARCH_PARAMETERS_GZ)
        .read_to_end(&mut bytes)
        .unwrap();
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// The analysis the evaluator was designed from: every R4 expression and composite
/// component parses, and prints back to text that parses to the same tree.
#[test]
fn every_r4_expression_parses() {
    let mut unsupported = Vec::new();
    let mut count = 0;
    for sp in all_definitions() {
        let exprs = sp["expression"].as_str().into_iter().chain(
            sp["component"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["expression"].as_str()),
        );
        for src in exprs {
            count += 1;
            match fhirpath::parse(src) {
                Ok(e) => assert_eq!(fhirpath::parse(&e.to_string()).unwrap(), e, "{src}"),
                Err(e) => unsupported.push(format!("{}: {src}: {e}", sp["id"])),
            }
        }
    }
    println!("{count} expressions, {} unsupported", unsupported.len());
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    assert_eq!(count, 1375 + 96);
}

#[test]
fn coverage_report() {
    let c = coverage();
    println!(
        "R4 search parameter definitions indexed: {}/{}",
        c.definitions.supported, c.definitions.total
    );
    for (kind, n) in &c.by_param_type {
        println!("  {:<10} {}/{}", kind.as_str(), n.supported, n.total);
    }
    println!(
        "(type, parameter) pairs indexed: {}/{}",
        c.pairs.supported, c.pairs.total
    );
    for (ty, n) in &c.by_resource {
        println!("  {ty:<34} {}/{}", n.supported, n.total);
    }
    let mut reasons: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, code, why) in &c.unsupported {
        reasons.insert((code.clone(), why.clone()));
    }
    println!("indexed, but some value types give nothing:");
    let mut partial: BTreeSet<(String, String)> = BTreeSet::new();
    for ty in r4_search().resource_types() {
        for p in r4_search().params_for(ty) {
            if p.is_indexed() && !p.ignored_types.is_empty() {
                let types: Vec<&str> = p.ignored_types.iter().map(String::as_str).collect();
                partial.insert((format!("{ty}.{}", p.code), types.join(", ")));
            }
        }
    }
    for (param, types) in &partial {
        println!("  {param}: {types}");
    }
    println!("not indexed:");
    for (code, why) in &reasons {
        println!("  {code}: {why}");
    }
    // The goal: every parameter of these types is indexed.
    for kind in [
        ParamType::String,
        ParamType::Token,
        ParamType::Reference,
        ParamType::Date,
        ParamType::Number,
        ParamType::Quantity,
        ParamType::Uri,
        ParamType::Composite,
    ] {
        let n = c.by_param_type[&kind];
        let missing: Vec<_> = c
            .unsupported
            .iter()
            .filter(|(ty, code, _)| r4_search().param(ty, code).unwrap().kind == kind)
            // No expression in R4; and `DeviceDefinition.classification` is an R5 element
            // that the R4 definition names by mistake.
            .filter(|(_, code, _)| {
                !["_text", "_content", "_query", "classification"].contains(&code.as_str())
            })
            .collect();
        assert!(missing.is_empty(), "{kind:?} {n:?}: {missing:#?}");
    }
    // The figures in the module docs.
    assert_eq!((c.definitions.supported, c.definitions.total), (1373, 1378));
    assert_eq!((c.pairs.supported, c.pairs.total), (2574, 3011));
}

#[test]
fn codes_are_unique_per_type_and_common_parameters_apply_everywhere() {
    let reg = r4_search();
    assert_eq!(reg.resource_types().count(), 146);
    for ty in reg.resource_types() {
        let codes: Vec<&str> = reg.params_for(ty).iter().map(|p| p.code.as_str()).collect();
        let unique: BTreeSet<&str> = codes.iter().copied().collect();
        assert_eq!(codes.len(), unique.len(), "{ty}");
        for common in [
            "_id",
            "_lastUpdated",
            "_tag",
            "_profile",
            "_security",
            "_source",
        ] {
            let p = reg
                .param(ty, common)
                .unwrap_or_else(|| panic!("{ty} {common}"));
            assert!(p.is_indexed(), "{ty} {common}");
        }
    }
    assert!(reg.param("Patient", "_text").is_some());
    assert!(
        reg.param("Bundle", "_text").is_none(),
        "Bundle is no DomainResource"
    );
    assert!(reg.params_for("Nothing").is_empty());
}

#[test]
fn keeps_the_alternatives_for_the_type() {
    let reg = r4_search();
    let expr = |ty: &str, code: &str| {
        reg.param(ty, code)
            .unwrap()
            .expression
            .as_ref()
            .unwrap()
            .to_string()
    };
    assert_eq!(expr("Condition", "code"), "Condition.code");
    assert_eq!(
        expr("MedicationRequest", "code"),
        "MedicationRequest.medication.ofType(CodeableConcept)"
    );
    assert_eq!(
        expr("Observation", "patient"),
        "Observation.subject.where(resolve() is Patient)"
    );
    assert_eq!(expr("Patient", "_id"), "Resource.id");
    assert_eq!(
        expr("Observation", "value-quantity"),
        "Observation.value.ofType(Quantity) | Observation.value.ofType(SampledData)"
    );

    let patient = reg.param("Observation", "patient").unwrap();
    assert_eq!(patient.kind, ParamType::Reference);
    assert_eq!(patient.targets, ["Patient"]);
    assert!(patient.modifiers.iter().any(|m| m == "identifier"));
    let subject = reg.param("Observation", "subject").unwrap();
    assert!(subject.targets.len() > 1);
    assert!(subject.targets.iter().any(|t| t == "Group"));

    let date = reg.param("Observation", "date").unwrap();
    assert!(date.comparators.iter().any(|c| c == "sa"));
    assert!(date.modifiers == ["missing"]);

    let composite = reg.param("Observation", "code-value-quantity").unwrap();
    assert_eq!(composite.kind, ParamType::Composite);
    let parts: Vec<_> = composite
        .components
        .iter()
        .map(|c| (c.code.as_deref(), c.kind, c.expression.to_string()))
        .collect();
    assert_eq!(
        parts,
        [
            (Some("code"), ParamType::Token, "code".to_owned()),
            (
                Some("value-quantity"),
                ParamType::Quantity,
                "value.ofType(Quantity)".to_owned()
            )
        ]
    );
}

#[test]
fn finds_the_parameters_derived_from_others() {
    let reg = r4_search();
    let derived = |ty: &str, code: &str| {
        reg.param(ty, code)
            .unwrap()
            .derived
            .as_ref()
            .map(|d| (d.sources.join(","), d.target.clone()))
    };
    let of = |sources: &str, target: &str| Some((sources.to_owned(), target.to_owned()));
    assert_eq!(derived("Observation", "patient"), of("subject", "Patient"));
    assert_eq!(
        derived("AuditEvent", "patient"),
        of("agent,entity", "Patient")
    );
    assert_eq!(
        derived("Encounter", "practitioner"),
        of("participant", "Practitioner")
    );
    // Its own element, not a filter of another parameter's.
    assert_eq!(derived("AllergyIntolerance", "patient"), None);
    assert_eq!(derived("Observation", "subject"), None);
    // `Account.patient` filters `Account.subject`, which is a parameter too.
    assert_eq!(derived("Account", "patient"), of("subject", "Patient"));
    // A source must hold nothing but the filtered elements: `Group.member` is
    // `Group.member.entity`, and no parameter is exactly that.
    let mut all: Vec<(String, String, Derived)> = Vec::new();
    for ty in reg.resource_types() {
        for p in reg.params_for(ty) {
            if let Some(d) = &p.derived {
                all.push((ty.to_owned(), p.code.clone(), d.clone()));
                assert!(p.is_indexed() && !p.is_stored());
                for source in &d.sources {
                    let s = reg.param(ty, source).unwrap();
                    assert!(s.is_stored(), "{ty}.{} from {source}", p.code);
                    assert!(s.kind == ParamType::Reference);
                }
            }
        }
    }
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    println!("{} derived parameters", all.len());
    for (ty, code, d) in &all {
        println!("{ty}.{code} = {} → {}", d.sources.join(" | "), d.target);
    }
    assert!(all.len() > 40, "{} derived parameters", all.len());
}

fn values(resource: &Value, code: &str) -> Vec<IndexValue> {
    extract(r4_search(), resource)
        .unwrap()
        .into_iter()
        .filter(|e| e.param == code)
        .map(|e| e.value)
        .collect()
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token(TokenValue {
        system: system.map(str::to_owned),
        code: code.map(str::to_owned),
        text: text.map(str::to_owned),
        identifier_type: vec![],
    })
}

#[test]
fn extracts_tokens_and_booleans() {
    let p = json!({
        "resourceType": "Patient",
        "gender": "female",
        "active": true,
        "deceasedBoolean": false,
        "telecom": [{"system": "email", "value": "a@b.org"}, {"system": "phone", "value": "555"}],
        "identifier": [{
            "system": "urn:s", "value": "1",
            "type": {"coding": [{"system": "urn:t", "code": "MR"}], "text": "Medical Record"}
        }]
    });
    assert_eq!(values(&p, "gender"), [token(None, Some("female"), None)]);
    assert_eq!(values(&p, "active"), [token(None, Some("true"), None)]);
    assert_eq!(values(&p, "deceased"), [token(None, Some("false"), None)]);
    assert_eq!(values(&p, "email"), [token(None, Some("a@b.org"), None)]);
    assert_eq!(values(&p, "phone"), [token(None, Some("555"), None)]);
    assert_eq!(
        values(&p, "identifier"),
        [IndexValue::Token(TokenValue {
            system: Some("urn:s".into()),
            code: Some("1".into()),
            text: Some("medical record".into()),
            identifier_type: vec![(Some("urn:t".into()), Some("MR".into()))],
        })]
    );
}

#[test]
fn extracts_references_of_every_form() {
    let reg = r4_search();
    let param = reg.param("Encounter", "participant").unwrap();
    let enc = json!({
        "resourceType": "Encounter",
        "contained": [{"resourceType": "Practitioner", "id": "p1"}],
        "participant": [
            {"individual": {"reference": "Practitioner/7/_history/2"}},
            {"individual": {"reference": "https://h.org/fhir/RelatedPerson/8"}},
            {"individual": {"reference": "#p1"}},
            {"individual": {"identifier": {"system": "urn:npi", "value": "99"}, "type": "Practitioner"}},
            {"individual": {"reference": "Practitioner?identifier=urn:npi|1"}},
            {"individual": {"reference": "urn:uuid:0a"}}
        ]
    });
    let r = |ty: Option<&str>, id: Option<&str>, ver: Option<&str>, url: Option<&str>| {
        IndexValue::Reference(ReferenceValue {
            target_type: ty.map(str::to_owned),
            id: id.map(str::to_owned),
            version: ver.map(str::to_owned),
            url: url.map(str::to_owned),
            ..ReferenceValue::default()
        })
    };
    assert_eq!(
        extract_param(param, &enc).unwrap(),
        [
            r(Some("Practitioner"), Some("7"), Some("2"), None),
            r(
                Some("RelatedPerson"),
                Some("8"),
                None,
                Some("https://h.org/fhir/RelatedPerson/8")
            ),
            IndexValue::Reference(ReferenceValue {
                target_type: Some("Practitioner".into()),
                id: Some("p1".into()),
                contained: true,
                ..ReferenceValue::default()
            }),
            IndexValue::Reference(ReferenceValue {
                target_type: Some("Practitioner".into()),
                identifier: Some((Some("urn:npi".into()), Some("99".into()))),
                ..ReferenceValue::default()
            }),
            r(
                Some("Practitioner"),
                None,
                None,
                Some("Practitioner?identifier=urn:npi|1")
            ),
            r(None, None, None, Some("urn:uuid:0a")),
        ]
    );
    // `practitioner` keeps only references whose type is Practitioner (conditional too).
    let practitioner = reg.param("Encounter", "practitioner").unwrap();
    let ids: Vec<_> = extract_param(practitioner, &enc)
        .unwrap()
        .into_iter()
        .map(|v| match v {
            IndexValue::Reference(r) => r.id,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ids, [Some("7".to_owned()), Some("p1".to_owned()), None]);

    let bundle = json!({"resourceType": "Bundle", "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]});
    assert_eq!(
        values(&bundle, "composition"),
        [r(Some("Composition"), Some("c1"), None, None)]
    );
    let plan = json!({"resourceType": "PlanDefinition",
        "library": ["http://x.org/Library/lib|1.0"]});
    assert_eq!(
        values(&plan, "depends-on"),
        [r(
            Some("Library"),
            Some("lib"),
            Some("1.0"),
            Some("http://x.org/Library/lib")
        )]
    );
}

#[test]
fn extracts_dates_numbers_and_quantities() {
    use time::macros::datetime;
    let cond: Value = serde_json::from_str(
        r#"{"resourceType": "Condition",
            "onsetPeriod": {"start": "2020-03"},
            "abatementRange": {"low": {"value": 1.50, "unit": "a"}, "high": {"value": 3}},
            "recordedDate": "2021-01-02T03:04:05+02:00"}"#,
    )
    .unwrap();
    assert_eq!(
        values(&cond, "onset-date"),
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2020-03-01 0:00 UTC)),
            end: None
        })]
    );
    assert_eq!(
        values(&cond, "recorded-date"),
        [IndexValue::Date(DateRange {
            start: Some(datetime!(2021-01-02 03:04:05 +02:00)),
            end: Some(datetime!(2021-01-02 03:04:06 +02:00)),
        })]
    );
    let q = |text: &str, value: f64, cmp: &str, unit: Option<&str>| {
        IndexValue::Quantity(QuantityValue {
            value: Decimal {
                text: text.into(),
                value,
            },
            comparator: Some(cmp.into()),
            system: None,
            code: None,
            unit: unit.map(str::to_owned),
        })
    };
    assert_eq!(
        values(&cond, "abatement-age"),
        [q("1.50", 1.5, ">=", Some("a")), q("3", 3.0, "<=", None)]
    );

    let d = Decimal::parse("1.50").unwrap();
    let (lo, hi) = d.precision_range();
    assert!((lo - 1.495).abs() < 1e-12 && (hi - 1.505).abs() < 1e-12);
    assert_eq!(
        Decimal::parse("100").unwrap().precision_range(),
        (99.5, 100.5)
    );
    assert_eq!(
        Decimal::parse("1e2").unwrap().precision_range(),
        (50.0, 150.0)
    );

    let risk =
        json!({"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.25}]});
    assert_eq!(
        values(&risk, "probability"),
        [IndexValue::Number(Decimal {
            text: "0.25".into(),
            value: 0.25
        })]
    );
}

#[test]
fn rejects_what_is_not_a_resource() {
    let reg = r4_search();
    for (bad, name) in [
        (json!({"id": "1"}), None),
        (json!({"resourceType": "HumanName"}), Some("HumanName")),
    ] {
        assert_eq!(
            extract(reg, &bad).unwrap_err().kind,
            ExtractErrorKind::NotAResource(name.map(str::to_owned))
        );
    }
    assert!(definitions::r4().is_resource_type("Patient"));
}
