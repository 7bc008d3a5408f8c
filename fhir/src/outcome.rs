//! OperationOutcome: the one shape in which FHIR Notary reports problems to clients.
//!
//! Issues carry the FHIR `IssueSeverity` and `IssueType` codes and, where a problem sits at a
//! place in a resource, the FHIRPath of that place in `expression`.

use serde::Serialize;
use serde_json::Value;

/// `OperationOutcome.issue.severity` (http://hl7.org/fhir/issue-severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The issue caused the action to fail.
    Fatal,
    /// The issue is sufficiently important to cause the action to fail.
    Error,
    /// The issue is not important enough to cause the action to fail.
    Warning,
    /// The issue has no relation to the degree of success of the action.
    Information,
}

/// `OperationOutcome.issue.code` (http://hl7.org/fhir/issue-type), the codes this server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue in the content such as wrong namespace, unable to parse the content.
    Structure,
    /// A required element is missing.
    Required,
    /// An element or header value is invalid.
    Value,
    /// A content validation rule failed.
    Invariant,
    /// The client needs to initiate an authentication process.
    Login,
    /// The user or system was not able to be authenticated.
    Unknown,
    /// The user session has expired.
    Expired,
    /// The user does not have the rights to perform this action.
    Forbidden,
    /// Some information was not or might not have been returned due to business rules.
    Suppressed,
    /// Processing issues.
    Processing,
    /// The interaction, operation, resource or profile is not supported.
    NotSupported,
    /// An attempt was made to create a duplicate record.
    Duplicate,
    /// Multiple matching records were found when the operation required only one match.
    MultipleMatches,
    /// The reference provided was not found.
    NotFound,
    /// The reference pointed to content that is no longer available.
    Deleted,
    /// Provided content is too long.
    TooLong,
    /// The code or system could not be understood.
    CodeInvalid,
    /// An extension was unrecognized or could not be supported.
    Extension,
    /// The operation was stopped to protect server resources.
    TooCostly,
    /// The content/operation failed to pass some business rule.
    BusinessRule,
    /// Content could not be accepted because of an edit conflict.
    Conflict,
    /// Transient processing issues.
    Transient,
    /// A resource or record lock failed.
    LockError,
    /// Persistent store unavailable.
    NoStore,
    /// An unexpected internal error has occurred.
    Exception,
    /// An internal timeout has occurred.
    Timeout,
    /// Not all data sources typically accessed could be reached.
    Incomplete,
    /// The system is not prepared to handle this request due to load management.
    Throttled,
    /// A message unrelated to the processing success of the completed operation.
    Informational,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// How bad the issue is.
    pub severity: Severity,
    /// What kind of issue it is.
    pub code: IssueType,
    /// A human-readable explanation, safe to show to any client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// FHIRPath expressions of the elements the issue is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

impl Issue {
    /// An error-severity issue with a message.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: Some(diagnostics.into()),
            expression: Vec::new(),
        }
    }

    /// An information-severity issue with a message.
    pub fn information(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code,
            diagnostics: Some(diagnostics.into()),
            expression: Vec::new(),
        }
    }

    /// The same issue located at `expression` (a FHIRPath such as `Patient.name[0].given`).
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }
}

/// An OperationOutcome resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationOutcome {
    /// The issues, in the order they were found.
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    /// An outcome holding a single issue.
    pub fn single(issue: Issue) -> Self {
        OperationOutcome {
            issues: vec![issue],
        }
    }

    /// The outcome as FHIR JSON. An outcome with no issues reports one informational
    /// issue, since R4 requires at least one.
    pub fn to_json(&self) -> Value {
        let issues = if self.issues.is_empty() {
            vec![Issue::information(IssueType::Informational, "All OK")]
        } else {
            self.issues.clone()
        };
        serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": issues,
        })
    }
}

impl From<Issue> for OperationOutcome {
    fn from(issue: Issue) -> Self {
        OperationOutcome::single(issue)
    }
}

impl From<Vec<Issue>> for OperationOutcome {
    fn from(issues: Vec<Issue>) -> Self {
        OperationOutcome { issues }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_codes_as_fhir_codes() {
        let oo = OperationOutcome::single(
            Issue::error(IssueType::NotSupported, "no").at("Patient.name[0]"),
        );
        let json = oo.to_json();
        assert_eq!(json["issue"][0]["severity"], "error");
        assert_eq!(json["issue"][0]["code"], "not-supported");
        assert_eq!(json["issue"][0]["expression"][0], "Patient.name[0]");
    }

    #[test]
    fn empty_outcome_still_has_an_issue() {
        let json = OperationOutcome::default().to_json();
        assert_eq!(json["issue"][0]["severity"], "information");
        assert_eq!(json["issue"][0]["code"], "informational");
    }
}
