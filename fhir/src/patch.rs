//! PATCH bodies applied to a resource: JSON Patch (RFC 6902, through the `json-patch`
//! crate) and FHIRPath Patch (fhirpatch.html, a `Parameters` resource of operations whose
//! paths are FHIRPath expressions, evaluated with [`crate::fhirpath`]).
//!
//! A patch either applies completely or not at all (the input is untouched on error). The
//! result is not validated here: the caller validates it like any other write, so a patch
//! cannot produce what an update could not store.

use serde_json::{Map, Value};

use crate::definitions::{self, Definitions};
use crate::fhirpath::{self, Expr, Item};

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The patch is well formed but does not apply to this resource (422).
    #[error("{0}")]
    NotApplicable(String),
}

/// Applies a JSON Patch document (an array of operations) to `resource`.
pub fn apply_json_patch(resource: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("not a JSON Patch document: {e}")))?;
    // json_patch applies atomically: on error the document is restored.
    json_patch::patch(resource, &patch).map_err(|e| PatchError::NotApplicable(e.to_string()))
}

/// One FHIRPath Patch operation, read from a `Parameters.parameter` named `operation`.
#[derive(Debug, Clone, PartialEq)]
enum Operation {
    Add {
        path: String,
        name: String,
        value: Value,
        suffix: Option<String>,
    },
    Insert {
        path: String,
        index: usize,
        value: Value,
    },
    Delete {
        path: String,
    },
    Replace {
        path: String,
        value: Value,
    },
    Move {
        path: String,
        source: usize,
        destination: usize,
    },
}

/// Applies a FHIRPath Patch (`Parameters`) to `resource`, operation by operation.
pub fn apply_fhirpath_patch(resource: &mut Value, parameters: &Value) -> Result<(), PatchError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(PatchError::Invalid(
            "a FHIRPath Patch is a Parameters resource".into(),
        ));
    }
    let operations = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if operations.is_empty() {
        return Err(PatchError::Invalid(
            "the Parameters hold no operation".into(),
        ));
    }
    let parsed = operations
        .iter()
        .enumerate()
        .map(|(i, p)| read_operation(i, p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut work = resource.clone();
    for (i, op) in parsed.iter().enumerate() {
        apply(&mut work, op).map_err(|e| match e {
            PatchError::Invalid(m) => PatchError::Invalid(format!("operation {i}: {m}")),
            PatchError::NotApplicable(m) => {
                PatchError::NotApplicable(format!("operation {i}: {m}"))
            }
        })?;
    }
    *resource = work;
    Ok(())
}

fn read_operation(i: usize, parameter: &Value) -> Result<Operation, PatchError> {
    let bad = |m: String| PatchError::Invalid(format!("operation {i}: {m}"));
    if parameter.get("name").and_then(Value::as_str) != Some("operation") {
        return Err(bad("every parameter must be named 'operation'".into()));
    }
    let parts = parameter
        .get("part")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let part = |name: &str| {
        parts
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
    };
    let text = |name: &str| -> Result<String, PatchError> {
        part(name)
            .and_then(|p| primitive_value(p))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("the part '{name}' is missing or not text")))
    };
    let index = |name: &str| -> Result<usize, PatchError> {
        part(name)
            .and_then(|p| primitive_value(p))
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                bad(format!(
                    "the part '{name}' is missing or not a non-negative integer"
                ))
            })
    };
    let value = || -> Result<(Value, Option<String>), PatchError> {
        let p = part("value").ok_or_else(|| bad("the part 'value' is missing".into()))?;
        part_value(p).ok_or_else(|| bad("the part 'value' has no value".into()))
    };
    Ok(match text("type")?.as_str() {
        "add" => {
            let (value, suffix) = value()?;
            Operation::Add {
                path: text("path")?,
                name: text("name")?,
                value,
                suffix,
            }
        }
        "insert" => Operation::Insert {
            path: text("path")?,
            index: index("index")?,
            value: value()?.0,
        },
        "delete" => Operation::Delete {
            path: text("path")?,
        },
        "replace" => Operation::Replace {
            path: text("path")?,
            value: value()?.0,
        },
        "move" => Operation::Move {
            path: text("path")?,
            source: index("source")?,
            destination: index("destination")?,
        },
        other => {
            return Err(bad(format!(
                "'{other}' is not a FHIRPath Patch operation type"
            )))
        }
    })
}

