//! `_summary` and `_elements`: returning part of a resource
//! (https://hl7.org/fhir/R4/search.html#summary, #elements).
//!
//! Both work on the resource JSON in place, guided by the [`definitions`] model, and mark a
//! resource that lost content with the `SUBSETTED` tag so a client does not mistake it for the
//! whole resource (and, say, PUT it back). A primitive's `_x` twin goes wherever `x` goes.
//! `_summary=count` is not a projection of a resource; the server handles it.
//!
//! [`definitions`]: crate::definitions

use serde_json::{json, Map, Value};

use crate::definitions::{Definitions, ElementModel, TypeKind, TypeModel};

/// The system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The values of `_summary` that select part of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    /// `true`: only the elements marked as summary in the definitions (and mandatory ones).
    True,
    /// `text`: `text`, `id`, `meta` and the mandatory top-level elements.
    Text,
    /// `data`: everything but `text`.
    Data,
    /// `false`: the whole resource.
    False,
}

/// Reduce `resource` to what `_summary=mode` returns. Values that are not objects of a known
/// resource type are left alone.
pub fn apply_summary(defs: &Definitions, resource: &mut Value, mode: SummaryMode) {
    let Some((model, obj)) = resource_parts(defs, resource) else {
        return;
    };
    let removed = match mode {
        SummaryMode::False => false,
        SummaryMode::Data => obj.shift_remove("text").is_some(),
        SummaryMode::Text => retain(model, obj, |el| {
            matches!(el.name.as_str(), "id" | "meta" | "text") || el.is_required()
        }),
        SummaryMode::True => summarize(defs, model, obj),
    };
    if removed {
        mark_subsetted(obj);
    }
}

