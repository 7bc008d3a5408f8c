//! Component schemas derived from the vendored R4 type model: one per resource type, per
//! complex datatype and per backbone element (`Patient.contact`) a resource can reach, and
//! one per primitive type (its JSON type and the lexical pattern of the specification).
//!
//! Elements become properties: a repeating element is a non-empty array, a choice element
//! (`value[x]`) one property per allowed type (`valueQuantity`, `valueString`, …), a
//! required element is listed in `required`, and every type reference is a `$ref`, so each
//! type is described once. `Resource` (in `contained`, `Bundle.entry.resource`) is any
//! object with a known `resourceType`. Objects stay open to other members because FHIR JSON
//! puts a primitive's id and extensions in an `_element` sibling the model does not list.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fhir::definitions::{Definitions, ElementModel, TypeKind};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};

/// The component name of the schema for any resource.
pub const ANY_RESOURCE: &str = "Resource";

/// A `$ref` to the component schema `name`.
pub fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Every schema the FHIR model contributes, by component name.
pub fn fhir_schemas(defs: &Definitions) -> BTreeMap<String, RefOr<Schema>> {
    let mut schemas = BTreeMap::new();
    let mut primitives = BTreeSet::new();
    let mut queue: VecDeque<String> = defs.resource_types().map(str::to_owned).collect();
    let mut seen: BTreeSet<String> = queue.iter().cloned().collect();
    while let Some(name) = queue.pop_front() {
        let Some(model) = defs.type_model(&name) else {
            continue;
        };
        let mut object = ObjectBuilder::new().schema_type(Type::Object);
        if model.kind == TypeKind::Resource {
            object = object
                .property(
                    "resourceType",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name.as_str()])),
                )
                .required("resourceType");
        }
        for element in &model.elements {
            for ty in &element.types {
                if defs.is_primitive(ty) {
                    primitives.insert(ty.clone());
                } else if ty != ANY_RESOURCE && seen.insert(ty.clone()) {
                    queue.push_back(ty.clone());
                }
            }
            object = add_element(object, element);
        }
        schemas.insert(name, RefOr::T(Schema::Object(object.build())));
    }
    for name in primitives {
        schemas.insert(name.clone(), RefOr::T(primitive(&name)));
    }
    let resource_types: Vec<&str> = defs.resource_types().collect();
    schemas.insert(
        ANY_RESOURCE.to_owned(),
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "Any FHIR R4 resource; its resourceType names the schema it follows.",
                ))
                .property(
                    "resourceType",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(resource_types)),
                )
                .required("resourceType")
                .build(),
        )),
    );
    schemas
}

/// Adds the property (or, for a choice element, the properties) of `element`.
fn add_element(mut object: ObjectBuilder, element: &ElementModel) -> ObjectBuilder {
    if element.choice {
        for ty in &element.types {
            object = object.property(
                format!("{}{}", element.name, capitalized(ty)),
                cardinality(element, ty),
            );
        }
        return object;
    }
    let Some(ty) = element.types.first() else {
        return object;
    };
    object = object.property(&element.name, cardinality(element, ty));
    if element.is_required() {
        object = object.required(&element.name);
    }
    object
}

/// The schema of one value of `ty` in `element`: the type's `$ref`, in a non-empty array
/// when the element repeats (FHIR JSON never has empty arrays).
fn cardinality(element: &ElementModel, ty: &str) -> RefOr<Schema> {
    if !element.is_array() {
        return schema_ref(ty);
    }
    let min = element.min.max(1) as usize;
    RefOr::T(Schema::Array(
        ArrayBuilder::new()
            .items(schema_ref(ty))
            .min_items(Some(min))
            .build(),
    ))
}

/// `dateTime` → `DateTime`, the suffix of a choice property.
fn capitalized(ty: &str) -> String {
    let mut chars = ty.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The JSON representation of a primitive type, with the regular expression the R4
/// specification gives for it (datatypes.html#primitive).
fn primitive(name: &str) -> Schema {
    let string = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
    };
    let object = match name {
        "boolean" => ObjectBuilder::new().schema_type(Type::Boolean),
        "integer" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(i32::MIN))
            .maximum(Some(i32::MAX)),
        "positiveInt" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(i32::MAX)),
        "unsignedInt" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(i32::MAX)),
        "decimal" => ObjectBuilder::new().schema_type(SchemaType::Type(Type::Number)),
        "id" => string("^[A-Za-z0-9\\-\\.]{1,64}$"),
        "code" => string("^[^\\s]+( [^\\s]+)*$"),
        "date" => string(
            "^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$",
        ),
        "dateTime" => string(
            "^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$",
        ),
        "instant" => string(
            "^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$",
        ),
        "time" => string("^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?$"),
        "oid" => string("^urn:oid:[0-2](\\.(0|[1-9][0-9]*))+$"),
        "uuid" => string("^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        "uri" | "url" | "canonical" => string("^\\S+$"),
        "base64Binary" => string("^(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+$"),
        // string, markdown, xhtml: any text that is not only whitespace.
        _ => string("\\S"),
    };
    Schema::Object(object.description(Some(format!("FHIR {name}"))).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(schema: &RefOr<Schema>) -> serde_json::Value {
        serde_json::to_value(schema).unwrap()
    }

    #[test]
    fn resources_follow_the_model() {
        let schemas = fhir_schemas(fhir::definitions::r4());
        let patient = json(&schemas["Patient"]);
        assert_eq!(patient["properties"]["resourceType"]["enum"][0], "Patient");
        assert_eq!(
            patient["properties"]["name"]["items"]["$ref"],
            "#/components/schemas/HumanName"
        );
        assert_eq!(patient["properties"]["name"]["minItems"], 1);
        assert_eq!(
            patient["properties"]["birthDate"]["$ref"],
            "#/components/schemas/date"
        );
        assert_eq!(
            patient["properties"]["deceasedDateTime"]["$ref"],
            "#/components/schemas/dateTime"
        );
        assert_eq!(
            patient["properties"]["contact"]["items"]["$ref"],
            "#/components/schemas/Patient.contact"
        );
        let observation = json(&schemas["Observation"]);
        assert_eq!(
            observation["required"],
            serde_json::json!(["resourceType", "status", "code"])
        );
        assert!(observation["properties"]["valueQuantity"].is_object());
        assert!(observation["properties"]["value"].is_null());
        assert!(schemas.contains_key("Patient.contact"));
        assert!(schemas.contains_key("HumanName"));
        assert_eq!(json(&schemas["positiveInt"])["minimum"], 1);
        assert_eq!(json(&schemas["boolean"])["type"], "boolean");
    }

    #[test]
    fn every_reference_has_a_schema() {
        let schemas = fhir_schemas(fhir::definitions::r4());
        let text = serde_json::to_string(&schemas).unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "no schema for {name}");
        }
    }
}
