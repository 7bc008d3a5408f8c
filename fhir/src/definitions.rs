//! The R4 type model: which resource types exist and, for every type, which elements it has,
//! with their cardinality, types and summary flags.
//!
//! The model is compacted from the official StructureDefinitions by
//! `scripts/vendor-definitions.py` (see `fhir/definitions/README.md`) and embedded in the
//! binary, so validation needs no files at run time. It is decoded once, on first use.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::LazyLock;

use serde::Deserialize;

/// The gzipped compact model, as written by `scripts/vendor-definitions.py`.
const R4_MODEL: &[u8] = include_bytes!("../definitions/r4-model.json.gz");

/// The FHIR R4 SearchParameter Bundle (gzipped JSON), for the search implementation.
pub const R4_SEARCH_PARAMETERS_GZ: &[u8] =
    include_bytes!("../definitions/search-parameters.json.gz");

/// The FHIR R4 Patient CompartmentDefinition (gzipped JSON).
pub const R4_PATIENT_COMPARTMENT_GZ: &[u8] =
    include_bytes!("../definitions/compartmentdefinition-patient.json.gz");

static R4: LazyLock<Definitions> = LazyLock::new(|| {
    // The model is part of the build: failing to decode it is a build defect, which the
    // tests catch, not a run-time condition to handle.
    Definitions::from_gzip(R4_MODEL).expect("the embedded R4 model decodes")
});

/// The FHIR R4 (4.0.1) definitions.
pub fn r4() -> &'static Definitions {
    &R4
}

/// What kind of type a [`TypeModel`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeKind {
    /// A concrete resource type such as `Patient`.
    Resource,
    /// `Resource` or `DomainResource`: a base of resources that cannot be instantiated.
    AbstractResource,
    /// A complex datatype such as `HumanName`.
    ComplexType,
    /// A primitive datatype such as `date`.
    PrimitiveType,
    /// An element defined inline in another type, named by its path (`Patient.contact`).
    Backbone,
}

/// One child element of a type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ElementModel {
    /// The element name, without `[x]` for choice elements (`value` for `value[x]`).
    pub name: String,
    /// Whether this is a choice element (`value[x]`), which appears in JSON with the type
    /// appended to its name (`valueQuantity`).
    #[serde(default)]
    pub choice: bool,
    /// Minimum cardinality.
    pub min: u32,
    /// Maximum cardinality: `"1"` or `"*"` (any maximum above one is recorded as `"*"`).
    pub max: String,
    /// The allowed types: primitive or complex type names, a backbone path such as
    /// `Patient.contact`, `Resource` for any resource, or a concrete resource type.
    pub types: Vec<String>,
    /// Whether the element is part of the summary (`_summary=true`).
    #[serde(default)]
    pub summary: bool,
}

impl ElementModel {
    /// Whether the element repeats (is an array in JSON).
    pub fn is_array(&self) -> bool {
        self.max == "*"
    }

    /// Whether the element must be present (`min >= 1`).
    pub fn is_required(&self) -> bool {
        self.min >= 1
    }
}

/// A type and its child elements, inherited ones included.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TypeModel {
    /// What kind of type this is.
    pub kind: TypeKind,
    /// The child elements, in the order the specification lists them.
    pub elements: Vec<ElementModel>,
}

impl TypeModel {
    /// The element named `name` (a choice element by its name without `[x]`).
    pub fn element(&self, name: &str) -> Option<&ElementModel> {
        self.elements.iter().find(|e| e.name == name)
    }

    /// The element a JSON property name stands for, and the type it carries: `gender` gives
    /// (`gender`, `code`), `valueQuantity` gives (`value[x]`, `Quantity`). None when the name
    /// is not an element of this type (or names a type a choice does not allow).
    pub fn property(&self, json_name: &str) -> Option<(&ElementModel, &str)> {
        for element in &self.elements {
            if element.choice {
                let Some(suffix) = json_name.strip_prefix(element.name.as_str()) else {
                    continue;
                };
                if let Some(ty) = element.types.iter().find(|t| choice_suffix_is(suffix, t)) {
                    return Some((element, ty));
                }
            } else if element.name == json_name && element.types.len() == 1 {
                return Some((element, &element.types[0]));
            }
        }
        None
    }
}

/// Whether `suffix` is the JSON name suffix for choice type `ty`: the type name with its first
/// letter capitalised (`dateTime` → `DateTime`).
fn choice_suffix_is(suffix: &str, ty: &str) -> bool {
    let mut s = suffix.chars();
    let mut t = ty.chars();
    match (s.next(), t.next()) {
        (Some(a), Some(b)) if a == b.to_ascii_uppercase() => s.as_str() == t.as_str(),
        _ => false,
    }
}

/// The compact model as stored.
#[derive(Deserialize)]
struct RawModel {
    primitives: BTreeSet<String>,
    resources: BTreeSet<String>,
    types: HashMap<String, TypeModel>,
}

/// A decoded set of FHIR definitions.
#[derive(Debug)]
pub struct Definitions {
    primitives: BTreeSet<String>,
    resources: BTreeSet<String>,
    types: HashMap<String, TypeModel>,
}

