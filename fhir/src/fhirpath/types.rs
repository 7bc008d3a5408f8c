//! Static typing of an expression against the R4 model: which FHIR types its results can
//! have, without data. Used to check every search parameter at start-up (a path that names
//! no element is an error, not a silent empty index) and to compute extraction coverage.

use std::collections::BTreeSet;

use super::eval::is_type;
use super::parser::{Expr, Function, Literal, TypeOp};
use crate::definitions::Definitions;

/// Why an expression cannot be typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// A path names an element the type does not have.
    #[error("{ty} has no element `{name}`")]
    UnknownElement {
        /// The type navigated from.
        ty: String,
        /// The missing element.
        name: String,
    },
}

/// The FHIR types the results of `expr` can have when evaluated on a `root` resource (or a
/// backbone element, for composite components: then `resource` is the resource type).
/// `boolean` stands for computed Booleans; `Resource` for resolved references.
pub fn result_types(
    defs: &Definitions,
    expr: &Expr,
    focus: &str,
    resource: &str,
) -> Result<BTreeSet<String>, TypeError> {
    let cx = Cx { defs, resource };
    Ok(cx
        .infer(expr, &BTreeSet::from([focus.to_owned()]))?
        .into_iter()
        .collect())
}

struct Cx<'d> {
    defs: &'d Definitions,
    resource: &'d str,
}

type Types = BTreeSet<String>;

impl Cx<'_> {
    fn infer(&self, expr: &Expr, focus: &Types) -> Result<Types, TypeError> {
        let boolean = || Types::from(["boolean".to_owned()]);
        Ok(match expr {
            Expr::Literal(Literal::Empty) => Types::new(),
            Expr::Literal(Literal::Bool(_)) => boolean(),
            Expr::Literal(Literal::String(_)) => Types::from(["string".to_owned()]),
            Expr::Literal(Literal::Number(_)) => Types::from(["decimal".to_owned()]),
            Expr::This => focus.clone(),
            Expr::Var(_) => Types::from([self.resource.to_owned()]),
            Expr::Ident(name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => focus
                .iter()
                .filter(|t| is_type(self.defs, t, name))
                .cloned()
                .collect(),
            Expr::Ident(name) => self.children(focus, name)?,
            Expr::Member(target, name) => self.children(&self.infer(target, focus)?, name)?,
            Expr::Index(target, _) => self.infer(target, focus)?,
            Expr::Type(TypeOp::Is, ..) => boolean(),
            Expr::Type(TypeOp::As, e, ty) => self.of_type(&self.infer(e, focus)?, ty),
            Expr::Call(target, f, args) => {
                let items = match target {
                    Some(t) => self.infer(t, focus)?,
                    None => focus.clone(),
                };
                let ty_arg = match args.first() {
                    Some(Expr::Ident(t)) => t.as_str(),
                    _ => "",
                };
                match f {
                    Function::Where => {
                        self.infer(&args[0], &items)?;
                        items
                    }
                    Function::First | Function::Last => items,
                    Function::OfType | Function::As => self.of_type(&items, ty_arg),
                    Function::Resolve => Types::from(["Resource".to_owned()]),
                    Function::Extension => self.children(&items, "extension")?,
                    Function::Count => Types::from(["integer".to_owned()]),
                    Function::Exists
                    | Function::Empty
                    | Function::Not
                    | Function::Is
                    | Function::HasValue => boolean(),
                }
            }
            Expr::Binary(op, l, r) => {
                let (lt, rt) = (self.infer(l, focus)?, self.infer(r, focus)?);
                if *op == super::parser::BinOp::Union {
                    lt.union(&rt).cloned().collect()
                } else {
                    boolean()
                }
            }
        })
    }

    fn of_type(&self, types: &Types, wanted: &str) -> Types {
        types
            .iter()
            .filter(|t| is_type(self.defs, t, wanted))
            .cloned()
            .collect()
    }

    fn children(&self, focus: &Types, name: &str) -> Result<Types, TypeError> {
        let mut out = Types::new();
        for ty in focus {
            let element = self.defs.type_model(ty).and_then(|m| m.element(name));
            let Some(element) = element else {
                return Err(TypeError::UnknownElement {
                    ty: ty.clone(),
                    name: name.to_owned(),
                });
            };
            out.extend(element.types.iter().cloned());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::r4;
    use crate::fhirpath::parse;

    fn types(src: &str, root: &str) -> Result<Vec<String>, TypeError> {
        Ok(result_types(r4(), &parse(src).unwrap(), root, root)?
            .into_iter()
            .collect())
    }

    #[test]
    fn types_paths_and_choices() {
        assert_eq!(types("Patient.name", "Patient").unwrap(), ["HumanName"]);
        assert_eq!(
            types("Observation.value.ofType(Quantity)", "Observation").unwrap(),
            ["Quantity"]
        );
        assert_eq!(
            types(
                "Condition.onset.ofType(Age) | Condition.onset.ofType(Range)",
                "Condition"
            )
            .unwrap(),
            ["Age", "Range"]
        );
        assert_eq!(
            types(
                "Observation.subject.where(resolve() is Patient)",
                "Observation"
            )
            .unwrap(),
            ["Reference"]
        );
        assert_eq!(types("Resource.meta.tag", "Patient").unwrap(), ["Coding"]);
        assert_eq!(
            types("Patient.nmae", "Patient").unwrap_err(),
            TypeError::UnknownElement {
                ty: "Patient".into(),
                name: "nmae".into()
            }
        );
    }
}
