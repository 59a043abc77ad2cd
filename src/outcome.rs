//! FHIR `OperationOutcome`: the one shape every problem takes on its way out.
//!
//! Owns: the issue model (severity, FHIR issue-type code, diagnostics, FHIRPath
//! location) and its FHIR JSON rendering (UKCore-OperationOutcome shape).
//! Must not: know where an issue came from (validator, HTTP, broker) or carry
//! patient data — diagnostics name elements, codes and ids, never values such as
//! NHS numbers or names.

use serde_json::{json, Map, Value};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }

    /// Fatal and error issues fail an operation; warnings and information do not.
    pub fn is_failure(self) -> bool {
        matches!(self, Severity::Fatal | Severity::Error)
    }
}

/// `OperationOutcome.issue.code` (FHIR value set `issue-type`), the subset spbridge emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    pub fn as_code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Expired => "expired",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::LockError => "lock-error",
            IssueType::NoStore => "no-store",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Incomplete => "incomplete",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// What is wrong and what to do about it, in words a person can act on.
    pub diagnostics: String,
    /// FHIRPath locations, e.g. `Bundle.entry[2].resource.identifier[0].value`.
    pub expression: Vec<String>,
    /// Machine-readable detail, e.g. the constraint key (`ele-1`) or a message id;
    /// rendered as `details.coding` with system [`ISSUE_DETAIL_SYSTEM`].
    pub detail_code: Option<String>,
}

/// Code system for `issue.details.coding` (constraint keys, spbridge message ids).
pub const ISSUE_DETAIL_SYSTEM: &str = "https://fhir.spbridge.org/CodeSystem/issue-detail";

impl Issue {
    pub fn new(severity: Severity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity,
            code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
            detail_code: None,
        }
    }

    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue::new(Severity::Error, code, diagnostics)
    }

    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue::new(Severity::Warning, code, diagnostics)
    }

    pub fn information(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue::new(Severity::Information, code, diagnostics)
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }

    pub fn with_detail(mut self, code: impl Into<String>) -> Self {
        self.detail_code = Some(code.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("severity".into(), json!(self.severity.as_code()));
        m.insert("code".into(), json!(self.code.as_code()));
        if let Some(detail) = &self.detail_code {
            m.insert(
                "details".into(),
                json!({"coding": [{"system": ISSUE_DETAIL_SYSTEM, "code": detail}]}),
            );
        }
        if !self.diagnostics.is_empty() {
            m.insert("diagnostics".into(), json!(self.diagnostics));
        }
        if !self.expression.is_empty() {
            m.insert("expression".into(), json!(self.expression));
        }
        Value::Object(m)
    }
}

/// A FHIR `OperationOutcome`: the issues found by one operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_issue(issue: Issue) -> Self {
        OperationOutcome {
            issues: vec![issue],
        }
    }

    pub fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    pub fn extend(&mut self, other: OperationOutcome) {
        self.issues.extend(other.issues);
    }

    /// True when any issue is `fatal` or `error`.
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity.is_failure())
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.issues
            .iter()
            .filter(|i| i.severity == severity)
            .count()
    }

    /// FHIR JSON. An outcome with no issues renders the single informational
    /// "All OK" issue that FHIR requires (`issue` is 1..*).
    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![json!({
                "severity": "information",
                "code": "informational",
                "diagnostics": "All OK"
            })]
        } else {
            self.issues.iter().map(Issue::to_json).collect()
        };
        json!({
            "resourceType": "OperationOutcome",
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"]},
            "issue": issues
        })
    }
}