/// Why a compact model could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The gzip stream is corrupt.
    #[error("cannot decompress the model: {0}")]
    Gzip(#[from] std::io::Error),
    /// The JSON does not have the compact model's shape.
    #[error("cannot parse the model: {0}")]
    Json(#[from] serde_json::Error),
}

impl Definitions {
    /// Decode a gzipped compact model (the format `scripts/vendor-definitions.py` writes).
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut json)?;
        let raw: RawModel = serde_json::from_slice(&json)?;
        Ok(Definitions {
            primitives: raw.primitives,
            resources: raw.resources,
            types: raw.types,
        })
    }

    /// Whether `name` is a concrete resource type (`Patient`; not `Resource` or
    /// `DomainResource`, which cannot be instantiated).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resources.contains(name)
    }

    /// The concrete resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(String::as_str)
    }

    /// Whether `name` is a primitive type (`string`, `dateTime`, …).
    pub fn is_primitive(&self, name: &str) -> bool {
        self.primitives.contains(name)
    }

    /// The model of a resource, datatype or backbone element (`Patient.contact`).
    pub fn type_model(&self, name: &str) -> Option<&TypeModel> {
        self.types.get(name)
    }

    /// The top-level elements a resource type requires (`min >= 1`); empty for unknown types.
    pub fn required_elements(&self, resource_type: &str) -> impl Iterator<Item = &ElementModel> {
        self.type_model(resource_type)
            .into_iter()
            .flat_map(|t| t.elements.iter().filter(|e| e.is_required()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_146_concrete_r4_resource_types() {
        let defs = r4();
        // R4 4.0.1 defines 146 concrete resource types; the R4B SubscriptionStatus that the
        // npm package also ships is left out by the vendoring script.
        assert_eq!(defs.resource_types().count(), 146);
        assert!(defs.is_resource_type("Patient"));
        assert!(defs.is_resource_type("Parameters"));
        assert!(!defs.is_resource_type("Resource"));
        assert!(!defs.is_resource_type("DomainResource"));
        assert!(!defs.is_resource_type("SubscriptionStatus"));
        assert!(!defs.is_resource_type("HumanName"));
        let names: Vec<&str> = defs.resource_types().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn models_resources_datatypes_and_backbones() {
        let defs = r4();
        let patient = defs.type_model("Patient").unwrap();
        assert_eq!(patient.kind, TypeKind::Resource);
        let name = patient.element("name").unwrap();
        assert!(name.is_array() && name.summary);
        assert_eq!(name.types, ["HumanName"]);
        assert_eq!(patient.element("id").unwrap().types, ["id"]);
        assert_eq!(
            patient.element("contact").unwrap().types,
            ["Patient.contact"]
        );
        let contact = defs.type_model("Patient.contact").unwrap();
        assert_eq!(contact.kind, TypeKind::Backbone);
        assert!(contact.element("modifierExtension").is_some());
        assert_eq!(
            defs.type_model("HumanName").unwrap().kind,
            TypeKind::ComplexType
        );
        assert!(defs.is_primitive("dateTime"));
        assert_eq!(
            defs.type_model("Extension")
                .unwrap()
                .element("url")
                .unwrap()
                .types,
            ["uri"]
        );
        // contentReference: Questionnaire.item.item is another Questionnaire.item.
        let item = defs.type_model("Questionnaire.item").unwrap();
        assert_eq!(item.element("item").unwrap().types, ["Questionnaire.item"]);
    }

    #[test]
    fn leaves_out_medplum_additions_to_r4() {
        let defs = r4();
        let meta = defs.type_model("Meta").unwrap();
        let names: Vec<&str> = meta.elements.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "extension",
                "versionId",
                "lastUpdated",
                "source",
                "profile",
                "security",
                "tag"
            ]
        );
        assert!(defs.type_model("Binary").unwrap().element("url").is_none());
        let outcome = defs.type_model("Bundle.entry.response").unwrap();
        assert_eq!(outcome.element("outcome").unwrap().types, ["Resource"]);
    }

    #[test]
    fn resolves_choice_properties() {
        let obs = r4().type_model("Observation").unwrap();
        let (el, ty) = obs.property("valueQuantity").unwrap();
        assert_eq!((el.name.as_str(), ty), ("value", "Quantity"));
        assert_eq!(obs.property("effectiveDateTime").unwrap().1, "dateTime");
        assert!(obs.property("valueMoney").is_none());
        assert!(obs.property("value").is_none());
        assert!(obs.property("valuequantity").is_none());
        assert_eq!(obs.property("status").unwrap().1, "code");
    }

    #[test]
    fn knows_required_elements() {
        let required: Vec<&str> = r4()
            .required_elements("Observation")
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(required, ["status", "code"]);
    }

    #[test]
    fn embedded_search_data_decompresses() {
        for bytes in [R4_SEARCH_PARAMETERS_GZ, R4_PATIENT_COMPARTMENT_GZ] {
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut json)
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert!(v["resourceType"].is_string());
        }
    }
}
