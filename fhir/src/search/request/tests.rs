//! Expected ASTs written out by hand, per parameter type, modifier and prefix.

use time::macros::datetime;

use super::*;
use crate::search::r4_search;
use crate::summary::SummaryMode;

fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn strict(ty: &str, query: &[(&str, &str)]) -> SearchRequest {
    parse_search(r4_search(), Some(ty), &pairs(query), true)
        .unwrap_or_else(|e| panic!("{query:?}: {e}"))
}

fn lenient(ty: &str, query: &[(&str, &str)]) -> SearchRequest {
    parse_search(r4_search(), Some(ty), &pairs(query), false)
        .unwrap_or_else(|e| panic!("{query:?}: {e}"))
}

/// The error in strict mode, as the client reads it.
fn error(ty: &str, query: &[(&str, &str)]) -> String {
    parse_search(r4_search(), Some(ty), &pairs(query), true)
        .expect_err("an error")
        .to_string()
}

/// The only criterion of `ty?name=value`.
fn one(ty: &str, name: &str, value: &str) -> Criterion {
    let mut req = strict(ty, &[(name, value)]);
    assert_eq!(req.criteria.len(), 1);
    assert_eq!(req.applied, pairs(&[(name, value)]));
    req.criteria.remove(0)
}

fn param(code: &str, kind: ParamType) -> Param {
    Param {
        code: code.into(),
        kind,
    }
}

fn matching(
    code: &str,
    kind: ParamType,
    modifier: Option<Modifier>,
    values: Vec<SearchValue>,
) -> Criterion {
    Criterion::Match(Match {
        param: param(code, kind),
        modifier,
        values,
    })
}

fn string(s: &str) -> SearchValue {
    SearchValue::String(s.into())
}

fn code(system: SystemFilter, code: Option<&str>) -> SearchValue {
    SearchValue::Token(TokenSearch::Code {
        system,
        code: code.map(Into::into),
    })
}

fn is(system: &str) -> SystemFilter {
    SystemFilter::Is(system.into())
}

fn local(ty: Option<&str>, id: &str, version: Option<&str>) -> SearchValue {
    SearchValue::Reference(ReferenceSearch::Local {
        target_type: ty.map(Into::into),
        id: id.into(),
        version: version.map(Into::into),
    })
}

fn decimal(text: &str, value: f64) -> Decimal {
    Decimal {
        text: text.into(),
        value,
    }
}

fn number(prefix: Prefix, text: &str, value: f64, low: f64, high: f64) -> NumberSearch {
    NumberSearch {
        prefix,
        value: decimal(text, value),
        low,
        high,
    }
}

fn chain(code: &str, target: &str, criterion: Criterion) -> Criterion {
    Criterion::Chain {
        param: param(code, ParamType::Reference),
        target_type: target.into(),
        criterion: Box::new(criterion),
    }
}

fn has(source: &str, code: &str, criterion: Criterion) -> Criterion {
    Criterion::Has {
        source_type: source.into(),
        param: param(code, ParamType::Reference),
        criterion: Box::new(criterion),
    }
}

fn include(
    source: Option<&str>,
    code: Option<&str>,
    target: Option<&str>,
    iterate: bool,
) -> Include {
    Include {
        source_type: source.map(Into::into),
        param: code.map(Into::into),
        target_type: target.map(Into::into),
        iterate,
    }
}

const S: ParamType = ParamType::String;
const T: ParamType = ParamType::Token;
const R: ParamType = ParamType::Reference;

#[test]
fn strings_are_normalized_except_exact() {
    assert_eq!(
        one("Patient", "family", "Núñez"),
        matching("family", S, None, vec![string("nunez")])
    );
    assert_eq!(
        one("Patient", "family:exact", "Núñez"),
        matching("family", S, Some(Modifier::Exact), vec![string("Núñez")])
    );
    assert_eq!(
        one("Patient", "name:contains", "ÅNG"),
        matching("name", S, Some(Modifier::Contains), vec![string("ang")])
    );
    // OR with commas; `\,` is a comma inside a value.
    assert_eq!(
        one("Patient", "address-city", r"Paris,Saint\, Denis"),
        matching(
            "address-city",
            S,
            None,
            vec![string("paris"), string("saint, denis")]
        )
    );
}

