//! Subscription criteria: `Task?requester=Organization/X&status=completed`.
//!
//! Owns: parsing a criteria string into a resource type and search parameters
//! (only the parameters the store indexes for that type), and deciding whether a
//! resource version matches them, using the same index values searches use.
//! Must not: read the store or deliver anything.

use crate::store::{search_index_terms, search_index_values, supported_params};
use serde_json::Value;

/// Parsed criteria: every parameter must match one of its alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub resource_type: String,
    pub params: Vec<(String, Vec<String>)>,
}

/// Why a criteria string is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriteriaError {
    #[error("Subscription.criteria must be '<Type>?<search parameters>' on Task")]
    Shape,
    #[error("Subscription.criteria on {0} is not supported; spbridge notifies about Task")]
    ResourceType(String),
    #[error("Subscription.criteria parameter '{name}' is not supported; supported: {supported}")]
    Parameter { name: String, supported: String },
}

impl Criteria {
    pub fn parse(text: &str) -> Result<Criteria, CriteriaError> {
        let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
        let resource_type = resource_type.trim();
        if resource_type.is_empty() || !resource_type.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(CriteriaError::Shape);
        }
        if resource_type != "Task" {
            return Err(CriteriaError::ResourceType(resource_type.to_string()));
        }
        let supported = supported_params(resource_type);
        let mut params = Vec::new();
        for (name, value) in crate::http::parse_query_string(query) {
            if !supported.contains(&name.as_str()) {
                return Err(CriteriaError::Parameter {
                    name,
                    supported: supported.join(", "),
                });
            }
            params.push((
                name,
                value.split(',').map(|v| v.trim().to_string()).collect(),
            ));
        }
        Ok(Criteria {
            resource_type: resource_type.to_string(),
            params,
        })
    }

    /// Whether `resource` (of `resource_type`) matches.
    pub fn matches(&self, resource_type: &str, resource: &Value) -> bool {
        if resource_type != self.resource_type {
            return false;
        }
        let values = search_index_values(resource_type, resource);
        self.params.iter().all(|(name, alternatives)| {
            // Looked for exactly as the store's search would (a bare id as each `Type/id`).
            let (name, alternatives) = search_index_terms(resource_type, name, alternatives);
            values
                .iter()
                .any(|(p, v)| *p == name.as_str() && alternatives.iter().any(|a| a == v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches_task_criteria() {
        let c =
            Criteria::parse("Task?requester=Organization/gp1&status=completed,rejected").unwrap();
        let task = json!({"resourceType": "Task", "status": "completed",
            "requester": {"reference": "Organization/gp1"}});
        assert!(c.matches("Task", &task));
        let other = json!({"resourceType": "Task", "status": "accepted",
            "requester": {"reference": "Organization/gp1"}});
        assert!(!c.matches("Task", &other));
        assert!(Criteria::parse("Task").unwrap().matches("Task", &other));
    }

    #[test]
    fn a_bare_id_matches_as_the_store_search_would() {
        let task = json!({"resourceType": "Task", "status": "accepted",
            "for": {"reference": "Patient/p1"}});
        assert!(Criteria::parse("Task?patient=p1")
            .unwrap()
            .matches("Task", &task));
        assert!(Criteria::parse("Task?patient=Patient/p1")
            .unwrap()
            .matches("Task", &task));
        assert!(!Criteria::parse("Task?patient=p2")
            .unwrap()
            .matches("Task", &task));
    }

    #[test]
    fn refuses_other_types_and_unknown_parameters() {
        assert_eq!(
            Criteria::parse("Patient?name=x"),
            Err(CriteriaError::ResourceType("Patient".into()))
        );
        assert!(matches!(
            Criteria::parse("Task?colour=red"),
            Err(CriteriaError::Parameter { .. })
        ));
        assert_eq!(Criteria::parse("?x"), Err(CriteriaError::Shape));
    }
}