/// The `value[x]` of a part, if it has one.
fn primitive_value(part: &Value) -> Option<&Value> {
    part.as_object()?
        .iter()
        .find(|(k, _)| k.len() > 5 && k.starts_with("value"))
        .map(|(_, v)| v)
}

/// A part's value: its `value[x]` (with the type suffix, `Boolean` for `valueBoolean`), or an
/// element assembled from its nested parts (for anonymous types such as backbone elements).
fn part_value(part: &Value) -> Option<(Value, Option<String>)> {
    if let Some((key, value)) = part
        .as_object()?
        .iter()
        .find(|(k, _)| k.len() > 5 && k.starts_with("value"))
    {
        return Some((value.clone(), Some(key["value".len()..].to_owned())));
    }
    let parts = part.get("part")?.as_array()?;
    let mut object = Map::new();
    for p in parts {
        let name = p.get("name")?.as_str()?.to_owned();
        let (value, _) = part_value(p)?;
        object.insert(name, value);
    }
    Some((Value::Object(object), None))
}

fn parse_path(path: &str) -> Result<Expr, PatchError> {
    fhirpath::parse(path).map_err(|e| PatchError::Invalid(format!("path '{path}': {e}")))
}

/// One step from a value to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where an item the evaluator returned sits in `root`, found by address (the evaluator
/// hands out references into the very value it was given).
fn locate(root: &Value, target: &Value) -> Option<Vec<Step>> {
    fn walk(node: &Value, target: &Value, steps: &mut Vec<Step>) -> bool {
        if std::ptr::eq(node, target) {
            return true;
        }
        match node {
            Value::Object(map) => {
                for (k, v) in map {
                    steps.push(Step::Key(k.clone()));
                    if walk(v, target, steps) {
                        return true;
                    }
                    steps.pop();
                }
                false
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    steps.push(Step::Index(i));
                    if walk(v, target, steps) {
                        return true;
                    }
                    steps.pop();
                }
                false
            }
            _ => false,
        }
    }
    let mut steps = Vec::new();
    walk(root, target, &mut steps).then_some(steps)
}

fn at_mut<'v>(root: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(root, |node, step| match step {
        Step::Key(k) => node.get_mut(k.as_str()),
        Step::Index(i) => node.get_mut(*i),
    })
}

/// The elements `path` selects in `resource`: their locations and FHIR types.
fn select(resource: &Value, path: &str) -> Result<Vec<(Vec<Step>, String)>, PatchError> {
    let expr = parse_path(path)?;
    let items = fhirpath::evaluate(&expr, resource)
        .map_err(|e| PatchError::NotApplicable(format!("path '{path}': {e}")))?;
    items
        .iter()
        .map(|item| match item {
            Item::Node { value, ty } => locate(resource, value)
                .map(|steps| (steps, (*ty).to_owned()))
                .ok_or_else(|| {
                    PatchError::NotApplicable(format!("path '{path}' selects a computed value"))
                }),
            _ => Err(PatchError::NotApplicable(format!(
                "path '{path}' selects a computed value, not an element"
            ))),
        })
        .collect()
}

fn single(resource: &Value, path: &str) -> Result<Option<(Vec<Step>, String)>, PatchError> {
    let mut found = select(resource, path)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(PatchError::NotApplicable(format!(
            "path '{path}' selects {n} elements where one is needed"
        ))),
    }
}