#[test]
fn tokens_in_every_form() {
    assert_eq!(
        one("Observation", "code", "http://loinc.org|8480-6"),
        matching(
            "code",
            T,
            None,
            vec![code(is("http://loinc.org"), Some("8480-6"))]
        )
    );
    assert_eq!(
        one("Observation", "code", "|8480-6"),
        matching(
            "code",
            T,
            None,
            vec![code(SystemFilter::Absent, Some("8480-6"))]
        )
    );
    assert_eq!(
        one("Observation", "code", "http://loinc.org|"),
        matching("code", T, None, vec![code(is("http://loinc.org"), None)])
    );
    assert_eq!(
        one("Observation", "code", "8480-6,8462-4"),
        matching(
            "code",
            T,
            None,
            vec![
                code(SystemFilter::Any, Some("8480-6")),
                code(SystemFilter::Any, Some("8462-4"))
            ]
        )
    );
    assert_eq!(
        one("Observation", "code", r"urn:x|a\|b"),
        matching("code", T, None, vec![code(is("urn:x"), Some("a|b"))])
    );
    assert_eq!(
        one("Observation", "code:text", "Blood Pressure"),
        matching(
            "code",
            T,
            Some(Modifier::Text),
            vec![SearchValue::Token(TokenSearch::Text(
                "blood pressure".into()
            ))]
        )
    );
    assert_eq!(
        one("Patient", "gender:not", "male"),
        matching(
            "gender",
            T,
            Some(Modifier::Not),
            vec![code(SystemFilter::Any, Some("male"))]
        )
    );
    assert_eq!(
        one(
            "Patient",
            "identifier:of-type",
            "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053"
        ),
        matching(
            "identifier",
            T,
            Some(Modifier::OfType),
            vec![SearchValue::Token(TokenSearch::OfType {
                system: "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
                code: "MR".into(),
                value: "446053".into(),
            })]
        )
    );
    // `_id`, `_tag` and `_security` are tokens.
    assert_eq!(
        one("Patient", "_id", "a1,b2"),
        matching(
            "_id",
            T,
            None,
            vec![
                code(SystemFilter::Any, Some("a1")),
                code(SystemFilter::Any, Some("b2"))
            ]
        )
    );
    assert_eq!(
        one("Patient", "_tag", "http://x|y"),
        matching("_tag", T, None, vec![code(is("http://x"), Some("y"))])
    );
    assert_eq!(
        one("Patient", "_security:not", "http://x|R"),
        matching(
            "_security",
            T,
            Some(Modifier::Not),
            vec![code(is("http://x"), Some("R"))]
        )
    );
}

#[test]
fn token_errors() {
    assert_eq!(
        error("Observation", &[("code", "|")]),
        "search parameter `code`: `|` names neither a system nor a code"
    );
    assert_eq!(
        error("Observation", &[("code", "a|b|c")]),
        "search parameter `code`: `a|b|c` has more than one unescaped `|` (escape it as `\\|`)"
    );
    assert_eq!(
        error("Patient", &[("identifier:of-type", "MR|446053")]),
        "search parameter `identifier:of-type`: `MR|446053` is not of the form \
         `type-system|type-code|value` that `:of-type` takes"
    );
    // `:of-type` is for identifiers; `:below` and `:in` need terminology.
    assert_eq!(
        error("Observation", &[("code:of-type", "a|b|c")]),
        "search parameter `code:of-type`: the modifier `:of-type` is not supported on `code` \
         (supported: :missing, :text, :not)"
    );
    assert_eq!(
        error("Observation", &[("code:below", "x")]),
        "search parameter `code:below`: the modifier `:below` is not supported on `code` \
         (supported: :missing, :text, :not)"
    );
    assert_eq!(
        error("Observation", &[("code", "a,,b")]),
        "search parameter `code`: an empty value in the list"
    );
}

