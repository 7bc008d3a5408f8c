//! Structural validation of R4 resources in JSON, against the [`definitions`] model.
//!
//! Checks what https://hl7.org/fhir/R4/json.html requires of a resource: a known concrete
//! `resourceType`; only known elements (choice elements by their typed names, one variant
//! at most); arrays exactly for repeating elements, never empty; no `null` except inside
//! arrays of primitives that a parallel `_x` array completes; objects for complex types; the
//! JSON kind and lexical form of every primitive; `_x` primitive extensions; resources nested
//! in `contained`, `Bundle.entry.resource` and other `Resource`-typed elements, each validated
//! as a resource of its own type; and minimum cardinalities.
//!
//! Invariants (FHIRPath constraints such as `ext-1`), terminology bindings and profiles are
//! not checked: they need a FHIRPath engine and terminology server this crate does not have.
//!
//! Issues are collected, not returned at the first, so a client can fix everything at once.
//! Each names the offending element by a FHIRPath such as `Patient.name[0].given[1]`.
//!
//! [`definitions`]: crate::definitions

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::definitions::{Definitions, ElementModel, TypeModel};
use crate::outcome::{Issue, IssueType};
use crate::primitives;

pub use crate::primitives::is_valid_id;

/// At most this many issues are reported, so a hostile or very broken resource cannot make
/// the error larger than the resource.
pub const MAX_ISSUES: usize = 100;

/// Why a resource is not valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// The problems found, in document order, at most [`MAX_ISSUES`].
    pub issues: Vec<Issue>,
}

impl ValidationError {
    /// Whether the resource is malformed — wrong JSON shape, unknown elements, invalid
    /// primitive values — which the HTTP layer answers with 400, rather than only missing
    /// required elements (422, a business-level failure of a well-formed resource).
    pub fn is_structural(&self) -> bool {
        self.issues.iter().any(|i| i.code != IssueType::Required)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self
            .issues
            .first()
            .and_then(|i| i.diagnostics.as_deref())
            .unwrap_or("invalid resource");
        write!(f, "{first}")?;
        if self.issues.len() > 1 {
            write!(f, " (and {} more issues)", self.issues.len() - 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Validate `resource` as an R4 resource of the type its `resourceType` names.
pub fn validate_resource(defs: &Definitions, resource: &Value) -> Result<(), ValidationError> {
    let mut v = Validator {
        defs,
        issues: Vec::new(),
    };
    v.resource(resource, None);
    if v.issues.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { issues: v.issues })
    }
}

/// The walk over one resource, collecting issues.
struct Validator<'a> {
    defs: &'a Definitions,
    issues: Vec<Issue>,
}

impl Validator<'_> {
    fn push(&mut self, code: IssueType, path: &str, message: String) {
        if self.issues.len() < MAX_ISSUES {
            let issue = Issue::error(code, message);
            self.issues.push(if path.is_empty() {
                issue
            } else {
                issue.at(path)
            });
        }
    }

    /// A resource at `path` (None at the root).
    fn resource(&mut self, value: &Value, path: Option<&str>) {
        let at = path.unwrap_or("");
        let Value::Object(obj) = value else {
            self.push(
                IssueType::Structure,
                at,
                "A resource must be a JSON object".into(),
            );
            return;
        };
        let resource_type = match obj.get("resourceType") {
            None => {
                self.push(IssueType::Structure, at, "Missing 'resourceType'".into());
                return;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                self.push(
                    IssueType::Structure,
                    at,
                    "'resourceType' must be a string".into(),
                );
                return;
            }
        };
        if !self.defs.is_resource_type(resource_type) {
            self.push(
                IssueType::Structure,
                at,
                format!("Unknown resource type '{resource_type}'"),
            );
            return;
        }
        let Some(model) = self.defs.type_model(resource_type) else {
            return; // every listed resource type has a model; the definitions tests check it
        };
        let path = path.unwrap_or(resource_type);
        self.object(model, obj, path, true);
    }