/// The collection a path names: the container element and the name of the list in it
/// (`Patient.identifier` → the Patient and `identifier`).
fn list_of(resource: &Value, path: &str) -> Result<(Vec<Step>, String), PatchError> {
    let expr = parse_path(path)?;
    let Expr::Member(container, name) = expr else {
        return Err(PatchError::Invalid(format!(
            "path '{path}' must end with the name of a list element"
        )));
    };
    let items = fhirpath::evaluate(&container, resource)
        .map_err(|e| PatchError::NotApplicable(format!("path '{path}': {e}")))?;
    match items.as_slice() {
        [Item::Node { value, .. }] => locate(resource, value)
            .map(|steps| (steps, name))
            .ok_or_else(|| PatchError::NotApplicable(format!("path '{path}' not found"))),
        [] => Err(PatchError::NotApplicable(format!(
            "the element holding '{path}' does not exist"
        ))),
        _ => Err(PatchError::NotApplicable(format!(
            "path '{path}' is ambiguous: its container matches several elements"
        ))),
    }
}

fn apply(resource: &mut Value, op: &Operation) -> Result<(), PatchError> {
    let defs = definitions::r4();
    let missing = |path: &str| PatchError::NotApplicable(format!("path '{path}' matches nothing"));
    match op {
        Operation::Add {
            path,
            name,
            value,
            suffix,
        } => {
            let (steps, ty) = single(resource, path)?.ok_or_else(|| missing(path))?;
            let (key, repeats) = element_key(defs, &ty, name, suffix.as_deref())?;
            let container = at_mut(resource, &steps)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| {
                    PatchError::NotApplicable(format!(
                        "path '{path}' is not an element with children"
                    ))
                })?;
            if repeats {
                match container
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(items) => items.push(value.clone()),
                    _ => return Err(PatchError::NotApplicable(format!("'{name}' is not a list"))),
                }
            } else if container.contains_key(&key) {
                return Err(PatchError::NotApplicable(format!(
                    "'{name}' already has a value at '{path}': use replace"
                )));
            } else {
                container.insert(key, value.clone());
            }
        }
        Operation::Insert { path, index, value } => {
            let (steps, name) = list_of(resource, path)?;
            let container = at_mut(resource, &steps)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| missing(path))?;
            let list = container
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = list else {
                return Err(PatchError::NotApplicable(format!("'{path}' is not a list")));
            };
            if *index > items.len() {
                return Err(PatchError::NotApplicable(format!(
                    "index {index} is beyond the {} items of '{path}'",
                    items.len()
                )));
            }
            items.insert(*index, value.clone());
        }
        Operation::Delete { path } => {
            // Deleting what is not there is not an error (fhirpatch.html).
            let Some((steps, _)) = single(resource, path)? else {
                return Ok(());
            };
            remove_at(resource, &steps, path)?;
        }
        Operation::Replace { path, value } => {
            let (steps, _) = single(resource, path)?.ok_or_else(|| missing(path))?;
            if steps.is_empty() {
                return Err(PatchError::NotApplicable(
                    "the resource itself cannot be replaced by a patch".into(),
                ));
            }
            let slot = at_mut(resource, &steps).ok_or_else(|| missing(path))?;
            *slot = value.clone();
        }
        Operation::Move {
            path,
            source,
            destination,
        } => {
            let (steps, name) = list_of(resource, path)?;
            let items = at_mut(resource, &steps)
                .and_then(|c| c.get_mut(name.as_str()))
                .and_then(Value::as_array_mut)
                .ok_or_else(|| missing(path))?;
            if *source >= items.len() || *destination >= items.len() {
                return Err(PatchError::NotApplicable(format!(
                    "move {source} → {destination} is outside the {} items of '{path}'",
                    items.len()
                )));
            }
            let item = items.remove(*source);
            items.insert(*destination, item);
        }
    }
    Ok(())
}