#[test]
fn references_in_every_form() {
    let r = |name: &str, value: &str| one("Observation", name, value);
    assert_eq!(
        r("subject", "Patient/123"),
        matching(
            "subject",
            R,
            None,
            vec![local(Some("Patient"), "123", None)]
        )
    );
    assert_eq!(
        r("subject", "123"),
        matching("subject", R, None, vec![local(None, "123", None)])
    );
    assert_eq!(
        r("subject", "Patient/123/_history/2"),
        matching(
            "subject",
            R,
            None,
            vec![local(Some("Patient"), "123", Some("2"))]
        )
    );
    assert_eq!(
        r("subject:Patient", "123"),
        matching(
            "subject",
            R,
            Some(Modifier::Type("Patient".into())),
            vec![local(Some("Patient"), "123", None)]
        )
    );
    assert_eq!(
        r("subject", "http://other.org/fhir/Patient/9/_history/1"),
        matching(
            "subject",
            R,
            None,
            vec![SearchValue::Reference(ReferenceSearch::Url {
                url: "http://other.org/fhir/Patient/9".into(),
                version: Some("1".into()),
            })]
        )
    );
    assert_eq!(
        r("subject:identifier", "http://hospital.org/mrn|1234"),
        matching(
            "subject",
            R,
            Some(Modifier::Identifier),
            vec![SearchValue::Reference(ReferenceSearch::Identifier {
                system: is("http://hospital.org/mrn"),
                value: Some("1234".into()),
            })]
        )
    );
    // A canonical with its version.
    assert_eq!(
        one(
            "QuestionnaireResponse",
            "questionnaire",
            "http://x.org/Questionnaire/q|2.0"
        ),
        matching(
            "questionnaire",
            R,
            None,
            vec![SearchValue::Reference(ReferenceSearch::Url {
                url: "http://x.org/Questionnaire/q".into(),
                version: Some("2.0".into()),
            })]
        )
    );
    assert_eq!(
        error("Observation", &[("subject", "Medication/1")]),
        "search parameter `subject`: `subject` refers to Group, Device, Patient, Location, \
         not to Medication"
    );
    assert_eq!(
        error("Observation", &[("subject:Patient", "Group/1")]),
        "search parameter `subject:Patient`: `Group/1` is not a Patient"
    );
    assert_eq!(
        error("Observation", &[("subject:Medication", "1")]),
        "search parameter `subject:Medication`: `subject` refers to Group, Device, Patient, \
         Location, not to Medication"
    );
    assert_eq!(
        error("Observation", &[("subject", "Patient/a b")]),
        "search parameter `subject`: `a b` is not a valid id"
    );
    assert_eq!(
        error("Observation", &[("subject", "Nothing/1")]),
        "search parameter `subject`: `Nothing/1` is not a reference (`Type/id`, \
         `Type/id/_history/version`, an id or an absolute URL)"
    );
    assert_eq!(
        error("Observation", &[("subject:above", "Patient/1")]),
        "search parameter `subject:above`: the modifier `:above` is not supported on \
         `subject` (supported: :missing, :[type], :identifier)"
    );
}

#[test]
fn dates_with_every_prefix() {
    let day = (
        datetime!(2020-03-01 0:00 UTC),
        datetime!(2020-03-02 0:00 UTC),
    );
    for prefix in Prefix::ALL {
        let value = format!("{}2020-03-01", prefix.as_str());
        assert_eq!(
            one("Patient", "birthdate", &value),
            matching(
                "birthdate",
                ParamType::Date,
                None,
                vec![SearchValue::Date(DateSearch {
                    prefix,
                    text: "2020-03-01".into(),
                    start: day.0,
                    end: day.1,
                })]
            ),
            "{value}"
        );
    }
    // No prefix is `eq`; the precision gives the range.
    assert_eq!(
        one("Observation", "date", "2020,2021-02-03T10:00"),
        matching(
            "date",
            ParamType::Date,
            None,
            vec![
                SearchValue::Date(DateSearch {
                    prefix: Prefix::Eq,
                    text: "2020".into(),
                    start: datetime!(2020-01-01 0:00 UTC),
                    end: datetime!(2021-01-01 0:00 UTC),
                }),
                SearchValue::Date(DateSearch {
                    prefix: Prefix::Eq,
                    text: "2021-02-03T10:00".into(),
                    start: datetime!(2021-02-03 10:00 UTC),
                    end: datetime!(2021-02-03 10:01 UTC),
                })
            ]
        )
    );
    assert_eq!(
        one("Patient", "_lastUpdated", "gt2020-01-01T10:00:00+02:00"),
        matching(
            "_lastUpdated",
            ParamType::Date,
            None,
            vec![SearchValue::Date(DateSearch {
                prefix: Prefix::Gt,
                text: "2020-01-01T10:00:00+02:00".into(),
                start: datetime!(2020-01-01 10:00 +2),
                end: datetime!(2020-01-01 10:00:01 +2),
            })]
        )
    );
    assert_eq!(
        error("Patient", &[("birthdate", "ge2020-13")]),
        "search parameter `birthdate`: `2020-13` is not a date, dateTime or instant (`2020`, \
         `2020-03-01`, `2020-03-01T10:00:00Z`)"
    );
    assert_eq!(
        error("Patient", &[("birthdate", "xx2020")]),
        "search parameter `birthdate`: `xx2020` is not a date, dateTime or instant (`2020`, \
         `2020-03-01`, `2020-03-01T10:00:00Z`)"
    );
}