    /// The properties of an object of type `model` at `path`.
    fn object(&mut self, model: &TypeModel, obj: &Map<String, Value>, path: &str, root: bool) {
        if obj.is_empty() {
            // ele-1: every element has a value or children; in JSON `{}` has neither.
            self.push(
                IssueType::Structure,
                path,
                "An element must not be an empty object".into(),
            );
            return;
        }
        // Which JSON name each present choice element was written with.
        let mut choices: HashMap<&str, &str> = HashMap::new();
        let mut present: HashSet<&str> = HashSet::new();
        for (key, value) in obj {
            if root && key == "resourceType" {
                continue;
            }
            let (is_extension, name) = match key.strip_prefix('_') {
                Some(name) => (true, name),
                None => (false, key.as_str()),
            };
            let Some((element, ty)) = model.property(name) else {
                self.push(
                    IssueType::Structure,
                    &format!("{path}.{key}"),
                    format!("Unknown element '{key}'"),
                );
                continue;
            };
            let primitive = self.defs.is_primitive(ty);
            if is_extension && !primitive {
                self.push(
                    IssueType::Structure,
                    &format!("{path}.{key}"),
                    format!("Unknown element '{key}': '{name}' is not a primitive element"),
                );
                continue;
            }
            if element.choice {
                let seen = choices.entry(element.name.as_str()).or_insert(name);
                if *seen != name {
                    self.push(
                        IssueType::Structure,
                        &format!("{path}.{name}"),
                        format!(
                            "Only one of '{}[x]' may be present, found '{seen}' and '{name}'",
                            element.name
                        ),
                    );
                    continue;
                }
            }
            present.insert(element.name.as_str());
            let child = format!("{path}.{name}");
            if is_extension {
                self.primitive_extension(element, key, value, obj.get(name), &child);
            } else {
                let twin = primitive.then(|| obj.get(&format!("_{name}"))).flatten();
                self.property(element, ty, name, value, twin, &child);
            }
        }
        for element in &model.elements {
            if element.is_required() && !present.contains(element.name.as_str()) {
                let name = if element.choice {
                    format!("{}[x]", element.name)
                } else {
                    element.name.clone()
                };
                self.push(
                    IssueType::Required,
                    &format!("{path}.{name}"),
                    format!("Missing required element '{name}'"),
                );
            }
        }
    }

