//! Expected ASTs written out by hand, per parameter type, modifier and prefix.

use time::macros::datetime;

use super::*;
use crate::search::r4_search;

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

#[test]
fn a_smoke_test() {
    assert_eq!(
        one("Patient", "family", "Núñez"),
        matching(
            "family",
            ParamType::String,
            None,
            vec![SearchValue::String("nunez".into())]
        )
    );
    let _ = datetime!(2020-01-01 0:00 UTC);
    assert_eq!(lenient("Patient", &[("foo", "bar")]).criteria, []);
    assert_eq!(
        error("Patient", &[("foo", "bar")]),
        "search parameter `foo`: `foo` is not a search parameter of Patient"
    );
}