#[test]
fn numbers_with_implicit_precision() {
    for prefix in Prefix::ALL {
        let value = format!("{}100", prefix.as_str());
        assert_eq!(
            one("RiskAssessment", "probability", &value),
            matching(
                "probability",
                ParamType::Number,
                None,
                vec![SearchValue::Number(number(
                    prefix, "100", 100.0, 99.5, 100.5
                ))]
            ),
            "{value}"
        );
    }
    assert_eq!(
        one("RiskAssessment", "probability", "1e2,-0.5"),
        matching(
            "probability",
            ParamType::Number,
            None,
            vec![
                SearchValue::Number(number(Prefix::Eq, "1e2", 100.0, 50.0, 150.0)),
                SearchValue::Number(number(Prefix::Eq, "-0.5", -0.5, -0.55, -0.45)),
            ]
        )
    );
    assert_eq!(
        error("RiskAssessment", &[("probability", "gt.5")]),
        "search parameter `probability`: `.5` is not a number"
    );
}

#[test]
fn quantities_with_units() {
    let q = |prefix, text, value, (low, high), system: Option<&str>, code: Option<&str>| {
        SearchValue::Quantity(QuantitySearch {
            number: number(prefix, text, value, low, high),
            system: system.map(Into::into),
            code: code.map(Into::into),
        })
    };
    let ucum = Some("http://unitsofmeasure.org");
    assert_eq!(
        one(
            "Observation",
            "value-quantity",
            "le5|http://unitsofmeasure.org|mg,5||mg,ap5"
        ),
        matching(
            "value-quantity",
            ParamType::Quantity,
            None,
            vec![
                q(Prefix::Le, "5", 5.0, (4.5, 5.5), ucum, Some("mg")),
                q(Prefix::Eq, "5", 5.0, (4.5, 5.5), None, Some("mg")),
                q(Prefix::Ap, "5", 5.0, (4.5, 5.5), None, None),
            ]
        )
    );
    assert_eq!(
        error("Observation", &[("value-quantity", "5|mg")]),
        "search parameter `value-quantity`: `5|mg` is not a quantity (`5.4`, \
         `5.4|system|code` or `5.4||code`)"
    );
}

#[test]
fn uris_below_and_above() {
    let uri = |s: &str| SearchValue::Uri(s.into());
    assert_eq!(
        one("ValueSet", "url", "http://x.org/vs"),
        matching("url", ParamType::Uri, None, vec![uri("http://x.org/vs")])
    );
    assert_eq!(
        one("ValueSet", "url:below", "http://x.org/"),
        matching(
            "url",
            ParamType::Uri,
            Some(Modifier::Below),
            vec![uri("http://x.org/")]
        )
    );
    assert_eq!(
        one("ValueSet", "url:above", "http://x.org/vs/1"),
        matching(
            "url",
            ParamType::Uri,
            Some(Modifier::Above),
            vec![uri("http://x.org/vs/1")]
        )
    );
    assert_eq!(
        one("Patient", "_profile", "http://x.org/p"),
        matching(
            "_profile",
            ParamType::Uri,
            None,
            vec![uri("http://x.org/p")]
        )
    );
    assert_eq!(
        error("ValueSet", &[("url", "http://x.org/a b")]),
        "search parameter `url`: `http://x.org/a b` is not a URI"
    );
}

#[test]
fn composites_parse_each_component_by_its_type() {
    let c = ParamType::Composite;
    assert_eq!(
        one(
            "Observation",
            "code-value-quantity",
            "http://loinc.org|8480-6$lt60,x$5||mm[Hg]"
        ),
        matching(
            "code-value-quantity",
            c,
            None,
            vec![
                SearchValue::Composite(vec![
                    code(is("http://loinc.org"), Some("8480-6")),
                    SearchValue::Quantity(QuantitySearch {
                        number: number(Prefix::Lt, "60", 60.0, 59.5, 60.5),
                        system: None,
                        code: None,
                    })
                ]),
                SearchValue::Composite(vec![
                    code(SystemFilter::Any, Some("x")),
                    SearchValue::Quantity(QuantitySearch {
                        number: number(Prefix::Eq, "5", 5.0, 4.5, 5.5),
                        system: None,
                        code: Some("mm[Hg]".into()),
                    })
                ]),
            ]
        )
    );
    assert_eq!(
        error("Observation", &[("code-value-quantity", "8480-6")]),
        "search parameter `code-value-quantity`: `8480-6` has 1 parts; `code-value-quantity` \
         takes 2 joined with `$`"
    );
    assert_eq!(
        error("Observation", &[("code-value-quantity:exact", "a$1")]),
        "search parameter `code-value-quantity:exact`: the modifier `:exact` is not \
         supported on `code-value-quantity` (supported: :missing)"
    );
}

