//! SMART on FHIR scopes, parsed once from a token into a typed value.
//!
//! Both syntaxes are read: v1 (`patient/Observation.read`, `user/*.write`, `system/*.*`) and
//! v2 (`patient/Observation.rs`, `user/*.cruds`, `system/Patient.r`). A v1 `read` grants
//! read and search, `write` grants create, update and delete. Scopes that are not resource
//! scopes (`openid`, `fhirUser`, `launch/patient`, `offline_access`) grant nothing here, and
//! neither do v2 scopes narrowed by a query (`patient/Observation.rs?category=…`): the server
//! cannot honour the narrowing, so it does not grant the wider access.

use std::fmt;

/// Whose data a scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// The patient in context (the token's `patient` claim).
    Patient,
    /// Whatever the user may see.
    User,
    /// A backend service, no user.
    System,
}

/// One permission of SMART v2 (`c`, `r`, `u`, `d`, `s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `c`: create.
    Create = 1,
    /// `r`: read and vread.
    Read = 2,
    /// `u`: update.
    Update = 4,
    /// `d`: delete.
    Delete = 8,
    /// `s`: search and history.
    Search = 16,
}

/// A resource scope: context, resource type (`None` for `*`) and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// `patient`, `user` or `system`.
    pub context: ScopeContext,
    /// The resource type, or `None` for every type.
    pub resource_type: Option<String>,
    perms: u8,
}

impl ResourceScope {
    /// Whether this scope grants `perm`.
    pub fn grants(&self, perm: Permission) -> bool {
        self.perms & perm as u8 != 0
    }
}

/// Every resource scope a token carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<ResourceScope>);

impl Scopes {
    /// Parses a space-separated `scope` value; what is not a resource scope is skipped.
    pub fn parse(raw: &str) -> Scopes {
        Scopes(raw.split_whitespace().filter_map(parse_one).collect())
    }

    /// The resource scopes.
    pub fn iter(&self) -> impl Iterator<Item = &ResourceScope> {
        self.0.iter()
    }

    /// The scopes granting `perm` on `resource_type` (`None`: on every type at once).
    pub fn granting<'a>(
        &'a self,
        perm: Permission,
        resource_type: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ResourceScope> {
        self.0.iter().filter(move |s| {
            s.grants(perm)
                && match (&s.resource_type, resource_type) {
                    (None, _) => true,
                    (Some(t), Some(r)) => t == r,
                    (Some(_), None) => false,
                }
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Create => "c",
            Permission::Read => "r",
            Permission::Update => "u",
            Permission::Delete => "d",
            Permission::Search => "s",
        })
    }
}

fn parse_one(scope: &str) -> Option<ResourceScope> {
    let (context, rest) = scope.split_once('/')?;
    let context = match context {
        "patient" => ScopeContext::Patient,
        "user" => ScopeContext::User,
        "system" => ScopeContext::System,
        _ => return None,
    };
    let (resource, perms) = rest.rsplit_once('.')?;
    let resource_type = match resource {
        "*" => None,
        t if fhir::definitions::r4().is_resource_type(t) => Some(t.to_owned()),
        _ => return None,
    };
    let perms = match perms {
        "read" => Permission::Read as u8 | Permission::Search as u8,
        "write" => Permission::Create as u8 | Permission::Update as u8 | Permission::Delete as u8,
        "*" => 0x1f,
        v2 => v2_permissions(v2)?,
    };
    Some(ResourceScope {
        context,
        resource_type,
        perms,
    })
}

/// `cruds` letters: a non-empty subsequence of `c r u d s`, in that order.
fn v2_permissions(text: &str) -> Option<u8> {
    let order = [
        ('c', Permission::Create),
        ('r', Permission::Read),
        ('u', Permission::Update),
        ('d', Permission::Delete),
        ('s', Permission::Search),
    ];
    let mut perms = 0u8;
    let mut next = 0;
    for ch in text.chars() {
        let at = order[next..].iter().position(|(c, _)| *c == ch)? + next;
        perms |= order[at].1 as u8;
        next = at + 1;
    }
    (perms != 0).then_some(perms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_parse_into_the_same_permissions() {
        let v1 = Scopes::parse("patient/Observation.read");
        let v2 = Scopes::parse("patient/Observation.rs");
        assert_eq!(v1, v2);
        let s = &v1.0[0];
        assert_eq!(s.context, ScopeContext::Patient);
        assert_eq!(s.resource_type.as_deref(), Some("Observation"));
        assert!(s.grants(Permission::Read) && s.grants(Permission::Search));
        assert!(!s.grants(Permission::Update));
        assert_eq!(Scopes::parse("user/*.*"), Scopes::parse("user/*.cruds"));
        let w = Scopes::parse("user/*.write");
        assert!(w.0[0].grants(Permission::Delete) && !w.0[0].grants(Permission::Read));
    }

    #[test]
    fn what_is_not_a_resource_scope_grants_nothing() {
        let s = Scopes::parse(
            "openid fhirUser launch/patient offline_access patient/Nope.rs user/*.rc \
             user/*.x patient/Observation.rs?category=laboratory system/Patient.r",
        );
        assert_eq!(s.0.len(), 1, "{s:?}");
        assert_eq!(s.granting(Permission::Read, Some("Patient")).count(), 1);
        assert_eq!(s.granting(Permission::Read, Some("Observation")).count(), 0);
        assert_eq!(s.granting(Permission::Read, None).count(), 0);
    }
}
