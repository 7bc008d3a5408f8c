//! The Patient compartment of R4 (`compartmentdefinition-patient`, vendored in
//! `definitions/`): for each resource type, the search parameters whose references to a
//! Patient put a resource in that Patient's compartment, and a membership test for a single
//! resource. Access control uses it to confine a patient-context token to one record, both
//! here (one resource) and as a search filter over the same parameters (many resources).

use std::collections::HashMap;
use std::io::Read;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

use crate::definitions::R4_PATIENT_COMPARTMENT_GZ;
use crate::search::{extract_param, r4_search, IndexValue};

/// Which search parameters place each resource type in a Patient's compartment.
#[derive(Debug, Clone, Default)]
pub struct PatientCompartment {
    params: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct Definition {
    resource: Vec<DefinitionResource>,
}

#[derive(Deserialize)]
struct DefinitionResource {
    code: String,
    #[serde(default)]
    param: Vec<String>,
}

static R4_PATIENT: LazyLock<PatientCompartment> = LazyLock::new(|| {
    // The definition is part of the build: failing to decode it is a build defect the
    // tests catch, not a run-time condition.
    PatientCompartment::from_gzip(R4_PATIENT_COMPARTMENT_GZ)
        .expect("the embedded Patient CompartmentDefinition decodes")
});

/// The R4 Patient compartment.
pub fn patient_compartment() -> &'static PatientCompartment {
    &R4_PATIENT
}

impl PatientCompartment {
    /// Decodes a gzipped CompartmentDefinition.
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| format!("the compartment definition is not gzip: {e}"))?;
        let def: Definition = serde_json::from_slice(&json)
            .map_err(|e| format!("the compartment definition does not parse: {e}"))?;
        let params = def
            .resource
            .into_iter()
            .filter(|r| !r.param.is_empty())
            .map(|r| (r.code, r.param))
            .collect();
        Ok(PatientCompartment { params })
    }

    /// The parameters linking `resource_type` to a Patient; empty when resources of that
    /// type are never in a Patient's compartment (apart from the Patient itself).
    pub fn params(&self, resource_type: &str) -> &[String] {
        self.params
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The resource types that can be in a Patient's compartment.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }

    /// Whether `resource` is in the compartment of `Patient/<patient_id>`: it is that
    /// Patient, or one of its compartment parameters references `Patient/<patient_id>`
    /// (relatively, as references to this server's own resources are written).
    pub fn contains(&self, resource: &Value, patient_id: &str) -> bool {
        self.patients(resource).iter().any(|p| p == patient_id)
    }

    /// The ids of every Patient whose compartment holds `resource` (the Patient itself, and
    /// the Patients its compartment parameters reference), without duplicates, in the
    /// order found. The audit trail names them, so an auditor can ask who saw whose record.
    pub fn patients(&self, resource: &Value) -> Vec<String> {
        let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
            return Vec::new();
        };
        let mut found: Vec<String> = Vec::new();
        if ty == "Patient" {
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                found.push(id.to_owned());
            }
        }
        let registry = r4_search();
        for code in self.params(ty) {
            let Some(param) = registry.param(ty, code) else {
                continue;
            };
            for value in extract_param(param, resource).unwrap_or_default() {
                if let IndexValue::Reference(r) = value {
                    if r.contained || r.url.is_some() || r.target_type.as_deref() != Some("Patient")
                    {
                        continue;
                    }
                    if let Some(id) = r.id {
                        if !found.contains(&id) {
                            found.push(id);
                        }
                    }
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_definition_names_the_usual_links() {
        let c = patient_compartment();
        assert!(c.params("Observation").contains(&"subject".to_owned()));
        assert!(c
            .params("AllergyIntolerance")
            .contains(&"patient".to_owned()));
        assert_eq!(c.params("Patient"), ["link".to_owned()]);
        assert!(c.params("Organization").is_empty());
    }

    #[test]
    fn membership_follows_references_to_the_patient() {
        let c = patient_compartment();
        let me = json!({"resourceType": "Patient", "id": "p1"});
        let other = json!({"resourceType": "Patient", "id": "p2"});
        let mine = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        let theirs = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}});
        let org = json!({"resourceType": "Organization", "id": "o1"});
        assert!(c.contains(&me, "p1"));
        assert!(!c.contains(&other, "p1"));
        assert!(c.contains(&mine, "p1"));
        assert!(!c.contains(&theirs, "p1"));
        assert!(!c.contains(&org, "p1"));
        assert_eq!(c.patients(&me), ["p1"]);
        assert_eq!(c.patients(&mine), ["p1"]);
        assert!(c.patients(&org).is_empty());
        let both = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "Patient/p2"}, {"reference": "Patient/p1"}]});
        let mut named = c.patients(&both);
        named.sort();
        assert_eq!(named, ["p1", "p2"]);
    }
}