#[test]
fn missing_on_every_type() {
    for (ty, code, kind) in [
        ("Patient", "family", S),
        ("Patient", "gender", T),
        ("Observation", "subject", R),
        ("Patient", "birthdate", ParamType::Date),
        ("RiskAssessment", "probability", ParamType::Number),
        ("Observation", "value-quantity", ParamType::Quantity),
        ("ValueSet", "url", ParamType::Uri),
        ("Observation", "code-value-quantity", ParamType::Composite),
    ] {
        for (value, missing) in [("true", true), ("false", false)] {
            assert_eq!(
                one(ty, &format!("{code}:missing"), value),
                Criterion::Missing {
                    param: param(code, kind),
                    missing
                },
                "{ty}.{code}"
            );
        }
    }
    assert_eq!(
        error("Patient", &[("gender:missing", "yes")]),
        "search parameter `gender:missing`: `yes` is not one of true, false"
    );
}

#[test]
fn chains_two_levels_deep() {
    let name = matching("name", S, None, vec![string("peter")]);
    assert_eq!(
        one("Observation", "subject:Patient.name", "Peter"),
        chain("subject", "Patient", name.clone())
    );
    // One target: no `:Type` needed.
    assert_eq!(
        one("Observation", "patient.name", "Peter"),
        chain("patient", "Patient", name)
    );
    assert_eq!(
        one(
            "Observation",
            "subject:Patient.organization.name:exact",
            "Acme"
        ),
        chain(
            "subject",
            "Patient",
            chain(
                "organization",
                "Organization",
                matching("name", S, Some(Modifier::Exact), vec![string("Acme")])
            )
        )
    );
    assert_eq!(
        one(
            "Encounter",
            "patient.general-practitioner:Practitioner.family:missing",
            "true"
        ),
        chain(
            "patient",
            "Patient",
            chain(
                "general-practitioner",
                "Practitioner",
                Criterion::Missing {
                    param: param("family", S),
                    missing: true
                }
            )
        )
    );
    assert_eq!(
        error("Observation", &[("subject.name", "peter")]),
        "search parameter `subject.name`: `subject` may refer to Group, Device, Patient, \
         Location: name one, as in `subject:Group.name`"
    );
    assert_eq!(
        error("Observation", &[("code.name", "peter")]),
        "search parameter `code.name`: `code` is a token parameter, not a reference: it \
         cannot be chained"
    );
    assert_eq!(
        error("Observation", &[("patient.nothing", "1")]),
        "search parameter `patient.nothing`: `nothing` is not a search parameter of Patient"
    );
}

#[test]
fn reverse_chains_nest() {
    assert_eq!(
        one("Patient", "_has:Observation:patient:code", "1234-5"),
        has(
            "Observation",
            "patient",
            matching(
                "code",
                T,
                None,
                vec![code(SystemFilter::Any, Some("1234-5"))]
            )
        )
    );
    assert_eq!(
        one(
            "Patient",
            "_has:Observation:patient:_has:Provenance:target:agent",
            "Practitioner/1"
        ),
        has(
            "Observation",
            "patient",
            has(
                "Provenance",
                "target",
                matching(
                    "agent",
                    R,
                    None,
                    vec![local(Some("Practitioner"), "1", None)]
                )
            )
        )
    );
    // A chain inside `_has`.
    assert_eq!(
        one(
            "Patient",
            "_has:Observation:subject:performer:Practitioner.family",
            "Lee"
        ),
        has(
            "Observation",
            "subject",
            chain(
                "performer",
                "Practitioner",
                matching("family", S, None, vec![string("lee")])
            )
        )
    );
    assert_eq!(
        error("Patient", &[("_has:Observation:patient", "1")]),
        "search parameter `_has:Observation:patient`: `_has` takes the form \
         `_has:Type:reference:parameter`"
    );
    assert_eq!(
        error("Patient", &[("_has:Observation:code:status", "final")]),
        "search parameter `_has:Observation:code:status`: `Observation.code` is a token \
         parameter, not a reference"
    );
    assert_eq!(
        error("Organization", &[("_has:Observation:patient:code", "1")]),
        "search parameter `_has:Observation:patient:code`: `Observation.patient` refers to \
         Patient, not to the type searched"
    );
    assert_eq!(
        error("Patient", &[("_has:Nothing:patient:code", "1")]),
        "search parameter `_has:Nothing:patient:code`: `Nothing` is not a resource type"
    );
}