/// Removes the element at `steps`; a list left empty is removed too (FHIR has no empty
/// arrays), as is the `_name` companion of a removed primitive.
fn remove_at(resource: &mut Value, steps: &[Step], path: &str) -> Result<(), PatchError> {
    let Some((last, parent_steps)) = steps.split_last() else {
        return Err(PatchError::NotApplicable(
            "the resource itself cannot be deleted by a patch".into(),
        ));
    };
    let parent = at_mut(resource, parent_steps)
        .ok_or_else(|| PatchError::NotApplicable(format!("path '{path}' not found")))?;
    match (last, parent) {
        (Step::Key(k), Value::Object(map)) => {
            map.shift_remove(k);
            map.shift_remove(&format!("_{k}"));
        }
        (Step::Index(i), Value::Array(items)) => {
            items.remove(*i);
            if items.is_empty() {
                if let Some((Step::Key(list), grand)) = parent_steps.split_last() {
                    if let Some(Value::Object(map)) = at_mut(resource, grand) {
                        map.shift_remove(list);
                    }
                }
            }
        }
        _ => {
            return Err(PatchError::NotApplicable(format!(
                "path '{path}' not found"
            )))
        }
    }
    Ok(())
}

/// The JSON key for adding element `name` to an element of type `ty`, and whether it
/// repeats. A choice element takes its type from the value (`valueBoolean` → `…Boolean`).
fn element_key(
    defs: &Definitions,
    ty: &str,
    name: &str,
    suffix: Option<&str>,
) -> Result<(String, bool), PatchError> {
    let unknown = || PatchError::NotApplicable(format!("'{name}' is not an element of {ty}"));
    let model = defs.type_model(ty).ok_or_else(unknown)?;
    if let Some(element) = model.element(name) {
        let key = match (element.choice, suffix) {
            (true, Some(s)) => format!("{name}{s}"),
            (true, None) => {
                return Err(PatchError::Invalid(format!(
                    "'{name}' is a choice element: give its value as value[x]"
                )))
            }
            (false, _) => name.to_owned(),
        };
        return Ok((key, element.is_array()));
    }
    // The JSON name of a choice (`deceasedBoolean`) names the element too.
    let (element, _) = model.property(name).ok_or_else(unknown)?;
    Ok((name.to_owned(), element.is_array()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}],
            "name": [{"family": "Doe", "given": ["Jane"]}],
            "telecom": [{"system": "phone", "value": "555"}],
            "birthDate": "1970-01-01"
        })
    }

    fn op(ty: &str, parts: Value) -> Value {
        let mut all = vec![json!({"name": "type", "valueCode": ty})];
        all.extend(parts.as_array().unwrap().iter().cloned());
        json!({"name": "operation", "part": all})
    }

    fn params(ops: Vec<Value>) -> Value {
        json!({"resourceType": "Parameters", "parameter": ops})
    }

    #[test]
    fn json_patch_applies_or_changes_nothing() {
        let mut p = patient();
        apply_json_patch(
            &mut p,
            &json!([{"op": "replace", "path": "/birthDate", "value": "1980-02-03"},
                    {"op": "add", "path": "/gender", "value": "female"}]),
        )
        .unwrap();
        assert_eq!(p["birthDate"], "1980-02-03");
        assert_eq!(p["gender"], "female");
        let before = p.clone();
        let err = apply_json_patch(
            &mut p,
            &json!([{"op": "remove", "path": "/gender"}, {"op": "test", "path": "/id", "value": "q"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::NotApplicable(_)));
        assert_eq!(p, before);
        assert!(matches!(
            apply_json_patch(&mut p, &json!({"op": "x"})),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn fhirpath_patch_operations() {
        let mut p = patient();
        let patch = params(vec![
            op(
                "replace",
                json!([{"name": "path", "valueString": "Patient.birthDate"},
                                 {"name": "value", "valueDate": "1990-05-06"}]),
            ),
            op(
                "add",
                json!([{"name": "path", "valueString": "Patient"},
                             {"name": "name", "valueString": "telecom"},
                             {"name": "value", "valueContactPoint": {"system": "email", "value": "j@x"}}]),
            ),
            op(
                "delete",
                json!([{"name": "path", "valueString": "Patient.identifier.where(system='a')"}]),
            ),
            op(
                "insert",
                json!([{"name": "path", "valueString": "Patient.name[0].given"},
                                {"name": "index", "valueInteger": 0},
                                {"name": "value", "valueString": "Mary"}]),
            ),
            op(
                "add",
                json!([{"name": "path", "valueString": "Patient"},
                             {"name": "name", "valueString": "deceased"},
                             {"name": "value", "valueBoolean": false}]),
            ),
            op(
                "move",
                json!([{"name": "path", "valueString": "Patient.telecom"},
                              {"name": "source", "valueInteger": 1},
                              {"name": "destination", "valueInteger": 0}]),
            ),
            op(
                "add",
                json!([{"name": "path", "valueString": "Patient"},
                             {"name": "name", "valueString": "contact"},
                             {"name": "value", "part": [
                                 {"name": "gender", "valueCode": "male"}]}]),
            ),
        ]);
        apply_fhirpath_patch(&mut p, &patch).unwrap();
        assert_eq!(p["birthDate"], "1990-05-06");
        assert_eq!(p["identifier"], json!([{"system": "b", "value": "2"}]));
        assert_eq!(p["name"][0]["given"], json!(["Mary", "Jane"]));
        assert_eq!(p["deceasedBoolean"], json!(false));
        assert_eq!(p["telecom"][0]["system"], "email");
        assert_eq!(p["telecom"][1]["system"], "phone");
        assert_eq!(p["contact"], json!([{"gender": "male"}]));
    }

    #[test]
    fn fhirpath_patch_is_all_or_nothing() {
        let mut p = patient();
        let before = p.clone();
        let patch = params(vec![
            op(
                "delete",
                json!([{"name": "path", "valueString": "Patient.telecom"}]),
            ),
            op(
                "replace",
                json!([{"name": "path", "valueString": "Patient.gender"},
                                 {"name": "value", "valueCode": "male"}]),
            ),
        ]);
        let err = apply_fhirpath_patch(&mut p, &patch).unwrap_err();
        assert!(matches!(err, PatchError::NotApplicable(ref m) if m.contains("operation 1")));
        assert_eq!(p, before);
    }

    #[test]
    fn deleting_the_last_item_removes_the_list_and_missing_paths_are_no_ops() {
        let mut p = patient();
        let patch = params(vec![
            op(
                "delete",
                json!([{"name": "path", "valueString": "Patient.telecom[0]"}]),
            ),
            op(
                "delete",
                json!([{"name": "path", "valueString": "Patient.gender"}]),
            ),
        ]);
        apply_fhirpath_patch(&mut p, &patch).unwrap();
        assert!(p.get("telecom").is_none());
    }

    #[test]
    fn malformed_patches_are_invalid() {
        let mut p = patient();
        for bad in [
            json!({"resourceType": "Patient"}),
            params(vec![]),
            params(vec![json!({"name": "op", "part": []})]),
            params(vec![op("frobnicate", json!([]))]),
            params(vec![op(
                "replace",
                json!([{"name": "path", "valueString": "Patient.birthDate"}]),
            )]),
            params(vec![op(
                "delete",
                json!([{"name": "path", "valueString": "Patient.name.(("}]),
            )]),
        ] {
            assert!(
                matches!(
                    apply_fhirpath_patch(&mut p, &bad),
                    Err(PatchError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let ambiguous = params(vec![op(
            "replace",
            json!([{"name": "path", "valueString": "Patient.identifier.value"},
                   {"name": "value", "valueString": "x"}]),
        )]);
        assert!(matches!(
            apply_fhirpath_patch(&mut p, &ambiguous),
            Err(PatchError::NotApplicable(_))
        ));
        let unknown = params(vec![op(
            "add",
            json!([{"name": "path", "valueString": "Patient"},
                   {"name": "name", "valueString": "colour"},
                   {"name": "value", "valueString": "x"}]),
        )]);
        assert!(matches!(
            apply_fhirpath_patch(&mut p, &unknown),
            Err(PatchError::NotApplicable(_))
        ));
    }
}
