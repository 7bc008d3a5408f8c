//! Evaluation of an [`Expr`] over a resource held as `serde_json::Value`, typed with the R4
//! model so that choice elements (`Observation.value` → `valueQuantity`) and `ofType`/`is`/`as`
//! work.

use serde_json::Value;

use super::parser::{BinOp, Expr, Function, Literal, TypeOp};
use crate::definitions::{self, Definitions};

/// One item of a FHIRPath collection. Items borrow from the resource and the expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    /// An element of the resource, with its FHIR type name (`HumanName`, `dateTime`,
    /// `Observation.component`, or the resource type for a resource). The type is empty when
    /// the element is not in the model (an unknown element).
    Node {
        /// The element's JSON.
        value: &'a Value,
        /// Its FHIR type.
        ty: &'a str,
    },
    /// A Boolean computed by the expression.
    Bool(bool),
    /// A string literal.
    Str(&'a str),
    /// A number literal or a count, as written.
    Number(f64),
    /// What `resolve()` gives: the type of the referenced resource, and nothing else (the
    /// evaluator never reads other resources).
    Resolved {
        /// The referenced resource's type.
        ty: &'a str,
    },
}

impl<'a> Item<'a> {
    /// The item's FHIR type name (`boolean`, `string` and `decimal` for computed values).
    pub fn type_name(&self) -> &'a str {
        match self {
            Item::Node { ty, .. } | Item::Resolved { ty } => ty,
            Item::Bool(_) => "boolean",
            Item::Str(_) => "string",
            Item::Number(_) => "decimal",
        }
    }

    /// The JSON of a resource element.
    pub fn json(&self) -> Option<&'a Value> {
        match self {
            Item::Node { value, .. } => Some(value),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            Item::Node { value, .. } => value.as_bool(),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&'a str> {
        match self {
            Item::Str(s) => Some(s),
            Item::Node { value, .. } => value.as_str(),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Item::Number(n) => Some(*n),
            Item::Node { value, .. } => value.as_f64(),
            _ => None,
        }
    }
}

/// Why evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An operator or function that needs one item got several (`and` on a repeating
    /// element, a comparison of a list).
    #[error("{0} expects a single item, got {1}")]
    NotSingleton(&'static str, usize),
    /// An index that is not a non-negative integer.
    #[error("invalid index")]
    BadIndex,
    /// A function argument of the wrong kind (`extension(1)`).
    #[error("invalid argument to {0}()")]
    BadArgument(&'static str),
}

/// Evaluates `expr` with `resource` as the focus and as `%resource`.
pub fn evaluate<'a>(expr: &'a Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
    let root = resource_item(resource);
    evaluate_on(expr, root, root)
}

/// Evaluates `expr` with `focus` as the focus and `resource` as `%resource` (for expressions
/// relative to an element, such as composite components).
pub fn evaluate_on<'a>(
    expr: &'a Expr,
    focus: Item<'a>,
    resource: Item<'a>,
) -> Result<Vec<Item<'a>>, EvalError> {
    let cx = Cx {
        defs: definitions::r4(),
        resource,
    };
    cx.eval(expr, &[focus])
}

/// A resource as an item typed by its `resourceType`.
pub fn resource_item(resource: &Value) -> Item<'_> {
    Item::Node {
        value: resource,
        ty: resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or(""),
    }
}

/// Whether a value of FHIR type `ty` is of type `wanted` for `is`/`as`/`ofType`: the same
/// type, one it specialises (`Age` is a `Quantity`, `code` a `string`), or `Resource` /
/// `DomainResource` for a resource. A leading capital is ignored (`DateTime` for `dateTime`,
/// as written in a few R4 expressions, and FHIRPath's `System.String` for `string`).
pub fn is_type(defs: &Definitions, ty: &str, wanted: &str) -> bool {
    if same_type(ty, wanted) {
        return true;
    }
    let parent = match ty {
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            "Quantity"
        }
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        _ if defs.is_resource_type(ty) => {
            return wanted == "Resource"
                || (wanted == "DomainResource"
                    && !matches!(ty, "Bundle" | "Binary" | "Parameters"));
        }
        _ => return false,
    };
    is_type(defs, parent, wanted)
}

fn same_type(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.chars(), b.chars());
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && a.as_str() == b.as_str(),
        _ => false,
    }
}

struct Cx<'a> {
    defs: &'static Definitions,
    resource: Item<'a>,
}