    /// The value of property `name` (element `element`, type `ty`); `twin` is the `_name`
    /// primitive extension beside it, if any.
    fn property(
        &mut self,
        element: &ElementModel,
        ty: &str,
        name: &str,
        value: &Value,
        twin: Option<&Value>,
        path: &str,
    ) {
        match value {
            Value::Null => self.push(
                IssueType::Structure,
                path,
                format!("Element '{name}' must not be null"),
            ),
            Value::Array(items) if element.is_array() => {
                if items.is_empty() {
                    self.push(
                        IssueType::Structure,
                        path,
                        format!("Element '{name}' must not be an empty array"),
                    );
                    return;
                }
                let twins = twin.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if item.is_null() {
                        // A null is only a placeholder where `_name` holds an extension at the
                        // same index.
                        let completed = twins.and_then(|t| t.get(i)).is_some_and(|t| !t.is_null());
                        if !completed {
                            self.push(
                                IssueType::Structure,
                                &item_path,
                                format!("Element '{name}' must not contain null"),
                            );
                        }
                        continue;
                    }
                    self.value(ty, name, item, &item_path);
                }
                if items.len() < element.min as usize {
                    self.push(
                        IssueType::Required,
                        path,
                        format!("Element '{name}' needs at least {} items", element.min),
                    );
                }
            }
            _ if element.is_array() => self.push(
                IssueType::Structure,
                path,
                format!("Element '{name}' must be an array"),
            ),
            Value::Array(_) => self.push(
                IssueType::Structure,
                path,
                format!("Element '{name}' must not be an array"),
            ),
            _ => self.value(ty, name, value, path),
        }
    }

    /// `_name`: the id and extensions of primitive element `element`, beside its value
    /// `main` (if present).
    fn primitive_extension(
        &mut self,
        element: &ElementModel,
        key: &str,
        value: &Value,
        main: Option<&Value>,
        path: &str,
    ) {
        match value {
            Value::Array(items) if element.is_array() => {
                if items.is_empty() {
                    self.push(
                        IssueType::Structure,
                        path,
                        format!("Element '{key}' must not be an empty array"),
                    );
                    return;
                }
                let values = main.and_then(Value::as_array);
                if let Some(values) = values {
                    if values.len() != items.len() {
                        self.push(
                            IssueType::Structure,
                            path,
                            format!("Element '{key}' must have as many items as '{}'", &key[1..]),
                        );
                    }
                }
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    let has_value = values.and_then(|v| v.get(i)).is_some_and(|v| !v.is_null());
                    if item.is_null() {
                        // Where `name` is an array, its own check reports a double null.
                        if values.is_none() {
                            self.push(
                                IssueType::Structure,
                                &item_path,
                                format!(
                                    "Element '{}' and '{key}' must not both be null at one index",
                                    &key[1..]
                                ),
                            );
                        }
                        continue;
                    }
                    self.element_extension(key, item, has_value, &item_path);
                }
            }
            Value::Null => self.push(
                IssueType::Structure,
                path,
                format!("Element '{key}' must not be null"),
            ),
            _ if element.is_array() => self.push(
                IssueType::Structure,
                path,
                format!("Element '{key}' must be an array"),
            ),
            Value::Array(_) => self.push(
                IssueType::Structure,
                path,
                format!("Element '{key}' must not be an array"),
            ),
            _ => {
                let has_value = main.is_some_and(|v| !v.is_null());
                self.element_extension(key, value, has_value, path);
            }
        }
    }

    /// One `_name` object: an Element (`id`, `extension`).
    fn element_extension(&mut self, key: &str, value: &Value, has_value: bool, path: &str) {
        let Value::Object(obj) = value else {
            self.push(
                IssueType::Structure,
                path,
                format!("Element '{key}' must be an object"),
            );
            return;
        };
        if let Some(model) = self.defs.type_model("Element") {
            self.object(model, obj, path, false);
        }
        if !has_value && !obj.contains_key("extension") {
            // ele-1 again: without a value, only extensions give the element content.
            self.push(
                IssueType::Structure,
                path,
                format!(
                    "Element '{key}' without a value for '{}' must have an extension",
                    &key[1..]
                ),
            );
        }
    }

    /// One non-null value of type `ty` for property `name`.
    fn value(&mut self, ty: &str, name: &str, value: &Value, path: &str) {
        if ty == "Resource" {
            self.resource(value, Some(path));
        } else if self.defs.is_primitive(ty) {
            self.primitive(ty, name, value, path);
        } else if let Some(model) = self.defs.type_model(ty) {
            match value {
                Value::Object(obj) => self.object(model, obj, path, false),
                _ => self.push(
                    IssueType::Structure,
                    path,
                    format!("Element '{name}' must be an object ({ty})"),
                ),
            }
        }
    }

    /// A primitive value: its JSON kind, then its lexical form.
    fn primitive(&mut self, ty: &str, name: &str, value: &Value, path: &str) {
        let wrong_kind = |kind: &str| format!("Element '{name}' must be a JSON {kind} ({ty})");
        match ty {
            "boolean" => {
                if !value.is_boolean() {
                    self.push(IssueType::Structure, path, wrong_kind("boolean"));
                }
            }
            "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
                let Value::Number(n) = value else {
                    self.push(IssueType::Structure, path, wrong_kind("number"));
                    return;
                };
                // With arbitrary_precision, the number prints as the literal that was sent.
                let literal = n.to_string();
                let ok = match ty {
                    // Beyond a double's range a value cannot be compared, searched or given
                    // its RFC 8785 canonical form for notarization.
                    "decimal" => {
                        primitives::is_valid_decimal(&literal)
                            && literal.parse::<f64>().is_ok_and(f64::is_finite)
                    }
                    "positiveInt" => primitives::parse_integer(&literal).is_some_and(|i| i >= 1),
                    "unsignedInt" => primitives::parse_integer(&literal).is_some_and(|i| i >= 0),
                    _ => primitives::parse_integer(&literal).is_some(),
                };
                if !ok {
                    self.push(IssueType::Value, path, format!("Invalid {ty} '{literal}'"));
                }
            }
            _ => {
                let Value::String(s) = value else {
                    self.push(IssueType::Structure, path, wrong_kind("string"));
                    return;
                };
                // json.html: a string is absent or has at least one non-whitespace character.
                if s.trim().is_empty() {
                    self.push(
                        IssueType::Value,
                        path,
                        format!("Element '{name}' must not be empty or only whitespace"),
                    );
                    return;
                }
                // datatypes.html#string: no characters below U+0020 except tab, CR and LF.
                if s.chars()
                    .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
                {
                    self.push(
                        IssueType::Value,
                        path,
                        format!("Element '{name}' contains a control character"),
                    );
                    return;
                }
                let ok = match ty {
                    "id" => primitives::is_valid_id(s),
                    "code" => primitives::is_valid_code(s),
                    "uri" | "url" | "canonical" => primitives::is_valid_uri(s),
                    "oid" => primitives::is_valid_oid(s),
                    "uuid" => primitives::is_valid_uuid(s),
                    "base64Binary" => primitives::is_valid_base64(s),
                    "instant" => primitives::is_valid_instant(s),
                    "date" => primitives::is_valid_date(s),
                    "dateTime" => primitives::is_valid_date_time(s),
                    "time" => primitives::is_valid_time(s),
                    "xhtml" => is_plausible_xhtml(s),
                    // string, markdown: any non-empty text.
                    _ => true,
                };
                if !ok {
                    let shown: String = s.chars().take(80).collect();
                    self.push(IssueType::Value, path, format!("Invalid {ty} '{shown}'"));
                }
            }
        }
    }
}