#[test]
fn includes_with_iterate_and_wildcards() {
    let req = strict(
        "Observation",
        &[
            ("_include", "Observation:patient"),
            (
                "_include:iterate",
                "Patient:general-practitioner:Practitioner",
            ),
            ("_include", "*"),
            ("_include", "Observation:*"),
            ("_revinclude", "Provenance:target"),
            ("_revinclude:iterate", "*"),
        ],
    );
    assert_eq!(
        req.includes,
        [
            include(Some("Observation"), Some("patient"), None, false),
            include(
                Some("Patient"),
                Some("general-practitioner"),
                Some("Practitioner"),
                true
            ),
            include(None, None, None, false),
            include(Some("Observation"), None, None, false),
        ]
    );
    assert_eq!(
        req.revincludes,
        [
            include(Some("Provenance"), Some("target"), None, false),
            include(None, None, None, true),
        ]
    );
    assert_eq!(req.applied.len(), 6);
    assert_eq!(
        strict(
            "Observation",
            &[("_include:recurse", "Observation:patient")]
        )
        .includes,
        [include(Some("Observation"), Some("patient"), None, true)]
    );
    assert_eq!(
        error("Observation", &[("_include", "Observation:code")]),
        "search parameter `_include`: `Observation:code` is a token parameter, not a reference"
    );
    assert_eq!(
        error(
            "Observation",
            &[("_include", "Observation:subject:Medication")]
        ),
        "search parameter `_include`: `subject` refers to Group, Device, Patient, Location, \
         not to Medication"
    );
    assert_eq!(
        error("Observation", &[("_include", "Observation")]),
        "search parameter `_include`: `Observation` is not of the form \
         `Type:parameter[:targetType]` or `*`"
    );
    assert_eq!(
        error("Observation", &[("_include:deep", "Observation:patient")]),
        "search parameter `_include:deep`: `_include` takes only `:iterate` (not `:deep`)"
    );
    // An unknown parameter in an include is ignored in lenient mode.
    let req = lenient("Observation", &[("_include", "Observation:nothing")]);
    assert_eq!(req.includes, []);
    assert_eq!(
        req.ignored,
        [(
            "_include".to_string(),
            "Observation:nothing".to_string(),
            "`nothing` is not a search parameter of Observation".to_string()
        )]
    );
}

#[test]
fn sorting_on_several_keys() {
    let req = strict("Observation", &[("_sort", "-date,status,_lastUpdated")]);
    assert_eq!(
        req.sort,
        [
            SortKey {
                param: param("date", ParamType::Date),
                descending: true
            },
            SortKey {
                param: param("status", T),
                descending: false
            },
            SortKey {
                param: param("_lastUpdated", ParamType::Date),
                descending: false
            },
        ]
    );
    assert_eq!(
        error("Observation", &[("_sort", "date,nothing")]),
        "search parameter `_sort`: `nothing` is not a search parameter of Observation"
    );
    assert_eq!(
        error("Observation", &[("_sort", "code-value-quantity")]),
        "search parameter `_sort`: cannot sort on `code-value-quantity`, a composite parameter"
    );
    assert_eq!(
        error("Observation", &[("_sort", "date,,status")]),
        "search parameter `_sort`: an empty sort key"
    );
    // Lenient: unknown keys are dropped, and `self` shows the keys kept.
    let req = lenient("Observation", &[("_sort", "-nothing,-date")]);
    assert_eq!(
        req.sort,
        [SortKey {
            param: param("date", ParamType::Date),
            descending: true
        }]
    );
    assert_eq!(req.applied, pairs(&[("_sort", "-date")]));
    assert_eq!(
        req.ignored,
        [(
            "_sort".to_string(),
            "-nothing".to_string(),
            "`nothing` is not a search parameter of Observation".to_string()
        )]
    );
    let req = lenient("Observation", &[("_sort", "nothing")]);
    assert_eq!((req.sort, req.applied), (vec![], vec![]));
    assert_eq!(
        req.ignored,
        [(
            "_sort".to_string(),
            "nothing".to_string(),
            "`nothing` is not a search parameter of Observation".to_string()
        )]
    );
}

