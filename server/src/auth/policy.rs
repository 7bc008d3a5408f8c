//! The role policy: a Casbin enforcer over `policies/model.conf` and `policies/policy.csv`
//! (embedded; other files through `--auth-model`/`--auth-policy`).
//!
//! The policy cannot change while the server runs, so each (role, object, action) decision
//! is computed by Casbin once and remembered: a request costs a hash lookup, not a rule
//! evaluation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

/// The model shipped in `policies/model.conf`.
pub const DEFAULT_MODEL: &str = include_str!("../../../policies/model.conf");
/// The policy shipped in `policies/policy.csv`.
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/policy.csv");

/// A loaded role policy.
pub struct Policy {
    enforcer: Enforcer,
    decided: RwLock<HashMap<(String, String, &'static str), bool>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads the model and policy files, or the embedded ones when a path is `None`.
    pub async fn load(model: Option<&Path>, policy: Option<&Path>) -> Result<Policy, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the Casbin {what} {}: {e}", path.display()))
        };
        let model_text = match model {
            Some(p) => read(p, "model")?,
            None => DEFAULT_MODEL.to_owned(),
        };
        let policy_text = match policy {
            Some(p) => read(p, "policy")?,
            None => DEFAULT_POLICY.to_owned(),
        };
        Self::from_text(&model_text, &policy_text).await
    }

    /// Builds a policy from model and policy text.
    pub async fn from_text(model: &str, policy: &str) -> Result<Policy, String> {
        let model = DefaultModel::from_str(model)
            .await
            .map_err(|e| format!("the Casbin model does not parse: {e}"))?;
        // Casbin's CSV reader does not trim a line's leading blanks before its `#` check.
        let policy: String = policy
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let enforcer = Enforcer::new(model, StringAdapter::new(policy))
            .await
            .map_err(|e| format!("the Casbin policy does not load: {e}"))?;
        let policy = Policy {
            enforcer,
            decided: RwLock::new(HashMap::new()),
        };
        // A model whose matcher does not evaluate fails here, not on the first request.
        policy.try_allows("admin", "Patient", "read")?;
        Ok(policy)
    }

    /// Whether `role` may do `action` on `object` (a resource type or `ledger`).
    pub fn allows(&self, role: &str, object: &str, action: &'static str) -> bool {
        self.try_allows(role, object, action).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the role policy failed to evaluate; denying");
            false
        })
    }

    fn try_allows(&self, role: &str, object: &str, action: &'static str) -> Result<bool, String> {
        let key = (role.to_owned(), object.to_owned(), action);
        if let Some(d) = self.decided.read().ok().and_then(|m| m.get(&key).copied()) {
            return Ok(d);
        }
        let decision = self
            .enforcer
            .enforce((role, object, action))
            .map_err(|e| format!("the Casbin matcher failed: {e}"))?;
        if let Ok(mut m) = self.decided.write() {
            m.insert(key, decision);
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_shipped_policy_says_what_the_roles_mean() {
        let p = Policy::load(None, None).await.expect("loads");
        assert!(p.allows("admin", "Patient", "delete"));
        assert!(p.allows("auditor", "AuditEvent", "search"));
        assert!(p.allows("auditor", "ledger", "read"));
        assert!(!p.allows("auditor", "Observation", "update"));
        assert!(p.allows("practitioner", "Observation", "create"));
        assert!(!p.allows("practitioner", "Observation", "delete"));
        assert!(!p.allows("practitioner", "AuditEvent", "read"));
        assert!(p.allows("patient", "Patient", "update"));
        assert!(!p.allows("patient", "Observation", "update"));
        assert!(!p.allows("patient", "ledger", "read"));
        assert!(!p.allows("stranger", "Patient", "read"));
    }
}