impl<'a> Cx<'a> {
    fn eval(&self, expr: &'a Expr, focus: &[Item<'a>]) -> Result<Vec<Item<'a>>, EvalError> {
        Ok(match expr {
            Expr::Literal(Literal::Empty) => vec![],
            Expr::Literal(Literal::Bool(b)) => vec![Item::Bool(*b)],
            Expr::Literal(Literal::String(s)) => vec![Item::Str(s)],
            Expr::Literal(Literal::Number(n)) => vec![Item::Number(n.parse().unwrap_or(f64::NAN))],
            Expr::This => focus.to_vec(),
            Expr::Var(v) => match v.as_str() {
                "resource" | "rootResource" | "context" => vec![self.resource],
                "ucum" => vec![Item::Str("http://unitsofmeasure.org")],
                "sct" => vec![Item::Str("http://snomed.info/sct")],
                "loinc" => vec![Item::Str("http://loinc.org")],
                // An unknown variable is empty rather than an error: nothing a search
                // parameter can name is missing from the list above.
                _ => vec![],
            },
            Expr::Ident(name) => {
                let mut out = Vec::new();
                for item in focus {
                    // Element names start in lower case and type names in upper case, so an
                    // upper-case identifier at the start of a path is a type test.
                    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                        if is_type(self.defs, item.type_name(), name) {
                            out.push(*item);
                        }
                    } else {
                        self.children(item, name, &mut out);
                    }
                }
                out
            }
            Expr::Member(target, name) => {
                let items = self.eval(target, focus)?;
                let mut out = Vec::new();
                for item in &items {
                    self.children(item, name, &mut out);
                }
                out
            }
            Expr::Index(target, index) => {
                let items = self.eval(target, focus)?;
                let index = self.eval(index, focus)?;
                let i = match index.as_slice() {
                    [] => return Ok(vec![]),
                    [i] => i.as_number().ok_or(EvalError::BadIndex)?,
                    _ => return Err(EvalError::BadIndex),
                };
                if i < 0.0 || i.fract() != 0.0 {
                    return Err(EvalError::BadIndex);
                }
                items.get(i as usize).copied().into_iter().collect()
            }
            Expr::Type(op, e, ty) => {
                let items = self.eval(e, focus)?;
                match op {
                    TypeOp::Is => match items.as_slice() {
                        [] => vec![],
                        [item] => vec![Item::Bool(is_type(self.defs, item.type_name(), ty))],
                        more => return Err(EvalError::NotSingleton("is", more.len())),
                    },
                    // `as` on a collection filters like `ofType`: that is how R4 expressions
                    // such as `Observation.value as Quantity` are meant and used.
                    TypeOp::As => self.of_type(&items, ty),
                }
            }
            Expr::Call(target, f, args) => {
                let items = match target {
                    Some(t) => self.eval(t, focus)?,
                    None => focus.to_vec(),
                };
                self.call(*f, items, args)?
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, focus)?,
        })
    }

    fn of_type(&self, items: &[Item<'a>], ty: &str) -> Vec<Item<'a>> {
        items
            .iter()
            .filter(|i| is_type(self.defs, i.type_name(), ty))
            .copied()
            .collect()
    }

    fn call(
        &self,
        f: Function,
        items: Vec<Item<'a>>,
        args: &'a [Expr],
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let type_arg = || match args.first() {
            Some(Expr::Ident(t)) => t.as_str(),
            _ => "",
        };
        Ok(match f {
            Function::Where => {
                let mut out = Vec::new();
                for item in items {
                    let keep = self.eval(&args[0], &[item])?;
                    if self.truth("where", &keep)? == Some(true) {
                        out.push(item);
                    }
                }
                out
            }
            Function::Exists => {
                let any = match args.first() {
                    None => !items.is_empty(),
                    Some(crit) => {
                        let mut any = false;
                        for item in items {
                            let r = self.eval(crit, &[item])?;
                            if self.truth("exists", &r)? == Some(true) {
                                any = true;
                                break;
                            }
                        }
                        any
                    }
                };
                vec![Item::Bool(any)]
            }
            Function::Empty => vec![Item::Bool(items.is_empty())],
            Function::HasValue => vec![Item::Bool(
                matches!(items.as_slice(), [Item::Node { value, .. }] if !value.is_object()),
            )],
            Function::Not => match self.truth("not", &items)? {
                None => vec![],
                Some(b) => vec![Item::Bool(!b)],
            },
            Function::First => items.first().copied().into_iter().collect(),
            Function::Last => items.last().copied().into_iter().collect(),
            Function::Count => vec![Item::Number(items.len() as f64)],
            Function::OfType | Function::As => self.of_type(&items, type_arg()),
            Function::Is => match items.as_slice() {
                [] => vec![],
                [item] => vec![Item::Bool(is_type(self.defs, item.type_name(), type_arg()))],
                more => return Err(EvalError::NotSingleton("is", more.len())),
            },
            Function::Resolve => items.iter().filter_map(|i| self.resolve(i)).collect(),
            Function::Extension => {
                let url = self.eval(&args[0], &[self.resource])?;
                let [url] = url.as_slice() else {
                    return Err(EvalError::BadArgument("extension"));
                };
                let url = url.as_str().ok_or(EvalError::BadArgument("extension"))?;
                let mut exts = Vec::new();
                for item in &items {
                    self.children(item, "extension", &mut exts);
                }
                exts.into_iter()
                    .filter(|e| {
                        e.json().and_then(|v| v.get("url")).and_then(Value::as_str) == Some(url)
                    })
                    .collect()
            }
        })
    }

    /// The type of the resource a Reference (or canonical) points to, from its `Type/id`
    /// form, an absolute URL ending in `Type/id`, or a contained resource for `#id`.
    fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let Item::Node { value, ty } = *item else {
            return None;
        };
        if self.defs.is_resource_type(ty) {
            return Some(Item::Resolved { ty });
        }
        let reference = match value {
            Value::String(s) => s.as_str(),
            v => v.get("reference")?.as_str()?,
        };
        if let Some(local) = reference.strip_prefix('#') {
            let contained = self.resource.json()?.get("contained")?.as_array()?;
            let r = contained
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))?;
            return Some(Item::Resolved {
                ty: r.get("resourceType")?.as_str()?,
            });
        }
        let ty = reference_type(self.defs, reference)?;
        Some(Item::Resolved { ty })
    }

    /// `Some(b)` for a single Boolean (or a single other item, which counts as true), `None`
    /// for an empty collection.
    fn truth(&self, what: &'static str, items: &[Item<'a>]) -> Result<Option<bool>, EvalError> {
        match items {
            [] => Ok(None),
            [item] => Ok(Some(item.as_bool().unwrap_or(true))),
            more => Err(EvalError::NotSingleton(what, more.len())),
        }
    }

    fn binary(
        &self,
        op: BinOp,
        l: &'a Expr,
        r: &'a Expr,
        focus: &[Item<'a>],
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let left = self.eval(l, focus)?;
        // Three-valued logic short-cuts (false and x = false, true or x = true) still
        // evaluate x in FHIRPath; evaluating it here too keeps errors consistent.
        let right = self.eval(r, focus)?;
        let out = match op {
            BinOp::Union => {
                let mut out: Vec<Item<'a>> = Vec::with_capacity(left.len() + right.len());
                for item in left.into_iter().chain(right) {
                    if !out.iter().any(|o| same_item(o, &item)) {
                        out.push(item);
                    }
                }
                return Ok(out);
            }
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let a = self.truth(op_name(op), &left)?;
                let b = self.truth(op_name(op), &right)?;
                let v = match op {
                    BinOp::And => match (a, b) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (a, b) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => a.zip(b).map(|(a, b)| a != b),
                    _ => match (a, b) {
                        (Some(false), _) | (_, Some(true)) => Some(true),
                        (Some(true), Some(false)) => Some(false),
                        _ => None,
                    },
                };
                v.map(Item::Bool)
            }
            _ => {
                let (a, b) = match (left.as_slice(), right.as_slice()) {
                    ([], _) | (_, []) => return Ok(vec![]),
                    ([a], [b]) => (a, b),
                    (x, y) => {
                        return Err(EvalError::NotSingleton(op_name(op), x.len().max(y.len())))
                    }
                };
                compare(op, a, b).map(Item::Bool)
            }
        };
        Ok(out.into_iter().collect())
    }

    /// Appends the `name` children of `item`, flattening arrays and typing each child from
    /// the model; choice elements match every `name[Type]` property.
    fn children(&self, item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
        let Item::Node { value, ty } = *item else {
            return;
        };
        let Some(obj) = value.as_object() else {
            return;
        };
        let model = self.defs.type_model(ty);
        match model.and_then(|m| m.element(name)) {
            Some(el) if el.choice => {
                let model = model.expect("element came from the model");
                for (key, v) in obj {
                    if key.len() > name.len() && key.starts_with(name) {
                        if let Some((e, t)) = model.property(key) {
                            if e.name == name {
                                push_node(v, t, out);
                            }
                        }
                    }
                }
            }
            Some(el) => {
                if let Some(v) = obj.get(name) {
                    push_node(v, el.types.first().map_or("", String::as_str), out);
                }
            }
            // Not in the model (an extension-defined or misspelt element): navigate anyway,
            // untyped, so that paths still work on data the model does not describe.
            None => {
                if let Some(v) = obj.get(name) {
                    push_node(v, "", out);
                }
            }
        }
    }
}

