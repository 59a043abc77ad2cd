//! Which organisation a referral and its Task belong to, and who may see them.
//!
//! Owns: the tenancy tags spbridge puts on stored ServiceRequests and Tasks
//! (`meta.tag`, system `TENANT_TAG_SYSTEM`, codes `requester:<ODS>` and
//! `provider:<provider-id>`, in the manner of Medplum's compartments), finding the
//! requesting organisation of a referral, and the visibility rule: a requester sees
//! what it requested, a provider what it owns. Cross-tenant answers are 404.
//! Must not: verify tokens (auth does) or run searches (intake does).

use crate::auth::{Principal, Role};
use crate::routing::ODS_SYSTEM;
use serde_json::{json, Value};

/// System of spbridge's tenancy tags.
pub const TENANT_TAG_SYSTEM: &str = "https://fhir.spbridge.org/CodeSystem/tenant";

/// The tag code naming a requesting organisation.
pub fn requester_tag(ods: &str) -> String {
    format!("requester:{}", ods.to_ascii_uppercase())
}

/// The tag code naming an owning provider.
pub fn provider_tag(provider_id: &str) -> String {
    format!("provider:{provider_id}")
}

/// The tenancy tag code a principal is limited to; `None` = no limit (auth off).
/// An auditor (or any role without tenancy) gets a code that matches nothing.
pub fn restriction_code(principal: Option<&Principal>) -> Option<String> {
    let principal = principal?;
    Some(match principal.role {
        Role::Requester => requester_tag(&principal.organisation),
        Role::Provider => provider_tag(principal.provider_id.as_deref().unwrap_or("-")),
        Role::Auditor => "auditor:none".into(),
    })
}

/// The `_tag` search value a principal is limited to; `None` = no limit (auth off).
pub fn search_restriction(principal: Option<&Principal>) -> Option<String> {
    restriction_code(principal).map(|code| format!("{TENANT_TAG_SYSTEM}|{code}"))
}

/// Whether `principal` may see `resource` (always, when auth is off).
pub fn visible(principal: Option<&Principal>, resource: &Value) -> bool {
    match restriction_code(principal) {
        None => true,
        Some(code) => tags(resource).any(|t| t == code),
    }
}

/// The tenancy tag codes of a resource.
pub fn tags(resource: &Value) -> impl Iterator<Item = &str> {
    resource
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("system").and_then(Value::as_str) == Some(TENANT_TAG_SYSTEM))
        .filter_map(|t| t.get("code").and_then(Value::as_str))
}

/// The provider id a Task's tenancy tag names.
pub fn owning_provider(task: &Value) -> Option<&str> {
    tags(task).find_map(|t| t.strip_prefix("provider:"))
}

/// The requester ODS code a resource's tenancy tag names.
pub fn requesting_organisation(resource: &Value) -> Option<&str> {
    tags(resource).find_map(|t| t.strip_prefix("requester:"))
}

/// Replace the tenancy tags of a resource with `codes`, keeping other tags.
pub fn set_tags(resource: &mut Value, codes: &[String]) {
    let Some(map) = resource.as_object_mut() else {
        return;
    };
    let meta = map.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let mut kept: Vec<Value> = meta
        .get("tag")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("system").and_then(Value::as_str) != Some(TENANT_TAG_SYSTEM))
        .cloned()
        .collect();
    for code in codes {
        kept.push(json!({"system": TENANT_TAG_SYSTEM, "code": code}));
    }
    meta.insert("tag".into(), Value::Array(kept));
}

/// The ODS code of the organisation that made a referral: the token's organisation
/// when a requester sent it, else the requester reference's ODS identifier, else the
/// organisation of the referenced Organization / PractitionerRole (`resolve` looks
/// references up among the resources that came with it and the store).
pub fn requester_organisation<'a>(
    principal: Option<&Principal>,
    service_request: &'a Value,
    resolve: &dyn Fn(&str) -> Option<&'a Value>,
) -> Option<String> {
    if let Some(p) = principal.filter(|p| p.role == Role::Requester) {
        return Some(p.organisation.to_ascii_uppercase());
    }
    let requester = service_request.get("requester")?;
    if let Some(ods) = ods_identifier(requester.get("identifier")) {
        return Some(ods);
    }
    let target = requester
        .get("reference")
        .and_then(Value::as_str)
        .and_then(resolve)?;
    match target.get("resourceType").and_then(Value::as_str) {
        Some("Organization") => ods_of_organization(target),
        Some("PractitionerRole") => {
            let org = target.get("organization")?;
            ods_identifier(org.get("identifier")).or_else(|| {
                org.get("reference")
                    .and_then(Value::as_str)
                    .and_then(resolve)
                    .and_then(ods_of_organization)
            })
        }
        _ => None,
    }
}

fn ods_of_organization(org: &Value) -> Option<String> {
    org.get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|i| ods_identifier(Some(i)))
}

fn ods_identifier(identifier: Option<&Value>) -> Option<String> {
    let identifier = identifier?;
    (identifier.get("system").and_then(Value::as_str) == Some(ODS_SYSTEM))
        .then(|| identifier.get("value").and_then(Value::as_str))
        .flatten()
        .map(str::to_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, org: &str, provider: Option<&str>) -> Principal {
        Principal {
            client_id: "c".into(),
            organisation: org.into(),
            role,
            provider_id: provider.map(str::to_string),
            scopes: vec![],
        }
    }

    #[test]
    fn tags_decide_visibility() {
        let mut task =
            json!({"resourceType": "Task", "meta": {"tag": [{"system": "other", "code": "x"}]}});
        set_tags(&mut task, &[requester_tag("b86642"), provider_tag("walk")]);
        assert_eq!(task["meta"]["tag"].as_array().unwrap().len(), 3);
        assert!(visible(None, &task));
        assert!(visible(
            Some(&principal(Role::Requester, "B86642", None)),
            &task
        ));
        assert!(!visible(
            Some(&principal(Role::Requester, "A81001", None)),
            &task
        ));
        assert!(visible(
            Some(&principal(Role::Provider, "X", Some("walk"))),
            &task
        ));
        assert!(!visible(
            Some(&principal(Role::Provider, "X", Some("debt"))),
            &task
        ));
        assert!(!visible(Some(&principal(Role::Auditor, "X", None)), &task));
        assert_eq!(owning_provider(&task), Some("walk"));
    }

    #[test]
    fn requester_organisation_follows_practitioner_role() {
        let role = json!({"resourceType": "PractitionerRole",
            "organization": {"reference": "Organization/gp"}});
        let org = json!({"resourceType": "Organization",
            "identifier": [{"system": ODS_SYSTEM, "value": "B86642"}]});
        let sr = json!({"requester": {"reference": "PractitionerRole/r1"}});
        let resolve = |r: &str| match r {
            "PractitionerRole/r1" => Some(&role),
            "Organization/gp" => Some(&org),
            _ => None,
        };
        assert_eq!(
            requester_organisation(None, &sr, &resolve).as_deref(),
            Some("B86642")
        );
        let p = principal(Role::Requester, "A81001", None);
        assert_eq!(
            requester_organisation(Some(&p), &sr, &resolve).as_deref(),
            Some("A81001")
        );
    }
}