/// Whether `s` looks like narrative XHTML: a single `<div>` element. Full XHTML checking
/// (allowed elements, no scripts) needs an XML parser and is left to a later step.
fn is_plausible_xhtml(s: &str) -> bool {
    let s = s.trim();
    s.strip_prefix("<div")
        .is_some_and(|rest| rest.starts_with(|c: char| c == '>' || c.is_whitespace()))
        && s.ends_with("</div>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::r4;
    use serde_json::json;

    /// Validate and return (diagnostics, expression) pairs.
    fn issues(resource: Value) -> Vec<(String, String)> {
        match validate_resource(r4(), &resource) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .issues
                .into_iter()
                .map(|i| (i.diagnostics.unwrap(), i.expression.join(",")))
                .collect(),
        }
    }

    fn assert_valid(resource: Value) {
        assert_eq!(issues(resource), Vec::<(String, String)>::new());
    }

    /// Asserts exactly one issue, with this message and expression.
    fn assert_issue(resource: Value, message: &str, expression: &str) {
        assert_eq!(
            issues(resource),
            vec![(message.to_string(), expression.to_string())]
        );
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn accepts_real_world_resources() {
        assert_valid(parse(
            r#"{
              "resourceType": "Patient",
              "id": "example",
              "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00.000Z",
                       "tag": [{"system": "http://example.org", "code": "a"}]},
              "text": {"status": "generated",
                       "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter</div>"},
              "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1",
                              "value": "12345", "period": {"start": "2001-05-06"}}],
              "active": true,
              "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
                       {"use": "usual", "given": ["Jim"]}],
              "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
              "gender": "male",
              "birthDate": "1974-12-25",
              "_birthDate": {"extension": [{
                  "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                  "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
              "deceasedBoolean": false,
              "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille",
                           "postalCode": "3999", "period": {"start": "1974-12-25"}}],
              "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
                           "name": {"family": "du Marché", "_family": {"extension": [{
                               "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                               "valueString": "VV"}]}, "given": ["Bénédicte"]},
                           "gender": "female"}],
              "managingOrganization": {"reference": "Organization/1"}
            }"#,
        ));
        assert_valid(parse(
            r#"{
              "resourceType": "Observation",
              "id": "body-height",
              "status": "final",
              "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
              "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
              "subject": {"reference": "Patient/example"},
              "effectiveDateTime": "1999-07-02",
              "valueQuantity": {"value": 185.50, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
              "component": [{"code": {"text": "x"}, "valueSampledData": {
                  "origin": {"value": 0}, "period": 0.1000000000000000055511151231257827,
                  "dimensions": 1, "data": "1 2 E"}}]
            }"#,
        ));
        assert_valid(parse(
            r#"{
              "resourceType": "Encounter",
              "id": "f001",
              "status": "finished",
              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
              "subject": {"reference": "Patient/f001", "display": "P. van de Heuvel"},
              "length": {"value": 140, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
              "hospitalization": {"preAdmissionIdentifier": {"use": "official", "value": "93042"},
                                  "dischargeDisposition": {"text": "home"}},
              "location": [{"location": {"reference": "Location/1"}, "period": {"start": "2012-12-28T09:00:00+01:00"}}],
              "period": {"start": "2012-12-28T09:00:00Z", "end": "2012-12-28T11:20:00.5Z"}
            }"#,
        ));
    }

    #[test]
    fn accepts_every_entry_of_a_synthea_bundle() {
        let bundle: Value =
            serde_json::from_str(include_str!("../tests/fixtures/synthea-bundle.json")).unwrap();
        let entries = bundle["entry"].as_array().unwrap();
        assert!(entries.len() > 50);
        for entry in entries {
            let resource = &entry["resource"];
            assert_eq!(
                validate_resource(r4(), resource),
                Ok(()),
                "{}",
                resource["resourceType"]
            );
        }
        // And the bundle as a whole, entries nested as resources.
        assert_eq!(validate_resource(r4(), &bundle), Ok(()));
    }

    /// Runs over every Synthea bundle in `$SYNTHEA_DIR` (decompressed JSON files), when set:
    /// `SYNTHEA_DIR=/tmp/synthea cargo test -p notary-fhir -- --ignored`.
    #[test]
    #[ignore = "needs SYNTHEA_DIR with decompressed bundles"]
    fn accepts_all_synthea_bundles() {
        let dir = std::env::var("SYNTHEA_DIR").expect("SYNTHEA_DIR");
        let mut count = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if let Err(e) = validate_resource(r4(), &bundle) {
                panic!(
                    "{}: {:#?}",
                    path.display(),
                    &e.issues[..e.issues.len().min(5)]
                );
            }
            count += bundle["entry"].as_array().map_or(0, Vec::len);
        }
        assert!(count > 0);
    }

    #[test]
    fn root_must_be_a_known_concrete_resource() {
        assert_issue(json!([]), "A resource must be a JSON object", "");
        assert_issue(json!({"id": "1"}), "Missing 'resourceType'", "");
        assert_issue(
            json!({"resourceType": 1}),
            "'resourceType' must be a string",
            "",
        );
        assert_issue(
            json!({"resourceType": "Foo"}),
            "Unknown resource type 'Foo'",
            "",
        );
        assert_issue(
            json!({"resourceType": "DomainResource"}),
            "Unknown resource type 'DomainResource'",
            "",
        );
        assert_issue(
            json!({"resourceType": "HumanName"}),
            "Unknown resource type 'HumanName'",
            "",
        );
    }

    #[test]
    fn rejects_unknown_elements_everywhere() {
        assert_issue(
            json!({"resourceType": "Patient", "foo": 1}),
            "Unknown element 'foo'",
            "Patient.foo",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"given": ["a"], "nickname": "b"}]}),
            "Unknown element 'nickname'",
            "Patient.name[0].nickname",
        );
        assert_issue(
            json!({"resourceType": "Patient", "contact": [{"foo": true}]}),
            "Unknown element 'foo'",
            "Patient.contact[0].foo",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"resourceType": "Patient"}]}),
            "Unknown element 'resourceType'",
            "Patient.name[0].resourceType",
        );
        // Case matters in JSON names.
        assert_issue(
            json!({"resourceType": "Patient", "BirthDate": "2000"}),
            "Unknown element 'BirthDate'",
            "Patient.BirthDate",
        );
        // modifierExtension is on backbone elements, not on datatypes.
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"modifierExtension": [{"url": "http://x", "valueString": "y"}]}]}),
            "Unknown element 'modifierExtension'",
            "Patient.name[0].modifierExtension",
        );
    }

    #[test]
    fn checks_choice_elements() {
        assert_issue(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": 1}, "valueString": "a"}),
            "Only one of 'value[x]' may be present, found 'valueQuantity' and 'valueString'",
            "Observation.valueString",
        );
        assert_issue(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueMoney": {"value": 1}}),
            "Unknown element 'valueMoney'",
            "Observation.valueMoney",
        );
        assert_issue(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "value": "a"}),
            "Unknown element 'value'",
            "Observation.value",
        );
        assert_issue(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": "185.5"}}),
            "Element 'value' must be a JSON number (decimal)",
            "Observation.valueQuantity.value",
        );
    }

    #[test]
    fn checks_arrays_and_nulls() {
        assert_issue(
            json!({"resourceType": "Patient", "name": {"family": "a"}}),
            "Element 'name' must be an array",
            "Patient.name",
        );
        assert_issue(
            json!({"resourceType": "Patient", "gender": ["male"]}),
            "Element 'gender' must not be an array",
            "Patient.gender",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": []}),
            "Element 'name' must not be an empty array",
            "Patient.name",
        );
        assert_issue(
            json!({"resourceType": "Patient", "gender": null}),
            "Element 'gender' must not be null",
            "Patient.gender",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [null]}),
            "Element 'name' must not contain null",
            "Patient.name[0]",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"given": ["a", null]}]}),
            "Element 'given' must not contain null",
            "Patient.name[0].given[1]",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{}]}),
            "An element must not be an empty object",
            "Patient.name[0]",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": ["Peter"]}),
            "Element 'name' must be an object (HumanName)",
            "Patient.name[0]",
        );
    }

    #[test]
    fn checks_primitive_extensions() {
        let ext = json!({"extension": [{"url": "http://example.org/x", "valueCode": "a"}]});
        // Parallel arrays, with nulls on either side but not both.
        assert_valid(json!({"resourceType": "Patient", "name": [{
            "given": ["a", null, "c"], "_given": [null, ext, ext]}]}));
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"given": ["a", null], "_given": [ext, null]}]}),
            "Element 'given' must not contain null",
            "Patient.name[0].given[1]",
        );
        assert_issue(
            json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [null, ext]}]}),
            "Element '_given' must have as many items as 'given'",
            "Patient.name[0].given",
        );
        // `_x` alone is fine when it carries an extension.
        assert_valid(json!({"resourceType": "Patient", "_birthDate": ext}));
        assert_valid(
            json!({"resourceType": "Patient", "birthDate": "2000", "_birthDate": {"id": "b"}}),
        );
        assert_issue(
            json!({"resourceType": "Patient", "_birthDate": {"id": "b"}}),
            "Element '_birthDate' without a value for 'birthDate' must have an extension",
            "Patient.birthDate",
        );
        assert_issue(
            json!({"resourceType": "Patient", "birthDate": "2000", "_birthDate": {"foo": 1}}),
            "Unknown element 'foo'",
            "Patient.birthDate.foo",
        );
        assert_issue(
            json!({"resourceType": "Patient", "birthDate": "2000", "_birthDate": "x"}),
            "Element '_birthDate' must be an object",
            "Patient.birthDate",
        );
        assert_issue(
            json!({"resourceType": "Patient", "_name": ext}),
            "Unknown element '_name': 'name' is not a primitive element",
            "Patient._name",
        );
        assert_issue(
            json!({"resourceType": "Patient", "_foo": ext}),
            "Unknown element '_foo'",
            "Patient._foo",
        );
        // A choice counts once across its value and its `_x`.
        assert_valid(
            json!({"resourceType": "Patient", "deceasedBoolean": true, "_deceasedBoolean": ext}),
        );
    }

    #[test]
    fn checks_primitive_kinds_and_formats() {
        let patient = |k: &str, v: Value| {
            let mut p = json!({"resourceType": "Patient"});
            p[k] = v;
            issues(p)
        };
        let one = |msg: &str, at: &str| vec![(msg.to_string(), format!("Patient.{at}"))];
        assert_eq!(
            patient("active", json!("true")),
            one(
                "Element 'active' must be a JSON boolean (boolean)",
                "active"
            )
        );
        assert_eq!(
            patient("birthDate", json!("2020-13-01")),
            one("Invalid date '2020-13-01'", "birthDate")
        );
        assert_eq!(
            patient("birthDate", json!(2020)),
            one(
                "Element 'birthDate' must be a JSON string (date)",
                "birthDate"
            )
        );
        assert_eq!(
            patient("deceasedDateTime", json!("2020-01-01T10:00:00")),
            one("Invalid dateTime '2020-01-01T10:00:00'", "deceasedDateTime")
        );
        assert_eq!(
            patient("gender", json!("")),
            one(
                "Element 'gender' must not be empty or only whitespace",
                "gender"
            )
        );
        assert_eq!(
            patient("gender", json!("fe male")),
            Vec::<(String, String)>::new(),
            "a code may hold single spaces"
        );
        assert_eq!(
            patient("gender", json!("fe  male")),
            one("Invalid code 'fe  male'", "gender")
        );
        assert_eq!(patient("id", json!("a_b")), one("Invalid id 'a_b'", "id"));
        assert_eq!(
            patient("implicitRules", json!("http://a b")),
            one("Invalid uri 'http://a b'", "implicitRules")
        );
        assert_eq!(
            patient("multipleBirthInteger", json!(1.5)),
            one("Invalid integer '1.5'", "multipleBirthInteger")
        );
        assert_eq!(
            patient("multipleBirthInteger", parse("2147483648")),
            one("Invalid integer '2147483648'", "multipleBirthInteger")
        );
        assert_eq!(
            patient("meta", json!({"lastUpdated": "2020-01-01"})),
            one("Invalid instant '2020-01-01'", "meta.lastUpdated")
        );
        assert_eq!(
            patient("photo", json!([{"data": "not base64!"}])),
            one("Invalid base64Binary 'not base64!'", "photo[0].data")
        );
        assert_eq!(
            patient("photo", json!([{"size": 0, "hash": "SGVsbG8="}])),
            Vec::<(String, String)>::new()
        );
        assert_eq!(
            patient("photo", json!([{"size": -1}])),
            one("Invalid unsignedInt '-1'", "photo[0].size")
        );
        assert_eq!(
            patient(
                "communication",
                json!([{"language": {"text": "x"}, "preferred": 1}])
            ),
            one(
                "Element 'preferred' must be a JSON boolean (boolean)",
                "communication[0].preferred"
            )
        );
        assert_eq!(
            patient("text", json!({"status": "generated", "div": "<p>x</p>"})),
            one("Invalid xhtml '<p>x</p>'", "text.div")
        );
        let identifier = |system: &str| {
            issues(json!({"resourceType": "Patient", "identifier": [{"system": system}]}))
        };
        assert!(identifier("urn:oid:1.2.3").is_empty());
        assert!(identifier("urn:uuid:c757873d-ec9a-4326-a141-556f43239520").is_empty());
        let timing = |time: &str| {
            issues(
                json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
                "dosageInstruction": [{"timing": {"repeat": {"timeOfDay": [time], "frequency": 1}}}]}),
            )
        };
        assert!(timing("08:00:00").is_empty());
        assert_eq!(
            timing("8:00"),
            vec![(
                "Invalid time '8:00'".to_string(),
                "MedicationRequest.dosageInstruction[0].timing.repeat.timeOfDay[0]".to_string()
            )]
        );
        let parameters = |v: Value| {
            issues(
                json!({"resourceType": "Parameters", "parameter": [{"name": "a", "valueOid": v}]}),
            )
        };
        assert!(parameters(json!("urn:oid:2.16.840")).is_empty());
        assert_eq!(parameters(json!("2.16.840"))[0].0, "Invalid oid '2.16.840'");
    }

    #[test]
    fn positive_int_excludes_zero() {
        let e = issues(json!({"resourceType": "Patient", "telecom": [{"rank": 0}]}));
        assert_eq!(e[0].0, "Invalid positiveInt '0'");
    }

    #[test]
    fn validates_nested_resources_as_their_own_type() {
        assert_valid(json!({"resourceType": "Patient", "contained": [
            {"resourceType": "Organization", "id": "o1", "name": "Org"}],
            "managingOrganization": {"reference": "#o1"}}));
        assert_issue(
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "nom": "x"}]}),
            "Unknown element 'nom'",
            "Patient.contained[0].nom",
        );
        assert_issue(
            json!({"resourceType": "Patient", "contained": [{"id": "x"}]}),
            "Missing 'resourceType'",
            "Patient.contained[0]",
        );
        assert_issue(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "Patient", "birthDate": "1-1-2000"}}]}),
            "Invalid date '1-1-2000'",
            "Bundle.entry[0].resource.birthDate",
        );
        assert_issue(
            json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Nope"}}]}),
            "Unknown resource type 'Nope'",
            "Parameters.parameter[0].resource",
        );
        assert_valid(
            json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "200", "outcome": {"resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational"}]}}}]}),
        );
    }

    #[test]
    fn reports_missing_required_elements_as_non_structural() {
        let e = validate_resource(r4(), &json!({"resourceType": "Observation"})).unwrap_err();
        assert!(!e.is_structural());
        let got: Vec<_> = e.issues.iter().map(|i| i.expression[0].as_str()).collect();
        assert_eq!(got, ["Observation.status", "Observation.code"]);
        assert!(e.issues.iter().all(|i| i.code == IssueType::Required));
        // Required inside datatypes: Extension.url, Narrative.status/div.
        assert_issue(
            json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]}),
            "Missing required element 'url'",
            "Patient.extension[0].url",
        );
        assert_issue(
            json!({"resourceType": "Patient", "text": {"status": "generated"}}),
            "Missing required element 'div'",
            "Patient.text.div",
        );
        // A required primitive with only an extension is present.
        assert_valid(json!({"resourceType": "Observation", "code": {"text": "x"},
            "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}}));
        // A required choice is named with [x].
        assert_issue(
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/1"}}),
            "Missing required element 'medication[x]'",
            "MedicationRequest.medication[x]",
        );
        let mixed =
            validate_resource(r4(), &json!({"resourceType": "Observation", "x": 1})).unwrap_err();
        assert!(mixed.is_structural());
    }

    #[test]
    fn extensions_take_one_value() {
        assert_issue(
            json!({"resourceType": "Patient", "extension": [
                {"url": "http://x", "valueString": "a", "valueCode": "b"}]}),
            "Only one of 'value[x]' may be present, found 'valueString' and 'valueCode'",
            "Patient.extension[0].valueCode",
        );
        assert_valid(json!({"resourceType": "Patient", "extension": [
            {"url": "http://x", "extension": [{"url": "a", "valueDecimal": 1.10}]}]}));
    }

    #[test]
    fn collects_issues_up_to_the_cap() {
        let mut p = json!({"resourceType": "Patient"});
        for i in 0..300 {
            p[format!("bad{i}")] = json!(1);
        }
        let e = validate_resource(r4(), &p).unwrap_err();
        assert_eq!(e.issues.len(), MAX_ISSUES);
        let two = issues(json!({"resourceType": "Patient", "a": 1, "gender": 2}));
        assert_eq!(two.len(), 2);
    }
}
