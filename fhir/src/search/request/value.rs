//! One search value parsed per its parameter's type, and the escaping rules of search values
//! (`\,`, `\$`, `\|` and `\\` stand for the character itself).

use super::{
    invalid, DateSearch, Kind, Modifier, NumberSearch, Prefix, QuantitySearch, ReferenceSearch,
    SearchValue, SystemFilter, TokenSearch,
};
use crate::definitions;
use crate::primitives::{is_valid_decimal, is_valid_id, is_valid_uri, parse_date_time_range};
use crate::search::extract::Decimal;
use crate::search::registry::{ParamType, SearchParam};
use crate::search::text::normalize;

/// `raw` split at each `sep` not escaped with a backslash; the parts stay escaped.
pub(super) fn split(raw: &str, sep: u8) -> Vec<&str> {
    let bytes = raw.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b if b == sep => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&raw[start..]);
    parts
}

/// `raw` with its escapes resolved; a backslash before any other character stays.
pub(super) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if matches!(next, ',' | '$' | '|' | '\\') {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// One (non-composite, non-empty, still escaped) value of `sp`.
pub(super) fn parse(
    sp: &SearchParam,
    modifier: Option<&Modifier>,
    raw: &str,
) -> Result<SearchValue, Kind> {
    Ok(match sp.kind {
        ParamType::String => {
            let text = unescape(raw);
            SearchValue::String(if modifier == Some(&Modifier::Exact) {
                text
            } else {
                normalize(&text)
            })
        }
        ParamType::Token => SearchValue::Token(token(modifier, raw)?),
        ParamType::Reference => SearchValue::Reference(reference(sp, modifier, raw)?),
        ParamType::Date => {
            let (prefix, rest) = prefix(sp, raw)?;
            let Some((start, end)) = parse_date_time_range(rest) else {
                return Err(invalid(format!(
                    "`{rest}` is not a date, dateTime or instant (`2020`, `2020-03-01`, \
                     `2020-03-01T10:00:00Z`)"
                )));
            };
            SearchValue::Date(DateSearch {
                prefix,
                text: rest.to_owned(),
                start,
                end,
            })
        }
        ParamType::Number => SearchValue::Number(number(sp, raw)?),
        ParamType::Quantity => {
            let parts = split(raw, b'|');
            let (number, system, code) = match parts.as_slice() {
                [n] => (number(sp, n)?, None, None),
                [n, s, c] => (number(sp, n)?, non_empty(s), non_empty(c)),
                _ => {
                    return Err(invalid(format!(
                        "`{raw}` is not a quantity (`5.4`, `5.4|system|code` or `5.4||code`)"
                    )))
                }
            };
            SearchValue::Quantity(QuantitySearch {
                number,
                system,
                code,
            })
        }
        ParamType::Uri => {
            let uri = unescape(raw);
            if !is_valid_uri(&uri) {
                return Err(invalid(format!("`{uri}` is not a URI")));
            }
            SearchValue::Uri(uri)
        }
        ParamType::Composite | ParamType::Special => {
            return Err(Kind::UnknownParameter(format!(
                "`{}` has no values of its own",
                sp.code
            )))
        }
    })
}

fn non_empty(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| unescape(raw))
}

/// `system|code`, `|code`, `system|` or `code`.
fn system_and_code(raw: &str) -> Result<(SystemFilter, Option<String>), Kind> {
    match split(raw, b'|').as_slice() {
        [c] => Ok((SystemFilter::Any, Some(unescape(c)))),
        ["", ""] => Err(invalid("`|` names neither a system nor a code")),
        ["", c] => Ok((SystemFilter::Absent, Some(unescape(c)))),
        [s, c] => Ok((SystemFilter::Is(unescape(s)), non_empty(c))),
        _ => Err(invalid(format!(
            "`{raw}` has more than one unescaped `|` (escape it as `\\|`)"
        ))),
    }
}