#[test]
fn result_parameters() {
    let req = strict(
        "Patient",
        &[
            ("_count", "0"),
            ("_offset", "40"),
            ("_snapshot", "1234"),
            ("_total", "accurate"),
            ("_summary", "data"),
            ("_elements", "name,Patient.birthDate"),
            ("_format", "json"),
            ("_pretty", "true"),
        ],
    );
    assert_eq!(req.count, Some(0));
    assert!(req.count_only());
    assert_eq!(req.offset, Some(40));
    assert_eq!(req.snapshot, Some(1234));
    assert_eq!(req.total, Some(TotalMode::Accurate));
    assert_eq!(req.summary, Some(Summary::Data));
    assert_eq!(Summary::Data.projection(), Some(SummaryMode::Data));
    assert_eq!(
        req.elements,
        Some(vec!["name".to_string(), "Patient.birthDate".to_string()])
    );
    assert_eq!(req.applied.len(), 8);
    assert!(req.criteria.is_empty());

    let req = strict("Patient", &[("_count", "5000"), ("_summary", "count")]);
    assert_eq!(req.count, Some(MAX_COUNT));
    assert_eq!(
        req.applied,
        pairs(&[("_count", "1000"), ("_summary", "count")])
    );
    assert!(req.count_only());
    assert_eq!(Summary::Count.projection(), None);

    let plain = strict("Patient", &[]);
    assert_eq!(
        (plain.count, plain.total, plain.summary),
        (None, None, None)
    );
    assert!(!plain.count_only());

    for (query, message) in [
        (("_count", "-1"), "`-1` is not a non-negative integer"),
        (("_count", "ten"), "`ten` is not a non-negative integer"),
        (
            ("_offset", "99999999999999999999999"),
            "`99999999999999999999999` is too large",
        ),
        (
            ("_total", "exact"),
            "`exact` is not one of none, estimate, accurate",
        ),
        (
            ("_summary", "yes"),
            "`yes` is not one of true, text, data, count, false",
        ),
        (("_elements", "name,"), "an empty element name"),
    ] {
        assert_eq!(
            error("Patient", &[query]),
            format!("search parameter `{}`: {message}", query.0)
        );
        // Not ignorable: lenient mode fails too.
        assert!(parse_search(r4_search(), Some("Patient"), &pairs(&[query]), false).is_err());
    }
    assert_eq!(
        error("Patient", &[("_count", "1"), ("_count", "2")]),
        "search parameter `_count`: given more than once"
    );
}

#[test]
fn strict_and_lenient_handling() {
    let query = [
        ("family", "peter"),
        ("nothing", "1"),
        ("name:below", "x"),
        ("gender:iterate", "male"),
        ("_text", "cancer"),
        ("birthdate", ""),
        ("_count", "10"),
    ];
    let req = lenient("Patient", &query);
    assert_eq!(
        req.criteria,
        [matching("family", S, None, vec![string("peter")])]
    );
    assert_eq!(req.applied, pairs(&[("family", "peter"), ("_count", "10")]));
    let why = |n: &str, v: &str, w: &str| (n.to_string(), v.to_string(), w.to_string());
    assert_eq!(
        req.ignored,
        [
            why(
                "nothing",
                "1",
                "`nothing` is not a search parameter of Patient"
            ),
            why(
                "name:below",
                "x",
                "the modifier `:below` is not supported on `name` (supported: :missing, \
                 :exact, :contains)"
            ),
            why(
                "gender:iterate",
                "male",
                "`:iterate` applies only to `_include` and `_revinclude`"
            ),
            // Not indexed: no expression in R4.
            why(
                "_text",
                "cancer",
                "`_text` is not supported on Patient (the definition has no expression)"
            ),
            why("birthdate", "", "empty value"),
        ]
    );

    let strict_error =
        parse_search(r4_search(), Some("Patient"), &pairs(&query), true).expect_err("strict");
    assert_eq!(
        strict_error,
        SearchError {
            param: "nothing".into(),
            kind: SearchErrorKind::UnknownParameter(
                "`nothing` is not a search parameter of Patient".into()
            )
        }
    );
    assert_eq!(strict_error.issue_type(), IssueType::NotSupported);
    let modifier =
        parse_search(r4_search(), Some("Patient"), &pairs(&query[2..3]), true).expect_err("strict");
    assert!(matches!(
        modifier.kind,
        SearchErrorKind::UnsupportedModifier(_)
    ));

    // A bad value of a known parameter fails in both modes.
    let bad = pairs(&[("nothing", "1"), ("birthdate", "soon")]);
    for strict in [false, true] {
        let e = parse_search(r4_search(), Some("Patient"), &bad, strict).unwrap_err();
        assert_eq!(e.param, if strict { "nothing" } else { "birthdate" });
    }
    let e = parse_search(r4_search(), Some("Patient"), &bad[1..], false).unwrap_err();
    assert_eq!(e.issue_type(), IssueType::Invalid);
}