/// Reduce `resource` to the top-level `elements` (as given to `_elements`), plus `id`, `meta`
/// and the mandatory elements, which the specification says servers should always return.
///
/// A name may carry the resource type as a prefix (`Patient.name`) and, for a choice element,
/// be written as `value`, `value[x]` or a typed name (`valueQuantity`). A longer path
/// (`name.given`) keeps its whole top-level element: R4 defines `_elements` for top-level
/// elements only.
pub fn apply_elements(defs: &Definitions, resource: &mut Value, elements: &[&str]) {
    let Some((model, obj)) = resource_parts(defs, resource) else {
        return;
    };
    let resource_type = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let wanted: Vec<&str> = elements
        .iter()
        .map(|e| {
            let e = e.trim();
            let e = e
                .strip_prefix(resource_type.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(e);
            e.split('.').next().unwrap_or(e)
        })
        .collect();
    let removed = retain(model, obj, |el| {
        matches!(el.name.as_str(), "id" | "meta")
            || el.is_required()
            || wanted.iter().any(|w| names_element(w, model, el))
    });
    if removed {
        mark_subsetted(obj);
    }
}

/// Whether `_elements` entry `wanted` names `element`.
fn names_element(wanted: &str, model: &TypeModel, element: &ElementModel) -> bool {
    if wanted == element.name {
        return true;
    }
    element.choice
        && (wanted.strip_suffix("[x]") == Some(element.name.as_str())
            || model
                .property(wanted)
                .is_some_and(|(el, _)| el.name == element.name))
}

/// The type model and object of a resource, if it is one of a known type.
fn resource_parts<'d, 'v>(
    defs: &'d Definitions,
    resource: &'v mut Value,
) -> Option<(&'d TypeModel, &'v mut Map<String, Value>)> {
    let obj = resource.as_object_mut()?;
    let resource_type = obj.get("resourceType")?.as_str()?;
    if !defs.is_resource_type(resource_type) {
        return None;
    }
    Some((defs.type_model(resource_type)?, obj))
}

/// Keep only the properties (and their `_x` twins) whose element `keep` accepts; properties
/// that name no element are dropped too. `resourceType` always stays. Returns whether
/// anything was removed.
fn retain(
    model: &TypeModel,
    obj: &mut Map<String, Value>,
    mut keep: impl FnMut(&ElementModel) -> bool,
) -> bool {
    let before = obj.len();
    obj.retain(|key, _| {
        if key == "resourceType" {
            return true;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        model.property(name).is_some_and(|(el, _)| keep(el))
    });
    obj.len() != before
}

/// `_summary=true` on an object of type `model`: keep summary and mandatory elements, then
/// do the same inside backbone elements. Datatypes are kept whole: nearly all their elements
/// are summary elements, and cutting into them (dropping `Attachment.data`, say) would return
/// values that look complete but are not. Nested resources are kept whole too.
fn summarize(defs: &Definitions, model: &TypeModel, obj: &mut Map<String, Value>) -> bool {
    let mut removed = retain(model, obj, |el| el.summary || el.is_required());
    for (key, value) in obj.iter_mut() {
        let Some((_, ty)) = model.property(key) else {
            continue;
        };
        let Some(child) = defs.type_model(ty).filter(|t| t.kind == TypeKind::Backbone) else {
            continue;
        };
        let items: Vec<&mut Value> = match value {
            Value::Array(items) => items.iter_mut().collect(),
            other => vec![other],
        };
        for item in items {
            if let Value::Object(o) = item {
                removed |= summarize(defs, child, o);
            }
        }
    }
    removed
}

/// Add the `SUBSETTED` tag to `meta.tag`, unless it is there already.
fn mark_subsetted(obj: &mut Map<String, Value>) {
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    let Value::Object(meta) = meta else {
        return;
    };
    let tags = meta.entry("tag").or_insert_with(|| json!([]));
    let Value::Array(tags) = tags else {
        return;
    };
    let present = tags
        .iter()
        .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == "SUBSETTED");
    if !present {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::r4;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2"},
            "text": {"status": "generated", "div": "<div>Peter</div>"},
            "extension": [{"url": "http://x", "valueString": "y"}],
            "identifier": [{"value": "1"}],
            "active": true,
            "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://t", "valueDateTime": "1974-12-25T14:35:45Z"}]},
            "maritalStatus": {"text": "M"},
            "contact": [{"name": {"family": "x"}}],
            "link": [{"other": {"reference": "Patient/2"}, "type": "seealso", "extension": [{"url": "http://e", "valueCode": "c"}]}]
        })
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn subsetted(v: &Value) -> bool {
        v["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    }

    #[test]
    fn summary_true_keeps_summary_elements() {
        let mut p = patient();
        apply_summary(r4(), &mut p, SummaryMode::True);
        assert_eq!(
            keys(&p),
            [
                "resourceType",
                "id",
                "meta",
                "identifier",
                "active",
                "name",
                "birthDate",
                "_birthDate",
                "link"
            ]
        );
        // Inside the backbone Patient.link, the non-summary extension goes; required ones stay.
        assert_eq!(keys(&p["link"][0]), ["other", "type"]);
        assert!(subsetted(&p));
        assert_eq!(p["meta"]["versionId"], "2");
    }

    #[test]
    fn summary_keeps_mandatory_elements() {
        let mut o = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "note": [{"text": "n"}],
            "component": [{"code": {"text": "c"}, "valueString": "v", "interpretation": [{"text": "i"}]}]});
        apply_summary(r4(), &mut o, SummaryMode::True);
        assert_eq!(
            keys(&o),
            ["resourceType", "status", "code", "component", "meta"]
        );
        assert_eq!(keys(&o["component"][0]), ["code", "valueString"]);
    }

    #[test]
    fn summary_text_and_data() {
        let mut p = patient();
        apply_summary(r4(), &mut p, SummaryMode::Text);
        assert_eq!(keys(&p), ["resourceType", "id", "meta", "text"]);
        assert!(subsetted(&p));

        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "text": {"status": "generated", "div": "<div>x</div>"}, "note": [{"text": "n"}]});
        apply_summary(r4(), &mut o, SummaryMode::Text);
        assert_eq!(keys(&o), ["resourceType", "status", "code", "text", "meta"]);

        let mut p = patient();
        apply_summary(r4(), &mut p, SummaryMode::Data);
        assert!(p.get("text").is_none());
        assert!(p.get("contact").is_some());
        assert!(subsetted(&p));
    }

    #[test]
    fn summary_false_and_nothing_removed_leave_the_resource_alone() {
        let mut p = patient();
        apply_summary(r4(), &mut p, SummaryMode::False);
        assert_eq!(p, patient());

        let mut small = json!({"resourceType": "Patient", "id": "1", "active": true});
        apply_summary(r4(), &mut small, SummaryMode::Data);
        assert_eq!(
            small,
            json!({"resourceType": "Patient", "id": "1", "active": true})
        );
    }

    #[test]
    fn elements_keeps_named_top_level_elements() {
        let mut p = patient();
        apply_elements(r4(), &mut p, &["birthDate", "Patient.name", "contact.name"]);
        assert_eq!(
            keys(&p),
            [
                "resourceType",
                "id",
                "meta",
                "name",
                "birthDate",
                "_birthDate",
                "contact"
            ]
        );
        assert!(subsetted(&p));
        let tags = p["meta"]["tag"].as_array().unwrap().len();
        apply_elements(r4(), &mut p, &["birthDate"]);
        assert_eq!(
            p["meta"]["tag"].as_array().unwrap().len(),
            tags,
            "tag added once"
        );
    }

    #[test]
    fn elements_matches_choices_and_keeps_mandatory() {
        // Parsed from text: the json! macro would round 185.50 through f64.
        let obs = || -> Value {
            serde_json::from_str(
                r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                    "valueQuantity": {"value": 185.50}, "note": [{"text": "n"}]}"#,
            )
            .unwrap()
        };
        for name in ["value", "value[x]", "valueQuantity"] {
            let mut o = obs();
            apply_elements(r4(), &mut o, &[name]);
            assert_eq!(
                keys(&o),
                ["resourceType", "status", "code", "valueQuantity", "meta"],
                "{name}"
            );
            assert_eq!(o["valueQuantity"]["value"].to_string(), "185.50");
        }
    }

    #[test]
    fn ignores_what_is_not_a_resource() {
        let mut v = json!({"resourceType": "Nope", "a": 1});
        apply_summary(r4(), &mut v, SummaryMode::True);
        apply_elements(r4(), &mut v, &["b"]);
        assert_eq!(v, json!({"resourceType": "Nope", "a": 1}));
    }
}