fn token(modifier: Option<&Modifier>, raw: &str) -> Result<TokenSearch, Kind> {
    match modifier {
        Some(Modifier::Text) => Ok(TokenSearch::Text(normalize(&unescape(raw)))),
        Some(Modifier::OfType) => match split(raw, b'|').as_slice() {
            [s, c, v] if !s.is_empty() && !c.is_empty() && !v.is_empty() => {
                Ok(TokenSearch::OfType {
                    system: unescape(s),
                    code: unescape(c),
                    value: unescape(v),
                })
            }
            _ => Err(invalid(format!(
                "`{raw}` is not of the form `type-system|type-code|value` that `:of-type` takes"
            ))),
        },
        _ => {
            let (system, code) = system_and_code(raw)?;
            Ok(TokenSearch::Code { system, code })
        }
    }
}

fn reference(
    sp: &SearchParam,
    modifier: Option<&Modifier>,
    raw: &str,
) -> Result<ReferenceSearch, Kind> {
    let type_modifier = match modifier {
        Some(Modifier::Identifier) => {
            let (system, value) = system_and_code(raw)?;
            return Ok(ReferenceSearch::Identifier { system, value });
        }
        Some(Modifier::Type(t)) => Some(t.as_str()),
        _ => None,
    };
    let s = unescape(raw);
    if s.contains("://") || s.starts_with("urn:") {
        let (url, version) = match s.split_once("/_history/") {
            Some((u, v)) => (u, Some(v)),
            // A canonical: `url|version`.
            None => match s.split_once('|') {
                Some((u, v)) => (u, Some(v)),
                None => (s.as_str(), None),
            },
        };
        if !is_valid_uri(url) || version.is_some_and(str::is_empty) {
            return Err(invalid(format!("`{s}` is not a URL")));
        }
        return Ok(ReferenceSearch::Url {
            url: url.to_owned(),
            version: version.map(str::to_owned),
        });
    }
    let not_a_reference = || {
        invalid(format!(
            "`{s}` is not a reference (`Type/id`, `Type/id/_history/version`, an id or an \
             absolute URL)"
        ))
    };
    let segments: Vec<&str> = s.split('/').collect();
    let (ty, id, version) = match segments.as_slice() {
        [id] => (None, *id, None),
        [ty, id] => (Some(*ty), *id, None),
        [ty, id, "_history", v] if is_valid_id(v) => (Some(*ty), *id, Some(*v)),
        _ => return Err(not_a_reference()),
    };
    if !is_valid_id(id) {
        return Err(invalid(format!("`{id}` is not a valid id")));
    }
    if let Some(ty) = ty {
        if !definitions::r4().is_resource_type(ty) {
            return Err(not_a_reference());
        }
        if type_modifier.is_some_and(|m| m != ty) {
            return Err(invalid(format!(
                "`{s}` is not a {}",
                type_modifier.unwrap_or_default()
            )));
        }
        if !sp.targets.is_empty() && !sp.targets.iter().any(|t| t == ty) {
            return Err(invalid(format!(
                "`{}` refers to {}, not to {ty}",
                sp.code,
                super::abbreviate(&sp.targets)
            )));
        }
    }
    Ok(ReferenceSearch::Local {
        target_type: ty.or(type_modifier).map(str::to_owned),
        id: id.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// The prefix of an ordered value (default `eq`), checked against the parameter's
/// comparators, and the rest.
fn prefix<'r>(sp: &SearchParam, raw: &'r str) -> Result<(Prefix, &'r str), Kind> {
    let written = raw
        .get(..2)
        .and_then(|p| Prefix::ALL.into_iter().find(|x| x.as_str() == p));
    let Some(prefix) = written else {
        return Ok((Prefix::Eq, raw));
    };
    if !sp.comparators.iter().any(|c| c == prefix.as_str()) {
        return Err(invalid(format!(
            "the prefix `{}` is not allowed on `{}` (allowed: {})",
            prefix.as_str(),
            sp.code,
            sp.comparators.join(", ")
        )));
    }
    Ok((prefix, &raw[2..]))
}

fn number(sp: &SearchParam, raw: &str) -> Result<NumberSearch, Kind> {
    let (prefix, rest) = prefix(sp, raw)?;
    let value = is_valid_decimal(rest)
        .then(|| Decimal::parse(rest))
        .flatten()
        .ok_or_else(|| invalid(format!("`{rest}` is not a number")))?;
    let (low, high) = value.precision_range();
    Ok(NumberSearch {
        prefix,
        value,
        low,
        high,
    })
}