#[test]
fn and_of_repeated_parameters() {
    let req = strict("Observation", &[("date", "ge2020"), ("date", "lt2021")]);
    let date = |prefix, text: &str, start, end| {
        matching(
            "date",
            ParamType::Date,
            None,
            vec![SearchValue::Date(DateSearch {
                prefix,
                text: text.into(),
                start,
                end,
            })],
        )
    };
    assert_eq!(
        req.criteria,
        [
            date(
                Prefix::Ge,
                "2020",
                datetime!(2020-01-01 0:00 UTC),
                datetime!(2021-01-01 0:00 UTC)
            ),
            date(
                Prefix::Lt,
                "2021",
                datetime!(2021-01-01 0:00 UTC),
                datetime!(2022-01-01 0:00 UTC)
            ),
        ]
    );
    assert_eq!(req.resource_types, ["Observation"]);
}

#[test]
fn system_searches_use_type() {
    let search = |query: &[(&str, &str)], strict: bool| {
        parse_search(r4_search(), None, &pairs(query), strict)
    };
    let req = search(&[("_type", "Patient,Observation"), ("_id", "1")], true).unwrap();
    assert_eq!(req.resource_types, ["Patient", "Observation"]);
    assert_eq!(
        req.criteria,
        [matching(
            "_id",
            T,
            None,
            vec![code(SystemFilter::Any, Some("1"))]
        )]
    );
    assert_eq!(
        req.applied,
        pairs(&[("_type", "Patient,Observation"), ("_id", "1")])
    );

    // Without `_type`: every type, and only the parameters they all have.
    let req = search(&[("_lastUpdated", "2020")], true).unwrap();
    assert!(req.resource_types.is_empty());
    assert_eq!(req.criteria.len(), 1);
    assert_eq!(
        search(&[("family", "x")], true).unwrap_err().to_string(),
        "search parameter `family`: `family` is not a search parameter of every type \
         searched (Account, ActivityDefinition, AdverseEvent, AllergyIntolerance, \
         Appointment, … lack it)"
    );
    assert_eq!(
        search(&[("_type", "Patient,Practitioner"), ("code", "x")], true)
            .unwrap_err()
            .to_string(),
        "search parameter `code`: `code` is not a search parameter of the types searched"
    );
    assert_eq!(
        search(
            &[("_type", "Patient,Observation"), ("_sort", "birthdate")],
            true
        )
        .unwrap_err()
        .to_string(),
        "search parameter `_sort`: `birthdate` is not a search parameter of every type \
         searched (Observation lack it)"
    );
    // A bad `_type` would widen the search: an error in both modes.
    assert_eq!(
        search(&[("_type", "Patient,Nothing")], false)
            .unwrap_err()
            .to_string(),
        "search parameter `_type`: `Nothing` is not a resource type"
    );
    // `_type` on a type-level search is not understood.
    assert_eq!(
        error("Patient", &[("_type", "Patient")]),
        "search parameter `_type`: `_type` applies to system searches only"
    );
    assert!(lenient("Patient", &[("_type", "Patient")])
        .applied
        .is_empty());
    assert_eq!(
        parse_search(r4_search(), Some("Nothing"), &[], false)
            .unwrap_err()
            .to_string(),
        "search parameter `Nothing`: `Nothing` is not a resource type"
    );
}

#[test]
fn escapes() {
    assert_eq!(
        value::split(r"a,b\,c,,d\\,e", b','),
        [r"a", r"b\,c", "", r"d\\", "e"]
    );
    assert_eq!(value::unescape(r"a\,b\$c\|d\\e\x"), r"a,b$c|d\e\x");
    assert_eq!(value::split("", b','), [""]);
}