fn push_node<'a>(value: &'a Value, ty: &'a str, out: &mut Vec<Item<'a>>) {
    let mut push = |v: &'a Value| {
        if v.is_null() {
            return;
        }
        // An element typed `Resource` (contained, Bundle.entry.resource) is typed by the
        // resource it holds.
        let ty = if ty == "Resource" {
            v.get("resourceType").and_then(Value::as_str).unwrap_or(ty)
        } else {
            ty
        };
        out.push(Item::Node { value: v, ty });
    };
    match value {
        Value::Array(items) => items.iter().for_each(push),
        v => push(v),
    }
}

fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node { value: x, .. }, Item::Node { value: y, .. }) => std::ptr::eq(*x, *y),
        _ => a == b,
    }
}

fn op_name(op: BinOp) -> &'static str {
    match op {
        BinOp::And => "and",
        BinOp::Or => "or",
        BinOp::Xor => "xor",
        BinOp::Implies => "implies",
        BinOp::Eq => "=",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Union => "|",
    }
}

/// `=`, `!=` and the orderings on single primitive items; None when the items are not
/// comparable (which FHIRPath treats as empty).
fn compare(op: BinOp, a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    use std::cmp::Ordering;
    let ord = if let (Some(x), Some(y)) = (a.as_bool(), b.as_bool()) {
        Some(x.cmp(&y))
    } else if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        Some(x.cmp(y))
    } else if let (Some(x), Some(y)) = (a.as_number(), b.as_number()) {
        x.partial_cmp(&y)
    } else {
        match op {
            // Complex values: equal only when they are the same element.
            BinOp::Eq => return Some(same_item(a, b)),
            BinOp::Ne => return Some(!same_item(a, b)),
            _ => None,
        }
    }?;
    Some(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Ne => ord != Ordering::Equal,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

/// The resource type a literal reference names: `Patient/1`, `Patient/1/_history/2`, an
/// absolute URL whose last segments are `Type/id` (optionally with `_history/v`), or a
/// conditional reference `Patient?identifier=…` (as in transaction Bundles). None for
/// `urn:uuid:` and other forms.
pub fn reference_type<'r>(defs: &Definitions, reference: &'r str) -> Option<&'r str> {
    if let Some((ty, _query)) = reference.split_once('?') {
        return defs.is_resource_type(ty).then_some(ty);
    }
    if reference.contains('#') {
        return None;
    }
    let mut segments: Vec<&str> = reference.rsplit('/').take(4).collect();
    if segments.len() >= 4 && segments[1] == "_history" {
        segments.drain(..2);
    }
    match segments.as_slice() {
        [id, ty, ..] if !id.is_empty() && defs.is_resource_type(ty) => Some(ty),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhirpath::parse;
    use serde_json::json;

    fn eval_json(src: &str, resource: &Value) -> Vec<Value> {
        let e = parse(src).unwrap();
        evaluate(&e, resource)
            .unwrap()
            .into_iter()
            .map(|i| match i {
                Item::Node { value, .. } => value.clone(),
                Item::Bool(b) => json!(b),
                Item::Str(s) => json!(s),
                Item::Number(n) => json!(n),
                Item::Resolved { ty } => json!({ "resolved": ty }),
            })
            .collect()
    }

    fn types(src: &str, resource: &Value) -> Vec<String> {
        let e = parse(src).unwrap();
        evaluate(&e, resource)
            .unwrap()
            .iter()
            .map(|i| i.type_name().to_owned())
            .collect()
    }

    #[test]
    fn navigates_paths_arrays_and_choices() {
        // Parsed from text: `json!` would turn 1.50 into an f64.
        let obs: Value = serde_json::from_str(
            r#"{
                "resourceType": "Observation",
                "code": {"coding": [{"code": "a"}, {"code": "b"}]},
                "valueQuantity": {"value": 1.50},
                "effectivePeriod": {"start": "2020"},
                "component": [
                    {"valueString": "x"},
                    {"valueCodeableConcept": {"text": "y"}}
                ]
            }"#,
        )
        .unwrap();
        assert_eq!(
            eval_json("Observation.code.coding.code", &obs),
            [json!("a"), json!("b")]
        );
        assert_eq!(types("Observation.value", &obs), ["Quantity"]);
        assert_eq!(types("Observation.effective", &obs), ["Period"]);
        assert_eq!(
            types("Observation.component.value", &obs),
            ["string", "CodeableConcept"]
        );
        assert_eq!(
            eval_json("(Observation.component.value.ofType(string))", &obs),
            [json!("x")]
        );
        assert_eq!(
            eval_json("Observation.value as Quantity", &obs)[0].to_string(),
            r#"{"value":1.50}"#
        );
        assert!(eval_json("Observation.value.ofType(Range)", &obs).is_empty());
        assert_eq!(types("Resource.id | Observation", &obs), ["Observation"]);
        assert!(eval_json("Patient.id", &obs).is_empty());
    }

    #[test]
    fn filters_with_where_and_resolve() {
        let enc = json!({
            "resourceType": "Encounter",
            "participant": [
                {"individual": {"reference": "Practitioner/1"}},
                {"individual": {"reference": "http://x.org/fhir/RelatedPerson/2/_history/3"}},
                {"individual": {"reference": "#p3"}},
                {"individual": {"reference": "urn:uuid:abc"}}
            ],
            "contained": [{"resourceType": "Practitioner", "id": "p3"}]
        });
        let got = eval_json(
            "Encounter.participant.individual.where(resolve() is Practitioner)",
            &enc,
        );
        assert_eq!(
            got,
            [
                json!({"reference": "Practitioner/1"}),
                json!({"reference": "#p3"})
            ]
        );
        assert_eq!(
            eval_json(
                "Encounter.participant.individual.where(resolve() is RelatedPerson)",
                &enc
            ),
            [json!({"reference": "http://x.org/fhir/RelatedPerson/2/_history/3"})]
        );
        let pat = json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]});
        assert_eq!(
            eval_json("Patient.telecom.where(system='email').value", &pat),
            [json!("a@b")]
        );
    }

    #[test]
    fn computes_booleans_indexes_and_variables() {
        let expr = "Patient.deceased.exists() and Patient.deceased != false";
        let alive = json!({"resourceType": "Patient"});
        let dead = json!({"resourceType": "Patient", "deceasedDateTime": "2020"});
        let not_dead = json!({"resourceType": "Patient", "deceasedBoolean": false});
        assert_eq!(eval_json(expr, &alive), [json!(false)]);
        assert_eq!(eval_json(expr, &dead), [json!(true)]);
        assert_eq!(eval_json(expr, &not_dead), [json!(false)]);

        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}]});
        assert_eq!(types("Bundle.entry[0].resource", &bundle), ["Composition"]);
        assert_eq!(
            eval_json("Bundle.entry.resource.first().id", &bundle),
            [json!("c")]
        );
        assert_eq!(eval_json("Bundle.entry.count()", &bundle), [json!(2.0)]);

        let seq = json!({"resourceType": "MolecularSequence",
            "referenceSeq": {"chromosome": {"text": "1"}},
            "variant": [{"start": 1}]});
        let e = parse("%resource.referenceSeq.chromosome").unwrap();
        let variant = Item::Node {
            value: &seq["variant"][0],
            ty: "MolecularSequence.variant",
        };
        let got = evaluate_on(&e, variant, resource_item(&seq)).unwrap();
        assert_eq!(got[0].type_name(), "CodeableConcept");
    }

    #[test]
    fn reports_non_singletons() {
        let pat = json!({"resourceType": "Patient", "name": [{"family": "a"}, {"family": "b"}]});
        let e = parse("Patient.name.family = 'a'").unwrap();
        assert_eq!(
            evaluate(&e, &pat).unwrap_err(),
            EvalError::NotSingleton("=", 2)
        );
    }

    #[test]
    fn reads_reference_types() {
        let defs = definitions::r4();
        for (r, ty) in [
            ("Patient/1", Some("Patient")),
            ("Patient/1/_history/2", Some("Patient")),
            ("https://h/fhir/Patient/1", Some("Patient")),
            ("https://h/fhir/Patient/1/_history/2", Some("Patient")),
            ("Patient?identifier=x|1", Some("Patient")),
            ("Nothing?identifier=x|1", None),
            ("urn:uuid:1", None),
            ("Nothing/1", None),
            ("Patient/", None),
            ("#x", None),
        ] {
            assert_eq!(reference_type(defs, r), ty, "{r}");
        }
    }
}
